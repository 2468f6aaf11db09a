"""Pure frame-index functions: which frames of a video make a clip. No torch, no I/O.

Every function returns int64 indices into ``[0, num_frames)``. Videos shorter than
the clip are handled by one policy (``short``):

- ``loop``: wrap around to the start (``0 1 2 0 1 2 ...``);
- ``repeat_last``: hold the last frame (``0 1 2 2 2 ...``).

``ClipSampling`` holds the clip settings of a config (``data.frames``,
``data.sampling``, ``data.stride``, ``data.short_video``) and cuts training clips and
test views with them: training, evaluation, the caches and prediction share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from videoseq.config import DataConfig

SAMPLING_METHODS = ("segment", "uniform", "dense")
SHORT_POLICIES = ("loop", "repeat_last")


def _check(num_frames: int, clip_len: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")


def fit_to_length(positions: np.ndarray, num_frames: int, short: str) -> np.ndarray:
    """Map positions that may run past the end of a short video back inside it."""
    if short not in SHORT_POLICIES:
        raise ValueError(f"short video policy {short!r} is not one of {list(SHORT_POLICIES)}")
    positions = np.asarray(positions, dtype=np.int64)
    if short == "loop":
        return positions % num_frames
    return np.minimum(positions, num_frames - 1)


def segment_indices(
    num_frames: int,
    num_segments: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    offset: float = 0.5,
    short: str = "loop",
) -> np.ndarray:
    """TSN sampling: cut the video into ``num_segments`` equal segments, one frame from each.

    Training draws a random frame inside every segment; testing takes the frame at
    ``offset`` (0.5 = the centre). Worked example, 39 frames and 4 segments: each
    segment is 9.75 frames long, so test indices are
    ``floor(9.75 * k + 4.875)`` for k = 0..3 -> ``[4, 14, 24, 34]``.
    A video with fewer frames than segments is fitted with ``short``.
    """
    _check(num_frames, num_segments)
    if num_frames < num_segments:
        return fit_to_length(np.arange(num_segments), num_frames, short)
    length = num_frames / num_segments
    starts = length * np.arange(num_segments)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        positions = starts + rng.random(num_segments) * length
    else:
        positions = starts + offset * length
    return np.minimum(np.floor(positions).astype(np.int64), num_frames - 1)


def uniform_indices(num_frames: int, clip_len: int, *, short: str = "loop") -> np.ndarray:
    """``clip_len`` frames evenly spread from the first to the last frame (deterministic).

    Example: 10 frames, 4 samples -> ``round(linspace(0, 9, 4))`` = ``[0, 3, 6, 9]``.
    """
    _check(num_frames, clip_len)
    if num_frames < clip_len:
        return fit_to_length(np.arange(clip_len), num_frames, short)
    return np.round(np.linspace(0, num_frames - 1, clip_len)).astype(np.int64)


def dense_span(clip_len: int, stride: int) -> int:
    """Frames covered by a dense clip: 8 frames at stride 2 span 15 frames."""
    return (clip_len - 1) * stride + 1


def dense_indices(
    num_frames: int,
    clip_len: int,
    stride: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    short: str = "loop",
) -> np.ndarray:
    """Consecutive frames at a fixed ``stride`` (gesture models, streaming).

    Training starts at a random frame; testing centres the clip. Example: 40 frames,
    8 frames at stride 2 span 15 frames; the test clip starts at (40 - 15) // 2 = 12,
    giving ``[12, 14, ..., 26]``. A video shorter than the span is fitted with ``short``.
    """
    _check(num_frames, clip_len)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    offsets = np.arange(clip_len, dtype=np.int64) * stride
    max_start = num_frames - dense_span(clip_len, stride)
    if max_start < 0:
        return fit_to_length(offsets, num_frames, short)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, max_start + 1))
    else:
        start = max_start // 2
    return start + offsets


def multi_view_indices(
    num_frames: int,
    clip_len: int,
    num_views: int,
    *,
    method: str = "segment",
    stride: int = 1,
    short: str = "loop",
) -> np.ndarray:
    """``num_views`` deterministic test clips, shape ``(num_views, clip_len)``.

    - ``segment``/``uniform``: TSN views, each taking the frame at offset
      ``(v + 0.5) / num_views`` inside every segment;
    - ``dense``: clip starts spread evenly from the first to the last possible start.

    One view equals the single test clip of the same method.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if num_views == 1:
        return sample_indices(method, num_frames, clip_len, stride=stride, train=False, short=short)[None]
    if method in ("segment", "uniform"):
        views = [
            segment_indices(num_frames, clip_len, train=False, offset=(v + 0.5) / num_views, short=short)
            for v in range(num_views)
        ]
        return np.stack(views)
    max_start = num_frames - dense_span(clip_len, stride)
    base = dense_indices(num_frames, clip_len, stride, train=False, short=short)
    if max_start <= 0:
        return np.repeat(base[None], num_views, axis=0)
    starts = np.round(np.linspace(0, max_start, num_views)).astype(np.int64)
    return starts[:, None] + np.arange(clip_len, dtype=np.int64)[None] * stride


