"""How large a decoded frame may be: a cap on pixels per frame, so that no input can exhaust memory.

A frame larger than the cap is decoded (decord, OpenCV, frame images) at a smaller size
with the same aspect; every reader reports the size it hands out. The cap is
``DEFAULT_MAX_PIXELS`` (4096 x 2160: 4K comes out whole, an 8K frame at about half its
sides), or ``$VIDEOSEQ_MAX_PIXELS``; ``VideoReader(max_pixels=...)`` sets it per reader.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from videoseq.errors import UsageError

# Decoded frames hold at most this many pixels: 4096 x 2160 (DCI 4K; UHD 3840 x 2160 fits) comes out as it
# is, larger frames (8K) are decoded at a smaller size with the same aspect (docs/reliability.md).
DEFAULT_MAX_PIXELS = 4096 * 2160
MAX_PIXELS_VARIABLE = "VIDEOSEQ_MAX_PIXELS"


def pixel_limit() -> int:
    """The cap on decoded pixels per frame: ``$VIDEOSEQ_MAX_PIXELS``, else ``DEFAULT_MAX_PIXELS``."""
    text = os.environ.get(MAX_PIXELS_VARIABLE, "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 64 * 64:
        raise UsageError(f"{MAX_PIXELS_VARIABLE}={text!r}: must be a whole number of pixels per frame, at least "
                         f"{64 * 64} (default {DEFAULT_MAX_PIXELS}, 4096 x 2160)")
    return int(text)


def capped_size(width: int, height: int, limit: int) -> tuple[int, int]:
    """``(width, height)`` shrunk, aspect kept and sides even, to at most ``limit`` pixels; as it is when within.

    ``capped_size(7680, 4320, 4096 * 2160)`` is ``(3964, 2230)``.
    """
    if width * height <= limit:
        return width, height
    scale = (limit / (width * height)) ** 0.5
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB frame at ``size`` (width, height): shrunk with area interpolation when it is larger."""
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
