"""What inference reads from each video, as a plan, and the work of one decoding request.

A plan says which frames the model needs from a video, as *units*: the test views of a
whole-video prediction (``VideoViews``), the clips of sliding windows (``Windows``), or
single frames at a fixed rate for the caches (``FramesAt``). A video's units are cut
into chunks of ``plan.chunk`` units; one chunk is one request to a decoding worker
(``read_chunk``), which decodes its frames, preprocesses them to what the model takes
(the eval preset's resize and centre crop, ``Crop``, or a short-side resize,
``ShortSide``) and sends them back. An hour-long video thus never sits in memory whole,
and a decoder crash or hang costs the request of one video.

Worked example: ``Windows(window=2, stride=1)`` over a 25 fps, 164-frame video has
windows of 50 frames starting at frames 0, 25, 50, 75, 100 and 114 (the last one ends
with the video): six units; with ``chunk=4`` they come in two requests, windows 0-3 and 4-5.

``read_chunk`` runs in worker processes (``video.isolated.IsolatedPool``): this module
and its imports are what each worker loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from videoseq.flow import MotionInput, shift_into_range
from videoseq.sampling import ClipSampling, window_starts
from videoseq.transcode import resampled_indices
from videoseq.video.decoder import VideoInfo, VideoReader
from videoseq.video.geometry import eval_crop, resize_short_side


@dataclass(frozen=True)
class VideoViews:
    """The ``views`` test clips of a whole video (``ClipSampling.views``): one unit per view."""

    clips: ClipSampling
    views: int = 1
    chunk: int = 1 << 20  # every view in one request
    lookback: int = 0  # frames a motion model reads before each kept frame (``flow.MotionInput.lookback``)

    def units(self, info: VideoInfo, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame indices ``(V, T)``; no time spans (``times`` unused)."""
        return shift_into_range(lambda n: self.clips.views(n, self.views), info.num_frames, self.lookback), None


@dataclass(frozen=True)
class Windows:
    """Clips of ``window`` seconds every ``stride`` seconds: one unit (one test clip) per window.

    A window holds ``round(window * fps)`` frames (the last one may be shorter: it ends
    with the video) and is sampled like a whole video of that length.
    """

    clips: ClipSampling
    window: float
    stride: float
    chunk: int = 32

    def units(self, info: VideoInfo, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frame indices ``(W, T)`` and ``(W, 2)`` start and end seconds.

        ``times`` are the ``(N + 1,)`` frame times (``VideoReader.frame_times``; default
        ``i / fps``): on a variable-frame-rate file a window holds ``window`` seconds' worth
        of frames at the file's mean rate, and its spans are the decoded timestamps.
        """
        n = info.num_frames
        times = np.arange(n + 1, dtype=np.float64) / info.fps if times is None else times
        fps = n / times[-1]
        size, step = max(1, round(self.window * fps)), max(1, round(self.stride * fps))
        starts = window_starts(n, size, step)
        ends = np.minimum(starts + size, n)
        indices = np.stack([start + self.clips.views(int(end - start), 1)[0] for start, end in zip(starts, ends)])
        return indices, np.stack([times[starts], times[ends]], axis=1)


@dataclass(frozen=True)
class FramesAt:
    """Every frame kept at ``fps`` (None: every frame), one unit per frame (the feature and frame caches)."""

    fps: float | None = None
    chunk: int = 256

    def units(self, info: VideoInfo, times: np.ndarray | None = None) -> tuple[np.ndarray, None]:
        """Frame indices ``(F, 1)``; no time spans (``times`` unused)."""
        return resampled_indices(info.num_frames, info.fps, self.fps)[:, None], None


Plan = VideoViews | Windows | FramesAt


@dataclass(frozen=True)
class Crop:
    """The eval preset (``transforms.ClipEvalPreset``): short side to ``size / 0.875``, centre ``size`` crop."""

    size: int

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``(T, H, W, 3)`` -> ``(T, size, size, 3)``."""
        return eval_crop(frames, self.size)


@dataclass(frozen=True)
class ShortSide:
    """The short side resized to ``short_side`` when larger (never enlarged): the frame cache."""

    short_side: int

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``(T, H, W, 3)`` -> ``(T, h, w, 3)``."""
        if min(frames.shape[1:3]) <= self.short_side:
            return frames
        return resize_short_side(frames, self.short_side)


@dataclass(frozen=True)
class MotionCrop:
    """A motion model's clips: each unit's motion images (``flow.MotionInput``, from its kept frames and the
    frames before them), through the motion eval preset (``transforms.MotionEvalPreset``), as the clip path
    and ``Predictor.read_views`` compute them."""

    motion: MotionInput
    preset: Callable

    def clips(self, reader: VideoReader, units: np.ndarray) -> np.ndarray:
        """Kept frame indices ``(U, T)`` -> uint8 ``(U, T, S, S, C)``."""
        return np.stack([self.preset(self.motion.read_clip(reader.read, kept), 0)[0] for kept in units])


@dataclass(frozen=True)
class ChunkRequest:
    """Chunk ``number`` of the units ``plan`` finds in the video at ``path``, preprocessed by ``prepare``."""

    path: str
    plan: Plan
    prepare: Crop | ShortSide | MotionCrop
    number: int = 0


@dataclass
class Chunk:
    """What a request brings back.

    ``frames`` is uint8 ``(U, T, S, S, 3)`` for clips (``U`` units of this chunk) and
    ``(U, h, w, 3)`` for ``FramesAt``; ``spans`` the units' ``(U, 2)`` start and end
    seconds (windows only); ``chunks`` how many requests the video takes in all.
    """

    number: int
    chunks: int
    first_unit: int
    frames: np.ndarray
    spans: np.ndarray | None
    info: VideoInfo


def read_chunk(request: ChunkRequest) -> Chunk:
    """Decode and preprocess one chunk (runs in a decoding worker; also callable in-process)."""
    cv2.setNumThreads(1)  # one core per worker: the pool is the parallelism
    plan = request.plan
    with VideoReader(request.path) as reader:
        times = reader.frame_times() if isinstance(plan, Windows) else None
        indices, spans = plan.units(reader.info, times)  # (U, T), (U, 2) or None
        chunks = max(1, -(-len(indices) // plan.chunk))
        first = request.number * plan.chunk
        wanted = indices[first:first + plan.chunk]
        if isinstance(request.prepare, MotionCrop):
            frames = request.prepare.clips(reader, wanted)  # (U, T, S, S, C)
        else:
            frames = reader.read(wanted.reshape(-1), transform=request.prepare)  # (U * T, h, w, 3), as decoded
        info = reader.info
    if isinstance(plan, FramesAt):
        frames = frames.reshape(len(wanted), *frames.shape[1:])  # (U, h, w, 3): the units are single frames
    elif not isinstance(request.prepare, MotionCrop):  # motion clips come shaped
        frames = frames.reshape(*wanted.shape, *frames.shape[1:])  # (U, T, S, S, 3)
    return Chunk(request.number, chunks, first, frames, None if spans is None else spans[first:first + plan.chunk],
                 info)
