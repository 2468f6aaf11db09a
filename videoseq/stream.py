"""Streaming: which frames enter the model, the per-frame feature buffer, and live frame sources.

A stream runs the backbone once per kept frame and keeps the last ``clip_len``
features in a ring buffer; the temporal head runs over that buffer, so every
prediction equals clip mode on the same frames (see ``Predictor.step``).

Which frames are kept: the model saw frames ``stride`` apart in training, i.e.
one every ``stride / fps`` seconds at the training frame rate (``data.fps``).
``FrameClock`` keeps one incoming frame per such interval from the frame
timestamps, so a 60 fps camera and a 25 fps file give the model the same time
scale. Worked example: ``stride=2``, ``data.fps=12.5`` -> one frame every 0.16 s:
frames 0, 4, 8, ... of a 25 fps file and 0, 8, 16, ... of a 50 fps camera.

``FrameSource`` reads a file, camera or stream URL in a thread into a bounded
queue. Live sources (cameras, URLs) drop the oldest frame when the consumer
falls behind, which bounds the latency; files never drop (every frame is
processed, results are reproducible). A live source that cannot be opened,
stops delivering, raises or repeats one frozen frame is reopened up to
``retries`` times, then the stream ends with ``error`` set.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from videoseq.video import VideoDecodeError, open_capture


class FrameClock:
    """Keeps one frame every ``interval`` seconds from timestamped frames (None: every frame).

    The next kept time advances by exactly ``interval`` so the average rate is
    right under jitter; after a gap (a stall, dropped frames) it restarts from
    the current frame instead of keeping a burst of catch-up frames.
    """

    def __init__(self, interval: float | None) -> None:
        if interval is not None and interval <= 0:
            raise ValueError(f"frame interval must be positive seconds, got {interval}")
        self.interval = interval
        self.next_time: float | None = None

    def take(self, time_s: float | None) -> bool:
        """Whether the frame at ``time_s`` enters the model."""
        if self.interval is None or time_s is None:
            return True
        tolerance = 1e-3 * self.interval  # timestamps like 4/25 are not exact in binary
        if self.next_time is not None and time_s < self.next_time - tolerance:
            return False
        base = time_s if self.next_time is None else self.next_time
        self.next_time = base + self.interval
        if self.next_time <= time_s:
            self.next_time = time_s + self.interval
        return True


class FeatureRing:
    """The per-frame features of the last ``clip_len`` kept frames, oldest first."""

    def __init__(self, clip_len: int) -> None:
        self.clip_len = clip_len
        self.items: deque[torch.Tensor] = deque(maxlen=clip_len)

    def push(self, features: torch.Tensor) -> None:
        """Add one frame's features ``(B, D)`` or ``(B, D, h, w)``."""
        self.items.append(features)

    @property
    def full(self) -> bool:
        return len(self.items) == self.clip_len

    def clip(self) -> torch.Tensor:
        """``(B, T, D)`` or ``(B, T, D, h, w)``, oldest frame first."""
        return torch.stack(list(self.items), dim=1)

    def clear(self) -> None:
        self.items.clear()


def stream_interval(stride: int, train_fps: float | None, source_fps: float | None) -> float | None:
    """Seconds between kept frames: ``stride`` frames at the training frame rate.

    ``dense`` clips are ``stride`` frames apart by construction. ``segment`` and
    ``uniform`` clips spread ``frames`` over a whole training video, so their
    gap depends on the video's length; streaming uses ``stride`` for them too
    (set ``data.stride`` to the typical gap, video frames / clip frames).
    Without ``data.fps`` the source's own rate stands in for the training rate
    (``stride`` source frames); without either, every frame is kept.
    """
    fps = train_fps or source_fps
    return stride / fps if fps else None


