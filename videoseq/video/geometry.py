"""The eval geometry of frames: the short-side resize and the square crops, with OpenCV alone.

``resize_short_side`` gives the pixels of albumentations' ``SmallestMaxSize`` (bilinear,
the same output size) but resizes frame by frame: a clip goes through ``cv2.resize`` as
``T`` three-channel images instead of one ``T * 3``-channel image, which OpenCV does an
order of magnitude faster. This module imports neither albumentations nor torch, so the
decoding workers (``reading``) that resize every frame they decode start in a fraction
of a second.

Worked example: a 240 x 320 frame, ``eval_resize(112)`` = 128 -> 128 x 171 (scale 128 / 240,
rounded as Python rounds), then the centre 112 x 112 at ``crop_offsets(128, 171, 112, 1)``
= ``[(8, 29)]``.
"""

from __future__ import annotations

import cv2
import numpy as np

from videoseq.errors import UsageError

EVAL_CROPS = (1, 3)


def check_crops(crops: int) -> None:
    if crops not in EVAL_CROPS:
        raise UsageError(f"spatial crops must be one of {list(EVAL_CROPS)}, got {crops}")


def eval_resize(size: int) -> int:
    """Short side before the centre crop (the usual 256 -> 224 ratio): 112 -> 128."""
    return int(round(size / 0.875))


def short_side_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` with the short side at ``short_side``, aspect kept (``SmallestMaxSize``'s rounding)."""
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_short_side(frames: np.ndarray, short_side: int, area: bool = False) -> np.ndarray:
    """uint8 ``(T, H, W, C)`` -> ``(T, h, w, C)``, short side ``short_side`` (the input itself if so).

    Bilinear (the eval presets: ``SmallestMaxSize``'s pixels), or with ``area`` OpenCV's area filter when
    shrinking (caches and motion inputs: no aliasing from large sources) and bilinear when enlarging.
    """
    height, width = short_side_shape(frames.shape[1], frames.shape[2], short_side)
    if (height, width) == frames.shape[1:3]:
        return frames
    shrinking = short_side < min(frames.shape[1:3])
    interpolation = cv2.INTER_AREA if area and shrinking else cv2.INTER_LINEAR
    out = np.empty((len(frames), height, width, *frames.shape[3:]), dtype=frames.dtype)
    for frame, target in zip(frames, out):
        target[...] = cv2.resize(frame, (width, height), interpolation=interpolation).reshape(target.shape)
    return out


def crop_offsets(height: int, width: int, size: int, crops: int) -> list[tuple[int, int]]:
    """``(top, left)`` of the ``crops`` square ``size`` crops of a ``height`` x ``width`` frame.

    One crop is the centre. Three crops sit at the start, centre and end of the long
    side (left/centre/right of a landscape frame, top/centre/bottom of a portrait one),
    centred on the short side: the usual 3-crop testing. Example: 128 x 171 frame,
    size 112 -> ``[(8, 0), (8, 29), (8, 59)]``.
    """
    check_crops(crops)
    top, left = (height - size) // 2, (width - size) // 2
    if crops == 1:
        return [(top, left)]
    if width >= height:
        return [(top, x) for x in (0, left, width - size)]
    return [(y, left) for y in (0, top, height - size)]


def eval_crop(frames: np.ndarray, size: int, crops: int = 1, crop: int = 0) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` -> ``(T, size, size, 3)``: the short side resized, then crop ``crop`` of ``crops``.

    One crop: the short side to ``eval_resize(size)`` and the centre; three: the short
    side to ``size`` and the start, centre or end of the long side.
    """
    check_crops(crops)
    resized = resize_short_side(frames, eval_resize(size) if crops == 1 else size)  # (T, h, w, 3)
    top, left = crop_offsets(resized.shape[1], resized.shape[2], size, crops)[crop]
    return np.ascontiguousarray(resized[:, top:top + size, left:left + size])
