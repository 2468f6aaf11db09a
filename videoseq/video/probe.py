"""Probe one video file or frame folder: does it open, decode, and hold what it says?

``probe_video`` opens a video and decodes a few frames spread over it.
``inspect_video`` runs in a worker process (see ``video.isolated.run_isolated``), so
it imports no torch. It probes the video (decord: the first, middle and last
frames and a few random ones), and counts the frames that
really decode (one OpenCV pass), to compare with decord's count and with the
count the container header promises. A truncated file typically opens, reports
what is left and decodes it, while its header still names the full length.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import cv2
import numpy as np

from videoseq.video.decoder import VideoDecodeError, VideoInfo, VideoReader

RANDOM_FRAMES = 3


def probe_indices(num_frames: int, frames: int = 3, seed: int | None = None, extra: int = RANDOM_FRAMES) -> np.ndarray:
    """``frames`` indices spread from the first frame to the last, plus ``extra`` random ones with a ``seed``.

    Sorted and distinct; the spread rounds halves up, so 3 of 10 frames are ``[0, 5, 9]``.
    """
    spread = np.floor(np.linspace(0, num_frames - 1, max(1, min(frames, num_frames))) + 0.5).astype(np.int64)
    if seed is not None:
        spread = np.append(spread, np.random.default_rng(seed).integers(0, num_frames, size=extra))
    return np.unique(spread)


def probe_video(path: str | os.PathLike, frames: int = 3, seed: int | None = None) -> VideoInfo:
    """Open a video and decode ``frames`` frames spread from its first to its last (see ``probe_indices``).

    What a health check needs: a file that passes opens, reports its geometry and
    decodes at both ends. Raises ``VideoDecodeError`` otherwise.
    """
    with VideoReader(path) as reader:
        n = reader.info.num_frames
        if n < 1:
            raise VideoDecodeError(path, "the container reports no video frames")
        reader.read(probe_indices(n, frames, seed))
        return reader.info


def count_decodable_frames(path: str) -> tuple[int, int, float, float]:
    """``(frames the header promises, frames that decode, seconds the header promises, seconds that decode)``
    in one OpenCV pass.

    The header's seconds are its frame count over its frame rate; the decoded seconds run
    from the first frame's timestamp to the end of the last frame (its timestamp plus the
    mean frame interval), so a variable-frame-rate file that decodes whole covers them.
    """
    capture = cv2.VideoCapture(path)
    try:
        promised, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS) or 0)
        decoded, first, last = 0, 0.0, 0.0
        while capture.grab():
            last = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
            first = last if decoded == 0 else first
            decoded += 1
    finally:
        capture.release()
    promised_s = promised / fps if fps > 0 else 0.0
    step = (last - first) / (decoded - 1) if decoded > 1 else (1 / fps if fps > 0 else 0.0)
    return promised, decoded, promised_s, (last - first + step) if decoded else 0.0


def failure_reason(err: VideoDecodeError, path: str) -> str:
    """The reason of ``err``, naming the image when one frame of a frame folder failed."""
    if os.path.normpath(err.path) == os.path.normpath(path):
        return err.reason
    return f"{Path(err.path).name}: {err.reason}"


def decode_every_frame(path: str, chunk: int = 64) -> str:
    """Decode every frame of a frame folder, ``chunk`` at a time; the first failure, or ""."""
    try:
        with VideoReader(path) as reader:
            for start in range(0, len(reader), chunk):
                reader.read(range(start, min(len(reader), start + chunk)))
    except VideoDecodeError as err:
        return failure_reason(err, path)
    return ""


def inspect_video(path: str) -> dict:
    """What one video holds, or why it cannot be used: a dict with ``error`` empty when it is sound.

    Keys: ``error``, ``frames`` (decord's count), ``decoded`` (frames that decode),
    ``header_frames`` (the container's promise; 0 when it names none), ``header_seconds`` and
    ``decoded_seconds`` (how long the header says, and the decoded timestamps show, it
    lasts), ``fps``, ``duration``, ``width``, ``height``.
    """
    result = {"error": "", "frames": 0, "decoded": 0, "header_frames": 0, "header_seconds": 0.0,
              "decoded_seconds": 0.0, "fps": 0.0, "duration": 0.0, "width": 0, "height": 0}
    try:
        info = probe_video(path, seed=zlib.crc32(path.encode()))
    except VideoDecodeError as err:
        result["error"] = failure_reason(err, path)
        return result
    result.update(frames=info.num_frames, fps=info.fps, duration=info.duration, width=info.width, height=info.height)
    if Path(path).is_dir():
        error = decode_every_frame(path)
        result.update(error=error, decoded=0 if error else result["frames"])
    else:
        counts = count_decodable_frames(path)
        result.update(zip(("header_frames", "decoded", "header_seconds", "decoded_seconds"), counts))
    return result
