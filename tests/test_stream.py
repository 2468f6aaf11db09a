"""Streaming logic: streamed logits equal clip mode, the frame clock, the interval, the feature ring."""

import numpy as np
import pytest
import torch

from videoseq.config import config_from_dict
from videoseq.flow import motion_frame_table
from videoseq.predict import Predictor
from videoseq.stream import FeatureRing, FrameClock, stream_interval

from conftest import informative_model, motion_model

HEADS = [
    ("mean", {}),
    ("gru", {"hidden": 16}),
    ("lstm", {"hidden": 16}),
    ("gru", {"hidden": 16, "bidirectional": True}),
    ("lstm", {"hidden": 16, "bidirectional": True}),
    ("convlstm", {"hidden": 8}),
]


def make_predictor(head: str, head_args: dict, *, frames: int = 4, stride: int = 2, fps: float | None = None,
                   size: int = 64) -> Predictor:
    stage = "stride16" if head == "convlstm" else None
    config = config_from_dict({
        "data": {"frames": frames, "size": size, "sampling": "dense", "stride": stride, "fps": fps},
        "model": {"backbone": "mobilenet_v3_small", "stage": stage, "head": head, "head_args": head_args},
    })
    model = informative_model(head, head_args, frames=frames, size=size, num_classes=5, stage=stage)
    return Predictor(model, config, [f"c{i}" for i in range(5)], torch.device("cpu"))


