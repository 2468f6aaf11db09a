"""``videoseq fuse``: one checkpoint of two-stream late fusion, made from trained checkpoints.

TSN fuses its RGB and optical-flow streams 1 : 1.5::

    videoseq fuse runs/rgb/best.pt runs/flow/best.pt --weights 1 1.5 --out runs/fused.pt

The fused checkpoint is a checkpoint like any other (``eval``, ``predict``, ``serve``,
``export`` and the reports take it unchanged): its model is ``models.fusion``'s fused
:class:`VideoClassifier` and its config is the first stream's, with ``data.modality``
naming the streams' inputs side by side (``rgb+flow``) and the motion settings of the
motion stream. The streams must cut the same clips (frames, size, sampling, stride,
short-video policy) and know the same classes in the same order; each stream's own
config travels inside (``fusion.streams``), with the fusion weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoseq import __version__
from videoseq.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from videoseq.config import Config, DataConfig, config_from_dict
from videoseq.flow import modality_parts
from videoseq.models.fusion import check_weights, fuse_models

SAME_CLIPS = ("frames", "size", "sampling", "stride", "short_video", "fps")  # data keys the streams must share
MOTION_KEYS = ("flow_method", "flow_bound", "flow_stack", "flow_size")


def fused_data(streams: Sequence[DataConfig], paths: Sequence[str]) -> DataConfig:
    """The data config of the fused input: the first stream's, ``modality`` the streams' joined by ``+``."""
    for key in SAME_CLIPS:
        values = [getattr(d, key) for d in streams]
        if len(set(values)) != 1:
            raise CheckpointError(f"the streams cut different clips: data.{key} is {values} in {list(paths)}; "
                                  "train them with the same clip settings")
    modality = "+".join(d.modality for d in streams)
    try:
        modality_parts(modality)
    except ValueError as err:
        raise CheckpointError(f"cannot fuse {list(paths)}: {err} (fuse streams of different inputs, e.g. an RGB "
                              "model and a flow model)") from None
    motion = [d for d in streams if d.modality != "rgb"]
    for key in MOTION_KEYS if len(motion) > 1 else ():
        if len({getattr(d, key) for d in motion}) != 1:
            raise CheckpointError(f"the motion streams differ in data.{key}; train them with the same value")
    settings = {key: getattr(motion[0], key) for key in MOTION_KEYS} if motion else {}
    return dataclasses.replace(streams[0], modality=modality, **settings)


def fused_payload(payloads: Sequence[dict[str, Any]], weights: Sequence[float], paths: Sequence[str]) -> dict:
    """The checkpoint payload of the streams' models fused with ``weights`` (checked)."""
    check_weights(weights, len(payloads))
    configs = [config_from_dict(p["config"]) for p in payloads]
    if any(c.model.task != "classify" for c in configs) or any("fusion" in p for p in payloads):
        raise CheckpointError(f"fusion takes classification checkpoints (model.task=classify), not caption or "
                              f"fused ones: {list(paths)}")
    classes = [list(p["classes"]) for p in payloads]
    if any(c != classes[0] for c in classes):
        raise CheckpointError(f"the streams know different classes ({[len(c) for c in classes]} classes, first "
                              f"{[c[:3] for c in classes]}): fuse models trained on the same class list")
    config: Config = dataclasses.replace(configs[0], data=fused_data([c.data for c in configs], paths))
    models = [model_from_checkpoint(p, path)[0] for p, path in zip(payloads, paths)]
    model = fuse_models(models, [c.data.input_channels() for c in configs], weights)
    return {
        "format": CHECKPOINT_FORMAT,
        "videoseq_version": __version__,
        "config": config.to_dict(),
        "classes": classes[0],
        "backbone": "+".join(c.model.backbone for c in configs),
        "head": "+".join(c.model.head for c in configs),
        "mean": list(model.backbone.mean),
        "std": list(model.backbone.std),
        "model": model.state_dict(),
        "fusion": {"weights": [float(w) for w in weights],
                   "streams": [{"path": str(path), "config": p["config"]} for p, path in zip(payloads, paths)]},
    }


def fuse_checkpoints(paths: Sequence[str | Path], weights: Sequence[float], out: str | Path) -> Path:
    """Write the fused checkpoint of ``paths`` (an RGB model and a motion model, ...) to ``out``."""
    if len(paths) < 2:
        raise CheckpointError(f"fusion needs two or more checkpoints, got {len(paths)}")
    payloads = [load_checkpoint(path) for path in paths]
    return save_checkpoint(out, fused_payload(payloads, weights, [str(p) for p in paths]))
