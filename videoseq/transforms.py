"""Clip transforms: the training preset (albumentations, the same random parameters on
every frame of a clip: the whole clip goes through ``images=``), the eval preset (its
geometry in ``video.geometry``), and normalisation.

Presets return uint8 ``(T, size, size, 3)`` clips; normalisation to the backbone's
mean/std happens on the model's device (``normalize_clip``), so workers ship 4x
fewer bytes and the GPU does the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch

from videoseq.errors import UsageError
from videoseq.flow import negate_flow_x, rescale_flow
from videoseq.video.geometry import check_crops, eval_crop, eval_resize, resize_short_side


def flip_swap_ids(flip_swap: dict[str, str], classes: Sequence[str]) -> tuple[dict[int, int], list[str]]:
    """``data.flip_swap`` as class ids, and the pairs ignored because neither of their classes exists.

    A pair whose two classes are both in ``classes`` is kept; a pair with neither (the
    gesture maps on a dataset of other classes) is ignored; a pair with exactly one is
    an error: a flipped clip of that class would need a label the dataset does not have.
    """
    index = {name: i for i, name in enumerate(classes)}
    kept, ignored = {}, []
    for a, b in flip_swap.items():
        if a in index and b in index:
            kept[index[a]] = index[b]
        elif a in index or b in index:
            have, lack = (a, b) if a in index else (b, a)
            raise UsageError(f"data.flip_swap pairs {a} with {b}, but only {have} is a class here: a flipped {have} "
                             f"clip would need the label {lack}. Add the class {lack}, drop the pair "
                             f"(--set data.flip_swap={{}}), or stop flipping (--set data.flip=false)")
        else:
            ignored.append(f"{a}: {b}")
    return kept, ignored


class ClipTrainPreset:
    """Random resized crop, horizontal flip (with an optional label swap) and colour jitter.

    ``flip_swap`` maps a label to its mirror image ("swipe left" -> "swipe right");
    labels not in the map keep their label when flipped.
    """

    def __init__(
        self,
        *,
        size: int,
        crop_scale: Sequence[float] = (0.5, 1.0),
        color_jitter: float = 0.2,
        flip: bool = True,
        flip_swap: dict[int, int] | None = None,
    ) -> None:
        steps: list = [A.RandomResizedCrop(size=(size, size), scale=tuple(crop_scale), ratio=(3 / 4, 4 / 3))]
        if flip:
            steps.append(A.HorizontalFlip(p=0.5))
        if color_jitter > 0:
            j = color_jitter
            steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 4, 0.5), p=0.8))
        self.compose = A.Compose(steps, save_applied_params=True)
        self.flip_swap = dict(flip_swap or {})

    def apply(self, clip: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, dict]]:
        """The transformed clip and the parameters of each step applied (``{"HorizontalFlip": {...}, ...}``)."""
        self.compose.set_random_seed(seed)
        out = self.compose(images=clip)
        return np.ascontiguousarray(out["images"]), dict(out["applied_transforms"])

    def __call__(self, clip: np.ndarray, label: int, seed: int) -> tuple[np.ndarray, int]:
        """Transform ``clip`` (T, H, W, C) uint8; ``seed`` makes the draw reproducible."""
        images, applied = self.apply(clip, seed)
        if "HorizontalFlip" in applied:
            label = self.flip_swap.get(label, label)
        return images, label


class ClipEvalPreset:
    """Resize the short side, then take the centre crop or one of three crops (``video.geometry.eval_crop``).

    With ``crops=1`` the short side becomes ``size / 0.875`` and the centre is kept.
    With ``crops=3`` the short side becomes ``size``, so the three crops along the
    long side cover the whole frame; ``crop`` (0, 1, 2) picks one (see ``crop_offsets``).
    """

    def __init__(self, *, size: int, crops: int = 1) -> None:
        check_crops(crops)
        self.size, self.crops = size, crops
        self.short_side = eval_resize(size) if crops == 1 else size

    def shrink(self, frames: np.ndarray) -> np.ndarray:
        """The preset's resize alone: uint8 ``(T, H, W, 3)`` -> ``(T, h, w, 3)``, short side ``short_side``."""
        return resize_short_side(frames, self.short_side)

    def __call__(self, clip: np.ndarray, label: int, seed: int = 0, crop: int = 0) -> tuple[np.ndarray, int]:
        """Crop ``clip`` (T, H, W, 3) uint8; ``seed`` is unused (the preset is deterministic)."""
        return eval_crop(clip, self.size, self.crops, crop), label


