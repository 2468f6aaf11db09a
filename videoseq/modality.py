"""What ``data.modality`` means for the data side: the motion converter and the train / eval presets.

``rgb`` clips are decoded frames through the RGB presets. ``flow`` and ``rgbdiff``
clips are computed in the DataLoader worker from the decoded frames
(``flow.MotionInput``: one extra frame per stacked field before the first kept frame,
resized to ``data.flow_size``), then cropped and flipped by the motion presets
(``transforms.MotionTrainPreset`` / ``MotionEvalPreset``), which keep flow vectors
right under the geometry.
"""

from __future__ import annotations

from videoseq.config import DataConfig
from videoseq.flow import MotionInput, flow_channels
from videoseq.transforms import (
    ClipEvalPreset,
    ClipTrainPreset,
    MotionEvalPreset,
    MotionTrainPreset,
    eval_resize,
)


def motion_input(d: DataConfig) -> MotionInput | None:
    """The converter from decoded frames to flow / RGB-difference images (None for RGB)."""
    if d.modality == "rgb":
        return None
    return MotionInput(d.modality, step=d.stride, stack=d.flow_stack, short_side=d.flow_size or eval_resize(d.size),
                       bound=d.flow_bound, method=d.flow_method)


def _flow(d: DataConfig) -> dict:
    """The flow settings of the motion presets: the bound and where the flow channels are (none: no flow)."""
    where = flow_channels(d.modality, d.flow_stack)
    return {} if where is None else {"flow_bound": d.flow_bound, "flow_channels": where}


def train_preset(d: DataConfig, flip_swap: dict[int, int]) -> ClipTrainPreset | MotionTrainPreset:
    """The training transform of the modality (``flip_swap``: class id -> its mirror's id)."""
    if d.modality == "rgb":
        return ClipTrainPreset(size=d.size, crop_scale=d.crop_scale, color_jitter=d.color_jitter, flip=d.flip,
                               flip_swap=flip_swap)
    return MotionTrainPreset(size=d.size, crop_scale=d.crop_scale, flip=d.flip, flip_swap=flip_swap,
                             **_flow(d))


def eval_preset(d: DataConfig, crops: int = 1) -> ClipEvalPreset | MotionEvalPreset:
    """The evaluation transform of the modality (``crops``: 1 centre crop, or 3 along the long side)."""
    if d.modality == "rgb":
        return ClipEvalPreset(size=d.size, crops=crops)
    return MotionEvalPreset(size=d.size, crops=crops, **_flow(d))
