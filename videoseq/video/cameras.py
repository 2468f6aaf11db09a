"""Cameras, stream URLs and files through OpenCV, and the threaded reader of live sources.

``open_capture`` opens a camera index, a URL or a file; ``capture_frames`` reads
an open capture as RGB frames.

``FrameSource`` reads a file, camera or stream URL in a thread into a bounded
queue. Live sources (cameras, URLs) drop the oldest frame when the consumer
falls behind, which bounds the latency; files never drop (every frame is
processed, results are reproducible). A live source that cannot be opened,
stops delivering, raises or repeats one frozen frame is reopened up to
``retries`` times, then the stream ends with ``error`` set. Frames larger than the
pixel cap (``video.limits``) are shrunk as they are read.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from videoseq.video.decoder import VideoDecodeError
from videoseq.video.limits import capped_size, fit_frame, pixel_limit


def open_capture(source: str | int, *, api_preference: int = cv2.CAP_ANY) -> cv2.VideoCapture:
    """An opened OpenCV capture for a camera index (int or digit string), a URL or a file.

    OpenCV turns rotated files upright itself (``CAP_PROP_ORIENTATION_AUTO``), so
    frames from ``capture_frames`` need no further rotation. Raises
    ``VideoDecodeError`` when the source cannot be opened.
    """
    target: str | int = int(source) if isinstance(source, str) and source.isdigit() else source
    if isinstance(target, os.PathLike):
        target = str(target)
    capture = cv2.VideoCapture(target, api_preference)
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(target, "OpenCV cannot open it", _capture_hint(target))
    return capture


def capture_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """Frames of an open capture as uint8 RGB ``(H, W, 3)`` until it ends or fails."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _capture_hint(target: str | int) -> str:
    if isinstance(target, int):
        return "check that a camera with this index exists (ls /dev/video*) and no other program holds it"
    if "://" in target:
        return "check that the stream URL is reachable and in a format OpenCV's FFmpeg backend reads"
    return "check the path and that the file is a playable video"


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


@dataclass(frozen=True)
class SourceOptions:
    """How ``FrameSource`` reads a source; ``predict --stream`` takes its flags' defaults from here."""

    queue_size: int = 4  # frames held for the consumer; a live source drops the oldest beyond it
    retries: int = 3  # reopen a failing live source this many times
    retry_delay: float = 1.0  # seconds between retries
    max_frozen: int = 150  # identical frames in a row that mean a frozen camera
    stall_timeout: float = 10.0  # seconds without a frame before the stream ends

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"queue size must be >= 1, got {self.queue_size}")


class FrameSource:
    """A file, camera index or URL read by a thread into a bounded queue.

    >>> with FrameSource("0") as source:                       # doctest: +SKIP
    ...     for frame in source:                # Frame(image, index, time_s, source_fps)
    ...         ...
    >>> source.dropped, source.error                            # doctest: +SKIP

    ``opener`` turns the source into an opened capture (``open_capture``
    by default; tests pass one that returns a fake capture, and the rest of the
    code path is the same). ``options`` say how it is read (``SourceOptions``).
    """

    def __init__(
        self,
        source: str | int,
        options: SourceOptions = SourceOptions(),
        *,
        opener: Callable[[str | int], Capture] = open_capture,
        live: bool | None = None,
    ) -> None:
        self.source = source
        self.opener = opener
        self.live = is_live(source) if live is None else live
        self.retries, self.retry_delay = options.retries, options.retry_delay
        self.max_frozen, self.stall_timeout = options.max_frozen, options.stall_timeout
        self.queue: queue.Queue[Frame | None] = queue.Queue(maxsize=options.queue_size)
        self.dropped = 0
        self.read_count = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="videoseq-reader", daemon=True)
        self._started = False
        self.max_pixels = pixel_limit()  # larger frames are shrunk as they are read

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
            raise SourceFailure(f"{self.source} reports no frame rate; "
                                "re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)")
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
                bgr = fit_frame(bgr, capped_size(bgr.shape[1], bgr.shape[0], self.max_pixels))
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