class Capture(Protocol):
    """What ``FrameSource`` needs of a capture: ``cv2.VideoCapture`` or a stand-in for tests."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)
    def release(self) -> None: ...
    def get(self, prop: int) -> float: ...


@dataclass(frozen=True)
class Frame:
    """One frame read from a source: uint8 RGB ``(H, W, 3)``, its index and time in seconds."""

    image: np.ndarray
    index: int
    time_s: float
    source_fps: float | None


def is_live(source: str | int) -> bool:
    """Cameras (an index or a device such as /dev/video0) and URLs are live; other paths are files."""
    text = str(source)
    return text.isdigit() or "://" in text or (Path(text).exists() and not Path(text).is_file())


class SourceFailure(Exception):
    """A live source failed once (cannot open, no frame, raised, frozen); it may be retried."""


class FrameSource:
    """A file, camera index or URL read by a thread into a bounded queue.

    >>> with FrameSource("0") as source:                       # doctest: +SKIP
    ...     for frame in source:                # Frame(image, index, time_s, source_fps)
    ...         ...
    >>> source.dropped, source.error                            # doctest: +SKIP

    ``opener`` turns the source into an opened capture (``video.open_capture``
    by default; tests pass one that returns a fake capture, and the rest of the
    code path is the same). ``max_frozen`` identical frames in a row count as a
    frozen camera; ``stall_timeout`` seconds without any frame end the stream.
    """

    def __init__(
        self,
        source: str | int,
        *,
        opener: Callable[[str | int], Capture] = open_capture,
        live: bool | None = None,
        queue_size: int = 4,
        retries: int = 3,
        retry_delay: float = 1.0,
        max_frozen: int = 150,
        stall_timeout: float = 10.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue size must be >= 1, got {queue_size}")
        self.source = source
        self.opener = opener
        self.live = is_live(source) if live is None else live
        self.retries, self.retry_delay = retries, retry_delay
        self.max_frozen, self.stall_timeout = max_frozen, stall_timeout
        self.queue: queue.Queue[Frame | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.read_count = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="videoseq-reader", daemon=True)
        self._started = False

    # --- consumer side ---------------------------------------------------------
    def __enter__(self) -> FrameSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            try:
                item = self.queue.get(timeout=self.stall_timeout)
            except queue.Empty:
                self.error = self.error or (
                    f"{self.source}: no frame for {self.stall_timeout:g} s; the source stopped delivering")
                self._stop.set()
                return
            if item is None:
                return
            yield item

    def close(self) -> None:
        """Stop the reader; a capture stuck in ``read`` is left to its daemon thread."""
        self._stop.set()
        if self._started:
            self._thread.join(timeout=2.0)

    # --- reader thread -----------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self._read_capture()
                    return  # a file ended, or close() was called
                except SourceFailure as err:
                    failures += 1
                    if not self.live or failures > self.retries:
                        tries = f" after {failures} attempt(s)" if self.live else ""
                        self.error = f"{err}{tries}"
                        return
                    print(f"warning: {err}; retry {failures}/{self.retries} in {self.retry_delay:g} s", flush=True)
                    if self._stop.wait(self.retry_delay):
                        return
        finally:
            self._put_final()

    def _open(self) -> Capture:
        try:
            capture = self.opener(self.source)
        except VideoDecodeError as err:
            raise SourceFailure(str(err)) from err
        if not capture.isOpened():
            capture.release()
            raise SourceFailure(f"cannot open {self.source}")
        return capture

    def _read_capture(self) -> None:
        """Read until the file ends or close(); a live failure raises ``SourceFailure``."""
        capture = self._open()
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if np.isfinite(fps) and 0 < fps < 1000 else None
        if not self.live and fps is None:
            capture.release()
            raise SourceFailure(f"{self.source} reports no frame rate; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)")
        start, previous, frozen = time.monotonic(), None, 0
        try:
            while not self._stop.is_set():
                try:
                    ok, bgr = capture.read()
                except Exception as err:  # a backend error must not kill the thread silently
                    raise SourceFailure(f"{self.source}: reading a frame raised {type(err).__name__}: {err}") from err
                if not ok or bgr is None:
                    if self.live:
                        raise SourceFailure(f"{self.source} stopped delivering frames")
                    return
                frozen = frozen + 1 if previous is not None and np.array_equal(bgr, previous) else 0
                if self.live and frozen >= self.max_frozen:
                    raise SourceFailure(f"{self.source} is frozen: {frozen + 1} identical frames in a row")
                previous = bgr
                time_s = self.read_count / fps if not self.live else time.monotonic() - start
                self._put(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.read_count, time_s, fps))
                self.read_count += 1
        finally:
            capture.release()

    def _put(self, frame: Frame) -> None:
        """Live: drop the oldest queued frame when full. Files: wait for room."""
        while not self._stop.is_set():
            try:
                self.queue.put(frame, timeout=0.1 if not self.live else 0)
                return
            except queue.Full:
                if self.live:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def _put_final(self) -> None:
        """The end marker; makes room for it (a live consumer may be gone)."""
        while True:
            try:
                self.queue.put(None, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        pass
