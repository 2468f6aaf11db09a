"""Streaming: which frames enter the model, and the per-frame feature buffer.

A stream runs the backbone once per kept frame and keeps the last ``clip_len``
features in a ring buffer; the temporal head runs over that buffer, so every
prediction equals clip mode on the same frames (see ``Predictor.step``).

Which frames are kept: the model saw frames ``stride`` apart in training, i.e.
one every ``stride / fps`` seconds at the training frame rate (``data.fps``).
``FrameClock`` keeps one incoming frame per such interval from the frame
timestamps, so a 60 fps camera and a 25 fps file give the model the same time
scale. Worked example: ``stride=2``, ``data.fps=12.5`` -> one frame every 0.16 s:
frames 0, 4, 8, ... of a 25 fps file and 0, 8, 16, ... of a 50 fps camera.

A motion model (``data.modality`` flow, rgbdiff, rgb+flow) reads each kept frame's
motion against the previous kept frame: ``MotionStream`` computes one field per kept
frame with ``flow.MotionInput``'s own maths (resize, method, bound, quantisation), so
a stream's motion images are those of a clip on the same frames.

The frames themselves come from ``video.cameras.FrameSource``.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from videoseq.flow import MotionInput, modality_parts
from videoseq.video.geometry import resize_short_side


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


class MotionStream:
    """The model images of a stream's kept frames, one frame at a time: ``(H, W, 3)`` -> uint8 ``(h, w, C)``.

    Each kept frame gives one field per motion part, against the previous kept frame
    (the first kept frame against itself: zero motion, as a clip at a video's start);
    the last ``stack`` fields make the time step. ``rgb`` (of ``rgb+flow``) is the
    resized frame itself.
    """

    def __init__(self, motion: MotionInput) -> None:
        self.motion = motion
        self.parts = modality_parts(motion.modality)
        self.previous: dict[str, np.ndarray] = {}  # part -> source of the previous kept frame
        self.fields = {part: deque(maxlen=motion.stack) for part in self.parts if part != "rgb"}

    def push(self, frame: np.ndarray) -> np.ndarray:
        """The next kept frame -> its model image (one field computed per motion part)."""
        frame = resize_short_side(frame[None], self.motion.short_side, area=True)[0]  # (h, w, 3)
        images = []
        for part in self.parts:
            if part == "rgb":
                images.append(frame)
                continue
            source = self.motion.source(part, frame)
            field = self.motion.field(part, self.previous.get(part, source), source)
            fields = self.fields[part]
            while len(fields) < fields.maxlen - 1:  # a first frame: the earlier fields compare it with itself
                fields.append(field)
            fields.append(field)
            self.previous[part] = source
            images.append(np.concatenate(list(fields), axis=-1))
        return images[0] if len(images) == 1 else np.concatenate(images, axis=-1)
