"""Cameras, URLs and files through OpenCV, and the threaded reader of live sources (fake and real captures)."""

import threading
import time

import cv2
import numpy as np
import pytest

from videoseq.video.cameras import FrameSource, SourceOptions, capture_frames, is_live, open_capture
from videoseq.video.decoder import VideoDecodeError

from conftest import brightness_frames, write_video


def levels(frames: np.ndarray) -> np.ndarray:
    """Mean brightness of each frame."""
    return frames.reshape(len(frames), -1).mean(axis=1)


def random_frames(n: int, height: int = 72, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_open_capture_reads_a_file(tmp_path):
    path = write_video(tmp_path / "cap.avi", brightness_frames(6))
    capture = open_capture(str(path))
    frames = np.stack(list(capture_frames(capture)))
    capture.release()
    assert frames.shape == (6, 32, 32, 3)
    np.testing.assert_allclose(levels(frames), 10 + 8 * np.arange(6), atol=3)


@pytest.mark.parametrize("source", [99, "99"])
def test_open_capture_on_a_missing_camera_raises(source):
    with pytest.raises(VideoDecodeError, match="99") as caught:
        open_capture(source)
    assert "camera" in caught.value.hint


def test_open_capture_on_a_missing_file_raises(tmp_path):
    with pytest.raises(VideoDecodeError, match="nothing.mp4"):
        open_capture(str(tmp_path / "nothing.mp4"))


@pytest.mark.parametrize("source, live", [("0", True), (0, True), ("rtsp://cam/1", True), ("http://x/s.mjpg", True),
                                          ("missing.avi", False), ("/dev/null", True)])
def test_cameras_devices_and_urls_are_live_paths_are_files(source, live):
    assert is_live(source) is live


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