def window_starts(num_frames: int, window: int, step: int) -> np.ndarray:
    """Start frames of sliding windows of ``window`` frames every ``step`` frames.

    The last window ends at the last frame, so the tail of the video is covered:
    25 frames, window 10, step 8 -> ``[0, 8, 15]``. A video shorter than one window
    gives the single start 0.
    """
    if window < 1 or step < 1:
        raise ValueError(f"window and step must be >= 1, got {window} and {step}")
    last = max(num_frames - window, 0)
    starts = np.arange(0, last + 1, step, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def sample_indices(
    method: str,
    num_frames: int,
    clip_len: int,
    *,
    stride: int = 1,
    train: bool,
    rng: np.random.Generator | None = None,
    short: str = "loop",
) -> np.ndarray:
    """One clip with the named method (``segment``, ``uniform`` or ``dense``)."""
    if method == "segment":
        return segment_indices(num_frames, clip_len, train=train, rng=rng, short=short)
    if method == "uniform":
        return uniform_indices(num_frames, clip_len, short=short)
    if method == "dense":
        return dense_indices(num_frames, clip_len, stride, train=train, rng=rng, short=short)
    raise ValueError(f"sampling method {method!r} is not one of {list(SAMPLING_METHODS)}")


@dataclass(frozen=True)
class ClipSampling:
    """How clips are cut from a video: ``frames`` indices by ``method``, ``stride`` apart for ``dense``,
    videos shorter than the clip fitted with ``short``.

    >>> ClipSampling(frames=4, method="uniform").views(10)
    array([[0, 3, 6, 9]])
    """

    frames: int
    method: str = "segment"
    stride: int = 1
    short: str = "loop"

    def __post_init__(self) -> None:
        if self.method not in SAMPLING_METHODS:
            raise ValueError(f"sampling method {self.method!r} is not one of {list(SAMPLING_METHODS)}")
        if self.short not in SHORT_POLICIES:
            raise ValueError(f"short video policy {self.short!r} is not one of {list(SHORT_POLICIES)}")
        if self.frames < 1 or self.stride < 1:
            raise ValueError(f"clip frames and stride must be >= 1, got {self.frames} and {self.stride}")

    @classmethod
    def from_data(cls, data: DataConfig) -> ClipSampling:
        """The clip settings of a data config: ``frames``, ``sampling``, ``stride`` and ``short_video``."""
        return cls(frames=data.frames, method=data.sampling, stride=data.stride, short=data.short_video)

    def train_clip(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """One random training clip, ``(frames,)``."""
        return sample_indices(self.method, num_frames, self.frames, stride=self.stride, train=True, rng=rng,
                              short=self.short)

    def views(self, num_frames: int, views: int = 1) -> np.ndarray:
        """``views`` deterministic test clips, ``(views, frames)`` (see ``multi_view_indices``)."""
        return multi_view_indices(num_frames, self.frames, views, method=self.method, stride=self.stride,
                                  short=self.short)
