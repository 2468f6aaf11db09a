import numpy as np
import pytest
import torch

from videoseq.transforms import ClipEvalPreset, ClipTrainPreset, clip_to_tensor, normalize_clip
from videoseq.video.geometry import eval_resize


def gradient_clip(t: int = 6, h: int = 60, w: int = 80) -> np.ndarray:
    """Every frame is the same left-to-right ramp plus a per-frame offset."""
    ramp = np.tile(np.linspace(0, 200, w, dtype=np.float32), (h, 1))
    frames = [ramp + 5 * i for i in range(t)]
    return np.repeat(np.stack(frames)[..., None], 3, axis=3).astype(np.uint8)


def test_train_preset_applies_the_same_parameters_to_every_frame():
    clip = gradient_clip()
    preset = ClipTrainPreset(size=32, color_jitter=0.0)
    for seed in range(10):
        out, _ = preset(clip, 0, seed)
        assert out.shape == (6, 32, 32, 3) and out.dtype == np.uint8
        diffs = out.astype(int) - out[:1].astype(int)
        # same crop and flip on every frame: frames differ only by their constant offset
        for i in range(6):
            assert abs(np.median(diffs[i]) - 5 * i) <= 1


def test_flip_swaps_labels_through_the_map_and_is_seeded():
    clip = gradient_clip()
    preset = ClipTrainPreset(size=32, color_jitter=0.0, crop_scale=(1.0, 1.0), flip_swap={0: 1, 1: 0})
    flipped = unflipped = 0
    for seed in range(40):
        out, label = preset(clip, 0, seed)
        left_darker = out[0, :, :4].mean() < out[0, :, -4:].mean()
        if left_darker:
            unflipped += 1
            assert label == 0
        else:
            flipped += 1
            assert label == 1
        again, label_again = preset(clip, 0, seed)
        assert np.array_equal(out, again) and label_again == label
    assert flipped > 5 and unflipped > 5
    # a label outside the map keeps its label when flipped
    kept = {preset(clip, 5, s)[1] for s in range(20)}
    assert kept == {5}


def test_flip_can_be_turned_off():
    clip = gradient_clip()
    preset = ClipTrainPreset(size=32, color_jitter=0.0, crop_scale=(1.0, 1.0), flip=False, flip_swap={0: 1})
    for seed in range(20):
        out, label = preset(clip, 0, seed)
        assert label == 0 and out[0, :, :4].mean() < out[0, :, -4:].mean()


def test_eval_preset_is_a_deterministic_centre_crop():
    clip = gradient_clip(h=64, w=128)
    out, label = ClipEvalPreset(size=32)(clip, 3)
    assert out.shape == (6, 32, 32, 3) and label == 3
    assert eval_resize(32) == 37
    again, _ = ClipEvalPreset(size=32)(clip, 3)
    assert np.array_equal(out, again)


def test_normalize_uses_the_given_mean_and_std():
    clip = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize_clip(clip, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert torch.allclose(out[:, 0], torch.tensor(2.0)) and torch.allclose(out[:, 2], torch.tensor(0.5))
    assert clip_to_tensor(np.zeros((2, 5, 7, 3), np.uint8)).shape == (2, 3, 5, 7)
    already = torch.full((1, 3, 2, 2), 51.0)  # a float input is worked on in a copy, never in place
    assert torch.allclose(normalize_clip(already, (0.0,) * 3, (1.0,) * 3), torch.tensor(0.2))
    assert torch.equal(already, torch.full((1, 3, 2, 2), 51.0))


def test_crop_offsets_three_along_the_long_side():
    from videoseq.video.geometry import crop_offsets

    assert crop_offsets(128, 171, 112, 3) == [(8, 0), (8, 29), (8, 59)]
    assert crop_offsets(171, 128, 112, 3) == [(0, 8), (29, 8), (59, 8)]
    assert crop_offsets(128, 171, 112, 1) == [(8, 29)]
    with pytest.raises(ValueError, match="1, 3"):
        crop_offsets(128, 171, 112, 2)


def test_three_crop_preset_covers_left_centre_right():
    import albumentations as A

    clip = gradient_clip(h=60, w=120)  # left-to-right ramp
    preset = ClipEvalPreset(size=32, crops=3)
    crops = [preset(clip, 0, crop=c)[0] for c in range(3)]
    means = [c[0].mean() for c in crops]
    assert all(c.shape == (6, 32, 32, 3) for c in crops) and means[0] < means[1] < means[2]
    resized = A.SmallestMaxSize(max_size=32)(images=clip)["images"]  # short side 32: (6, 32, 64, 3)
    assert np.array_equal(crops[0], resized[:, :, :32]) and np.array_equal(crops[2], resized[:, :, -32:])
    # one crop is the plain centre crop of the short side resized to size / 0.875
    centre = A.Compose([A.SmallestMaxSize(max_size=eval_resize(32)), A.CenterCrop(32, 32)])(images=clip)["images"]
    assert np.array_equal(ClipEvalPreset(size=32)(clip, 0)[0], centre)


def test_flip_swap_pairs_with_both_classes_are_kept_and_with_neither_ignored():
    from videoseq.transforms import flip_swap_ids

    swap = {"Left": "Right", "Right": "Left", "MoveUp": "MoveDown", "MoveDown": "MoveUp"}
    kept, ignored = flip_swap_ids(swap, ["Left", "Right", "Static"])
    assert kept == {0: 1, 1: 0} and ignored == ["MoveUp: MoveDown", "MoveDown: MoveUp"]
    assert flip_swap_ids({}, ["A"]) == ({}, [])


@pytest.mark.parametrize("swap", [{"Left": "Right"}, {"Right": "Left"}, {"Left": "Right", "Right": "Left"}])
def test_a_flip_swap_pair_with_one_class_present_is_an_error_naming_both(swap):
    from videoseq.transforms import flip_swap_ids

    with pytest.raises(ValueError, match=r"pairs (Left with Right|Right with Left), but only Left is a class.*"
                                         r"data.flip=false"):
        flip_swap_ids(swap, ["Left", "Static"])

