import cv2
import numpy as np
import pytest

from videoseq.datasets import ClipDataset
from videoseq.flow import (
    LEVELS,
    ZERO_LEVEL,
    FlowEstimator,
    MotionInput,
    available_flow_methods,
    dequantize_flow,
    flip_flow,
    modality_channels,
    motion_frame_table,
    negate_flow_x,
    quantize_flow,
    rescale_flow,
    shift_into_range,
)
from videoseq.sampling import ClipSampling
from videoseq.transforms import ClipTrainPreset, MotionEvalPreset, MotionTrainPreset

from conftest import brightness_frames, write_video


def texture(size: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (blurred noise) that optical flow can follow."""
    noise = np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255).astype(np.uint8)


def translated(image: np.ndarray, dx: float, dy: float, steps: int) -> np.ndarray:
    """``steps`` frames of ``image`` moving ``(dx, dy)`` px per frame (content moves, borders reflect)."""
    h, w = image.shape[:2]
    frames = [cv2.warpAffine(image, np.float32([[1, 0, dx * t], [0, 1, dy * t]]), (w, h),
                             borderMode=cv2.BORDER_REFLECT) for t in range(steps)]
    return np.stack(frames)


def test_quantisation_keeps_zero_and_negation_exact():
    flow = np.linspace(-25, 25, 101, dtype=np.float32).reshape(-1, 1).repeat(2, 1)
    q = quantize_flow(flow, bound=20.0)
    assert q.dtype == np.uint8 and q.min() == ZERO_LEVEL - LEVELS and q.max() == ZERO_LEVEL + LEVELS
    assert quantize_flow(np.zeros(2), 20.0).tolist() == [ZERO_LEVEL, ZERO_LEVEL]
    inside = np.abs(flow) <= 20
    assert np.abs(dequantize_flow(q, 20.0) - flow)[inside].max() <= 20.0 / LEVELS / 2 + 1e-6
    negated = negate_flow_x(q)
    assert np.array_equal(negated[:, 0], quantize_flow(-flow, 20.0)[:, 0])
    assert np.array_equal(negated[:, 1], q[:, 1])


def test_rescale_multiplies_x_and_y_separately():
    q = quantize_flow(np.array([[2.0, -3.0, 1.0, 4.0]]), 10.0)  # two stacked fields
    out = dequantize_flow(rescale_flow(q, 1.5, 0.5, 10.0), 10.0)
    assert np.allclose(out, [[3.0, -1.5, 1.5, 2.0]], atol=10.0 / LEVELS)


@pytest.mark.parametrize("method", available_flow_methods())
def test_every_method_recovers_a_known_translation(method):
    frames = translated(texture(), 1.5, -0.75, 2)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flow = FlowEstimator(method)(grey[0], grey[1])[16:-16, 16:-16]  # away from the reflected border
    assert flow.shape[-1] == 2
    assert np.allclose(np.median(flow.reshape(-1, 2), axis=0), [1.5, -0.75], atol=0.15)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="dis_fast"):
        FlowEstimator("lucas_kanade")


def test_frame_table_worked_example_and_range():
    table = motion_frame_table(np.array([10, 12, 14, 16]), step=2, stack=2)
    assert table.tolist() == [[6, 8, 10], [8, 10, 12], [10, 12, 14], [12, 14, 16]]
    assert motion_frame_table(np.array([1, 3]), step=2, stack=1).tolist() == [[0, 1], [1, 3]]
    kept = shift_into_range(lambda n: np.arange(4) * (n // 4), 40, lookback=4)
    assert kept.min() >= 4 and kept.max() < 40
    assert shift_into_range(lambda n: np.arange(n), 3, lookback=4).tolist() == [0, 1, 2]  # too short: whole video


def test_motion_input_shapes_and_channel_layout():
    frames = translated(texture(), 2.0, 0.0, 7)
    motion = MotionInput("flow", step=2, stack=2, short_side=48, bound=8.0, method="dis_fast")
    table = motion.frame_table(np.array([4, 6]))  # rows [0, 2, 4] and [2, 4, 6]
    out = motion(frames, table)
    assert out.shape == (2, 48, 48, 4) == (2, 48, 48, modality_channels("flow", 2)) and out.dtype == np.uint8
    flow = dequantize_flow(out, 8.0)[:, 8:-8, 8:-8]
    # 2 px per frame at 96 px, two frames apart, at 48 px: 2 px of x, 0 of y, in every field
    assert np.allclose(np.median(flow.reshape(-1, 4), axis=0), [2.0, 0.0, 2.0, 0.0], atol=0.2)


@pytest.mark.parametrize("method", ["farneback", "dis_fast"])
def test_flipped_flow_clip_equals_flow_of_flipped_frames(method):
    frames = np.concatenate([translated(texture(seed=1), 1.2, 0.6, 3), translated(texture(seed=2), -0.8, 0.4, 3)])
    motion = MotionInput("flow", step=1, stack=1, short_side=72, bound=8.0, method=method)
    table = motion.frame_table(np.array([1, 2, 4, 5]))
    flipped_flow = flip_flow(motion(frames, table))
    flow_of_flipped = motion(np.ascontiguousarray(frames[:, :, ::-1]), table)
    levels = np.abs(flipped_flow.astype(int) - flow_of_flipped)[:, 8:-8, 8:-8]
    if method == "farneback":  # a mirror-symmetric algorithm: equal within quantisation
        assert (levels <= 1).mean() >= 0.99
    else:  # DIS lays its patch grid from the left edge: equal within its own error (~0.1 px)
        assert levels.mean() <= 1.5 and np.median(levels) <= 1
    mirrored_only = np.abs(motion(frames, table)[:, :, ::-1].astype(int) - flow_of_flipped)[:, 8:-8, 8:-8]
    assert mirrored_only[..., 0].mean() > 10 * max(levels[..., 0].mean(), 0.1)  # x must be negated


def test_train_preset_flow_equals_flow_of_transformed_frames():
    """Crop, resize and flip of flow images agree with the flow computed on the cropped, flipped frames."""
    frames = translated(texture(size=160, seed=3), 1.5, 0.75, 3)
    bound, size = 8.0, 64
    motion = MotionInput("flow", step=1, stack=1, short_side=160, bound=bound, method="farneback")
    table = motion.frame_table(np.array([1, 2]))
    preset = MotionTrainPreset(size=size, crop_scale=(0.3, 0.6), flip=True, flip_swap={0: 1}, flow_bound=bound)
    rgb = ClipTrainPreset(size=size, crop_scale=(0.3, 0.6), color_jitter=0, flip=True)
    flips = 0
    for seed in range(6):
        out, label = preset(motion(frames, table), 0, seed)
        cropped, applied = rgb.apply(frames, seed)  # the same draw on the RGB frames
        flips += label == 1
        assert (label == 1) == ("HorizontalFlip" in applied)
        reference = MotionInput("flow", step=1, short_side=size, bound=bound, method="farneback")(cropped, table)
        x0, _, x1, _ = applied["RandomResizedCrop"]["crop_coords"]
        assert size / (x1 - x0) < 0.75  # the vectors had to shrink with the crop's resize
        error = np.abs(dequantize_flow(out, bound) - dequantize_flow(reference, bound))[:, 8:-8, 8:-8]
        assert np.median(error) < 0.15
    assert 0 < flips < 6


def test_eval_preset_scales_flow_with_the_resize():
    q = quantize_flow(np.full((2, 80, 100, 2), [2.0, -1.0], dtype=np.float32), 10.0)
    out, _ = MotionEvalPreset(size=32, flow_bound=10.0)(q, 0)  # short side 80 -> 37, then a 32 px crop
    assert out.shape == (2, 32, 32, 2)
    assert np.allclose(dequantize_flow(out, 10.0).reshape(-1, 2).mean(0), [2.0 * 37 / 80, -37 / 80], atol=0.05)


def test_dataset_reads_the_frame_before_each_kept_frame(tmp_path):
    """RGB differences of a video whose frame t has grey level 10 + 8 t: each difference is 8 * stride."""
    path = write_video(tmp_path / "ramp.avi", brightness_frames(30, size=32))
    motion = MotionInput("rgbdiff", step=3, stack=2, short_side=32)
    dataset = ClipDataset([(str(path), 0)], clips=ClipSampling(4, "dense", 3), train=True, motion=motion,
                          transform=MotionTrainPreset(size=24, crop_scale=(0.8, 1.0)))
    for epoch in range(3):
        sample = dataset[(epoch, 0)]
        assert sample["video"].shape == (4, 6, 24, 24) and sample["error"] == ""
        levels = sample["video"].float() - ZERO_LEVEL  # the quantised difference
        assert levels.mean().item() == pytest.approx(8 * 3, abs=1.0)