def random_frames(n: int, height: int = 72, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("head, head_args", HEADS,
                         ids=[f"{h}{'-bi' if a.get('bidirectional') else ''}" for h, a in HEADS])
def test_streaming_logits_equal_clip_mode_on_the_same_frames(head, head_args):
    """A 10 fps source, stride 2: the stream keeps frames 0, 2, 4, ...; each prediction equals the clip."""
    predictor = make_predictor(head, head_args)
    frames = random_frames(16)
    predictor.reset_stream(source_fps=10)
    steps, seen = 0, []
    for i, frame in enumerate(frames):
        logits = predictor.step_logits(frame, time_s=i / 10)
        if i % 2 or i < 6:  # skipped by the clock, or the 4-frame buffer still filling
            assert logits is None
            continue
        clip = frames[i - 6 : i + 1 : 2]  # the 4 frames the model saw, 2 apart
        expected = predictor.clip_logits(clip[None])[0]
        seen.append(expected)
        assert torch.max(torch.abs(logits - expected)).item() <= 1e-4
        steps += 1
    assert steps == 5
    assert torch.stack(seen).std(0).max() > 1e-3  # the logits change with the frames: equality means something


def test_step_returns_probabilities_and_reset_empties_the_buffer():
    predictor = make_predictor("gru", {"hidden": 8}, frames=2)
    frames = random_frames(3)
    assert predictor.step(frames[0]) is None
    probs = predictor.step(frames[1])
    assert probs.shape == (5,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(probs, predictor.predict_clip(frames[:2]), atol=1e-5)
    predictor.reset_stream()
    assert predictor.step(frames[2]) is None


def test_stream_copies_share_the_model_and_keep_states_of_their_own():
    """Two streams interleaved frame by frame give what each gives alone (one copy per live connection)."""
    predictor = make_predictor("gru", {"hidden": 8}, frames=3, stride=1)
    a_frames, b_frames = random_frames(6, seed=1), random_frames(6, seed=2)
    a, b = predictor.stream_copy(source_fps=10), predictor.stream_copy(source_fps=10)
    assert a.model is predictor.model and a.ring is not b.ring and a.clock is not b.clock
    mixed = [(a.step(fa, i / 10), b.step(fb, i / 10)) for i, (fa, fb) in enumerate(zip(a_frames, b_frames))]
    for frames, column in ((a_frames, 0), (b_frames, 1)):
        alone = predictor.stream_copy(source_fps=10)
        for i, frame in enumerate(frames):
            expected, got = alone.step(frame, i / 10), mixed[i][column]
            assert (expected is None) == (got is None) and (got is None or np.allclose(got, expected, atol=1e-6))
    assert a.frames_kept == b.frames_kept == 6 and predictor.frames_kept == 0
    assert not np.allclose(mixed[-1][0], mixed[-1][1], atol=1e-3)  # the two streams really differ

@pytest.mark.parametrize(
    "fps, interval, kept",
    [(25.0, 0.16, [0, 4, 8, 12, 16]),  # stride 2 at 12.5 fps: every 4th frame of a 25 fps file
     (50.0, 0.16, [0, 8, 16]),  # every 8th frame of a 50 fps camera: the same times
     (10.0, 0.16, [0, 2, 4, 5, 7, 8, 10, 12, 13, 15, 16, 18]),  # a slower source: 12 frames in 2 s
     (25.0, None, list(range(20)))],
)
def test_frame_clock_keeps_one_frame_per_interval(fps, interval, kept):
    clock = FrameClock(interval)
    times = np.arange(20) / fps
    assert [i for i, t in enumerate(times) if clock.take(float(t))] == kept


def test_frame_clock_restarts_after_a_gap_instead_of_bursting():
    clock = FrameClock(0.1)
    assert clock.take(0.0) and clock.take(0.1)
    assert clock.take(5.0)  # 5 s stall
    assert not clock.take(5.05) and clock.take(5.1)


def test_stream_interval_uses_the_training_rate_then_the_source_rate():
    assert stream_interval(2, 12.0, 60.0) == pytest.approx(2 / 12)
    assert stream_interval(2, None, 25.0) == pytest.approx(2 / 25)
    assert stream_interval(3, None, None) is None


def test_feature_ring_keeps_the_last_frames_oldest_first():
    ring = FeatureRing(3)
    for i in range(5):
        ring.push(torch.full((1, 2), float(i)))
    assert ring.full and ring.clip()[0, :, 0].tolist() == [2.0, 3.0, 4.0]


MOTION_CASES = [("flow", None, 1), ("flow", None, 2), ("rgb", "online", 1), ("flow", "online", 1),
                ("rgbdiff", "online", 1)]


def motion_predictor(modality: str, shift: str | None, stack: int = 1) -> Predictor:
    model, config = motion_model(modality, shift, stack=stack, num_classes=5)
    return Predictor(model, config, [f"c{i}" for i in range(5)], torch.device("cpu"))


def real_frames(count: int, step: int = 2) -> np.ndarray:
    """``count`` decoded frames of vtest.avi (a street camera, people walking), ``step`` source frames apart."""
    from videoseq.video.decoder import VideoReader

    from conftest import shared_clip

    with VideoReader(shared_clip("vtest.avi")) as reader:
        return reader.read(np.arange(0, count * step, step))


def clip_images(predictor: Predictor, frames: np.ndarray, last: int, length: int) -> np.ndarray:
    """The clip path's images of kept frames ``last - length + 1 .. last`` (``MotionInput`` on a frame table)."""
    kept = np.arange(last - length + 1, last + 1)
    if predictor.motion is None:
        return frames[kept]
    return predictor.motion(frames, motion_frame_table(kept, 1, predictor.motion.stack))


@pytest.mark.parametrize("modality, shift, stack", MOTION_CASES, ids=[f"{m}-{s}-L{k}" for m, s, k in MOTION_CASES])
def test_motion_and_online_shift_streams_equal_the_clip_path_on_real_frames(modality, shift, stack):
    """Every prediction of a stream equals the clip path on the same decoded frames.

    Flow: each kept frame's flow against the previous kept frame, as the clip's frame
    table reads it (the stream's first frame against itself, like a clip at frame 0).
    Online shift: the first prediction equals the clip of the first 4 kept frames; a later
    one carries the stream's past through the shift cache, so it equals the head over the
    last 4 frames of one clip forward over every kept frame so far.
    """
    predictor = motion_predictor(modality, shift, stack)
    frames = real_frames(9)
    model, seen = predictor.model, []
    for i, frame in enumerate(frames):
        logits = predictor.step_logits(frame)  # every frame kept: they are already 2 source frames apart
        if i < 3:
            assert logits is None
            continue
        with torch.no_grad():
            if shift is None or i == 3:
                expected = predictor.clip_logits(clip_images(predictor, frames, i, 4)[None])[0]
            else:
                features = model.forward_features(predictor.prepare(clip_images(predictor, frames, i, i + 1)[None]))
                expected = model.forward_head(features[:, -4:])[0]
        seen.append(expected)
        assert torch.max(torch.abs(logits - expected)).item() <= 1e-4, (i, logits, expected)
    assert len(seen) == 6 and torch.stack(seen).std(0).max() > 1e-3  # the logits move: equality means something


def test_a_stream_computes_one_flow_per_kept_frame():
    predictor = motion_predictor("flow", None, stack=2)
    calls = []
    estimator = predictor.motion.estimator
    original = estimator.__call__
    predictor.motion.estimator = lambda a, b: calls.append(1) or original(a, b)
    for frame in real_frames(6):
        predictor.step_logits(frame)
    assert len(calls) == 6


def test_a_bidirectional_shift_cannot_stream_and_says_what_to_use():
    predictor = motion_predictor("rgb", "bidirectional")
    with pytest.raises(ValueError, match="bidirectional.*next frame.*temporal_shift=online"):
        predictor.step(real_frames(1)[0])
    with pytest.raises(ValueError, match="temporal_shift=online"):
        predictor.stream_copy()