class MotionTrainPreset:
    """The train preset's geometry on motion images ``(T, H, W, C)``: random resized crop and flip, no colour jitter.

    With ``flow_bound`` (flow images) the vectors follow the geometry: the crop's resize
    scales x and y by the size over the crop's width and height, and a flip negates x
    (``flow.flip_flow``); labels swap through ``flip_swap`` as for RGB. Without it (RGB
    differences) the images are cropped and mirrored like frames.
    """

    def __init__(self, *, size: int, crop_scale: Sequence[float] = (0.5, 1.0), flip: bool = True,
                 flip_swap: dict[int, int] | None = None, flow_bound: float | None = None,
                 flow_channels: slice = slice(None)) -> None:
        self.geometry = ClipTrainPreset(size=size, crop_scale=crop_scale, color_jitter=0, flip=flip,
                                        flip_swap=flip_swap)
        self.size, self.flow_bound, self.flow_channels = size, flow_bound, flow_channels

    def __call__(self, clip: np.ndarray, label: int, seed: int) -> tuple[np.ndarray, int]:
        images, applied = self.geometry.apply(clip, seed)
        flipped = "HorizontalFlip" in applied
        if self.flow_bound is not None:
            x0, y0, x1, y1 = applied["RandomResizedCrop"]["crop_coords"]
            images = own_copy(images, clip)
            flow = rescale_flow(images[..., self.flow_channels], self.size / (x1 - x0), self.size / (y1 - y0),
                                self.flow_bound)
            images[..., self.flow_channels] = negate_flow_x(flow) if flipped else flow
        return images, self.geometry.flip_swap.get(label, label) if flipped else label


class MotionEvalPreset:
    """The eval preset on motion images: resize the short side (flow vectors scaled with it) and crop."""

    def __init__(self, *, size: int, crops: int = 1, flow_bound: float | None = None,
                 flow_channels: slice = slice(None)) -> None:
        self.geometry = ClipEvalPreset(size=size, crops=crops)
        self.crops, self.flow_bound, self.flow_channels = crops, flow_bound, flow_channels

    def __call__(self, clip: np.ndarray, label: int, seed: int = 0, crop: int = 0) -> tuple[np.ndarray, int]:
        images, label = self.geometry(clip, label, seed, crop)
        if self.flow_bound is not None:
            scale = self.geometry.short_side / min(clip.shape[1:3])
            images = own_copy(images, clip)
            images[..., self.flow_channels] = rescale_flow(images[..., self.flow_channels], scale, scale,
                                                           self.flow_bound)
        return images, label


def own_copy(images: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``images``, copied if it shares memory with ``source`` (so writing into it leaves the caller's clip alone)."""
    return images.copy() if np.shares_memory(images, source) else images


def clip_to_tensor(clip: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, C) -> uint8 (T, C, H, W)."""
    return torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous()


def normalize_clip(
    clips: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float, scaled to [0, 1] and normalised per channel (C = len(mean)).

    ``(x / 255 - mean) / std``, worked in place on one new tensor (the same bits as three
    new ones, in 40% of the time); ``clips`` is left as it is.
    """
    mean_t = torch.tensor(mean, device=clips.device, dtype=dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, device=clips.device, dtype=dtype).view(-1, 1, 1)
    return clips.to(dtype, copy=True).div_(255.0).sub_(mean_t).div_(std_t)
