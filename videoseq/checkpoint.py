"""Checkpoints that describe themselves, written atomically, read without unpickling code.

A checkpoint holds tensors and plain types only: the resolved config, class names,
normalisation, backbone/head names and the videoseq version travel with the
weights, so ``eval`` and ``predict`` need nothing but the file. It is loaded with
``torch.load(weights_only=True)``: anything that would need arbitrary unpickling is
refused with a message, never executed.

Writing goes to a hidden temporary name beside the target (``.last.pt.tmp-<pid>``),
is fsynced, then renamed over the target, so a crash or SIGKILL at any moment leaves
either the previous checkpoint or the new one, never a partial file under the real
name. A temporary file orphaned by a killed process is removed by
``outputs.remove_partial_outputs`` when training starts again in that folder. A payload
holding a NaN or infinite tensor is refused before anything is written.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videoseq import __version__
from videoseq.config import Config, config_from_dict, load_config
from videoseq.models import VideoClassifier
from videoseq.models.build import build_model_from_config
from videoseq.outputs import atomic_output

CHECKPOINT_FORMAT = "videoseq-checkpoint-1"
WHAT_RUNS = ("a .pt checkpoint written by videoseq train (predict also runs the .onnx and .torchscript.pt files "
             "of videoseq export)")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and what is wrong."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file, fsync, then rename: a crash never leaves a partial file.

    A payload with a non-finite tensor is refused (``CheckpointError`` naming the keys)
    and the checkpoint already at ``path`` stays as it was.
    """
    path = Path(path)
    bad = non_finite_keys(payload)
    if bad:
        raise CheckpointError(
            f"refusing to write {path}: non-finite values (NaN/inf) in {bad[:8]}; the previous checkpoint "
            "is kept. Lower train.lr, keep train.clip_grad, or set train.on_nonfinite: skip"
        )
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return path


def non_finite_keys(value: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the floating-point tensors in ``value`` that hold a NaN or an infinity."""
    if isinstance(value, torch.Tensor):
        finite = not value.is_floating_point() or bool(torch.isfinite(value).all())
        return [] if finite else [prefix or "<tensor>"]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return []
    return [k for key, item in items for k in non_finite_keys(item, f"{prefix}.{key}" if prefix else str(key))]


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip with the model's ``code/``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True`` and check it is a videoseq checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if is_torchscript(path):
        raise CheckpointError(f"{path} is a TorchScript export, not a checkpoint: videoseq predict runs it (and "
                              f".onnx exports); eval, export, features and train --resume need the .pt checkpoint "
                              f"written by videoseq train")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain types; refused without "
            f"unpickling them (only load checkpoints you trust with other tools): {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # truncated or not a torch file at all
        raise CheckpointError(f"checkpoint {path} cannot be read ({err}); expected {WHAT_RUNS}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a videoseq checkpoint (no format {CHECKPOINT_FORMAT!r}); expected "
                              f"{WHAT_RUNS}")
    return payload


def checkpoint_payload(
    model: VideoClassifier, config: Config, classes: list[str], *, vocab: list[str] | None = None, **state: Any
) -> dict[str, Any]:
    """Everything ``model_from_checkpoint`` needs, plus any training state given.

    A captioning model also stores its vocabulary (``vocab``: the word list, id order).
    """
    if config.model.captions and not vocab:
        raise CheckpointError(f"model.task={config.model.task} needs the vocabulary in the checkpoint (vocab=...)")
    return {
        "format": CHECKPOINT_FORMAT,
        "videoseq_version": __version__,
        "config": config.to_dict(),
        "classes": list(classes),
        "backbone": config.model.backbone,
        "head": config.model.head,
        "mean": list(model.backbone.mean),
        "std": list(model.backbone.std),
        "model": model.state_dict(),
        **({"vocab": list(vocab)} if config.model.captions else {}),
        **state,
    }


def model_from_checkpoint(payload: dict[str, Any], path: str | Path = "checkpoint") -> tuple[VideoClassifier, Config]:
    """Rebuild the model from a checkpoint alone (no config file, no weight download)."""
    config = config_from_dict(payload["config"])
    if config.model.captions and not payload.get("vocab"):
        raise CheckpointError(f"checkpoint {path} is a caption model (model.task={config.model.task}) "
                              "without a vocabulary")
    model = build_model_from_config(config, len(payload["classes"]), pretrained=False,
                                    vocab_size=len(payload.get("vocab") or []))
    load_weights(model, payload["model"], path)
    model.eval()
    return model, config


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a state dict, naming every missing, unexpected or mis-shaped key on failure."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}, shape mismatches {shapes[:8]}"
        )
    model.load_state_dict(state)


CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class ModelSource:
    """What a ``CONFIG_OR_CHECKPOINT`` argument names: a checkpoint (``payload``), or a YAML config (no ``payload``)."""

    path: str
    config: Config
    payload: dict[str, Any] | None = None

    def model(self, num_classes: int = 1, *, pretrained: bool | str | None = None) -> VideoClassifier:
        """The checkpoint's trained model, or the model the config describes, in eval mode.

        A config's backbone takes its ``model.pretrained`` weights (``pretrained``
        overrides them); its random layers are seeded by ``train.seed``, the same on every run.
        """
        if self.payload is not None:
            return model_from_checkpoint(self.payload, self.path)[0]
        torch.manual_seed(self.config.train.seed)
        return build_model_from_config(self.config, num_classes, pretrained=pretrained).eval()


def open_source(source: str | Path, overrides: list[str] | None = None) -> ModelSource:
    """A checkpoint (``.pt``) or a YAML config (``.yaml``, ``--set`` overrides): its config, its model on demand."""
    path = str(source)
    if Path(path).suffix.lower() in CONFIG_SUFFIXES:
        return ModelSource(path, load_config(path, overrides))
    if overrides:
        raise ValueError("--set applies to a YAML config, not to a checkpoint")
    payload = load_checkpoint(path)
    return ModelSource(path, config_from_dict(payload["config"]), payload)
