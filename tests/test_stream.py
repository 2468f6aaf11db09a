import threading
import time

import cv2
import numpy as np
import pytest
import torch

from videoseq.config import config_from_dict
from videoseq.predict import Predictor
from videoseq.stream import FeatureRing, FrameClock, stream_interval
from videoseq.video.cameras import FrameSource, SourceOptions, is_live
from videoseq.video.decoder import VideoDecodeError

from conftest import informative_model

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


@pytest.mark.parametrize("source, live", [("0", True), (0, True), ("rtsp://cam/1", True), ("http://x/s.mjpg", True),
                                          ("missing.avi", False), ("/dev/null", True)])
def test_cameras_devices_and_urls_are_live_paths_are_files(source, live):
    assert is_live(source) is live


def test_feature_ring_keeps_the_last_frames_oldest_first():
    ring = FeatureRing(3)
    for i in range(5):
        ring.push(torch.full((1, 2), float(i)))
    assert ring.full and ring.clip()[0, :, 0].tolist() == [2.0, 3.0, 4.0]


class FakeCapture:
    """Duck-typed cv2.VideoCapture: plays ``frames`` (BGR), then behaves as ``after`` says.

    ``after``: "end" (read returns False), "freeze" (repeats the last frame), "raise".
    """

    def __init__(self, frames: np.ndarray, after: str = "end", fps: float = 30.0, opened: bool = True) -> None:
        self.frames, self.after, self.fps, self.opened = list(frames), after, fps, opened
        self.position, self.released = 0, False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True

    def read(self):
        if self.position < len(self.frames):
            self.position += 1
            return True, self.frames[self.position - 1].copy()
        if self.after == "freeze":
            return True, self.frames[-1].copy()
        if self.after == "raise":
            raise OSError("device unplugged")
        return False, None


def opener_of(captures: list):
    """An opener that hands out the given captures (or raises the given errors) in turn."""
    opened = []

    def opener(source):
        item = captures[min(len(opened), len(captures) - 1)]
        opened.append(item)
        if isinstance(item, Exception):
            raise item
        return item

    opener.opened = opened
    return opener


def read_all(source: FrameSource) -> list:
    with source:
        return list(source)


def test_live_source_that_cannot_be_opened_retries_then_ends_with_a_message():
    opener = opener_of([VideoDecodeError(0, "OpenCV cannot open it")])
    source = FrameSource("0", SourceOptions(retries=2, retry_delay=0.01), opener=opener, live=True)
    assert read_all(source) == []
    assert len(opener.opened) == 3 and "after 3 attempt(s)" in source.error and "cannot open" in source.error


@pytest.mark.parametrize("after, reason",
                         [("end", "stopped delivering"), ("freeze", "frozen"), ("raise", "device unplugged")])
def test_live_source_failures_reopen_the_camera_and_keep_counting_frames(after, reason):
    frames = random_frames(3, 8, 8)
    captures = [FakeCapture(frames, after=after), FakeCapture(frames, after=after)]
    opener = opener_of(captures)
    options = SourceOptions(retries=1, retry_delay=0.01, max_frozen=5, queue_size=64)
    source = FrameSource("0", options, opener=opener, live=True)
    got = read_all(source)
    assert reason in source.error and "after 2 attempt(s)" in source.error
    assert all(c.released for c in captures) and len(opener.opened) == 2
    # the frozen camera's repeats up to the limit are delivered too; every frame is indexed in read order
    assert [f.index for f in got] == list(range(len(got))) and len(got) >= 6
    np.testing.assert_array_equal(got[0].image, cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB))


def test_a_file_source_ends_cleanly_and_times_frames_by_their_index():
    frames = random_frames(5, 8, 8)
    source = FrameSource("clip.avi", SourceOptions(queue_size=1), opener=opener_of([FakeCapture(frames, fps=25.0)]),
                         live=False)
    got = read_all(source)
    assert source.error is None and source.dropped == 0
    assert [f.time_s for f in got] == pytest.approx([i / 25 for i in range(5)])


def test_a_live_source_drops_the_oldest_frames_when_the_consumer_falls_behind():
    frames = random_frames(40, 8, 8)
    source = FrameSource("0", SourceOptions(retries=0, queue_size=2),
                         opener=opener_of([FakeCapture(frames, after="end")]), live=True)
    with source:
        time.sleep(0.5)  # the consumer is busy while the camera delivers all 40 frames
        got = list(source)
    assert source.dropped == 40 - len(got) and source.dropped > 0
    assert got[-1].index == 39  # the newest frames survive


def test_a_stalled_source_ends_after_the_stall_timeout():
    release = threading.Event()

    class Stuck(FakeCapture):
        def read(self):
            release.wait(5)
            return False, None

    source = FrameSource("0", SourceOptions(retries=0, stall_timeout=0.2),
                         opener=opener_of([Stuck(random_frames(1, 8, 8))]), live=True)
    assert read_all(source) == [] and "no frame for 0.2 s" in source.error
    release.set()


def test_a_missing_file_ends_at_once_with_an_error_naming_it(tmp_path):
    source = FrameSource(str(tmp_path / "missing.avi"), SourceOptions(retries=3), live=False)
    assert read_all(source) == []
    assert "missing.avi" in source.error and "attempt" not in source.error  # files are not retried


def test_a_real_file_streams_through_opencv_with_its_frame_rate(shared_video):
    source = FrameSource(str(shared_video("short_32frames.mp4")))
    got = read_all(source)
    assert not source.live and source.error is None and len(got) == 32
    assert got[0].source_fps == pytest.approx(30.0) and got[-1].time_s == pytest.approx(31 / 30)
    assert got[0].image.shape == (256, 340, 3)
