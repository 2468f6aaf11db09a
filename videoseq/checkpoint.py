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

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videoseq import __version__
from videoseq.config import Config, ConfigError, config_from_dict, load_config
from videoseq.errors import InputError, UsageError
from videoseq.models import VideoClassifier
from videoseq.models.backbones import read_weights_file
from videoseq.models.build import build_model_from_config
from videoseq.models.fusion import fuse_models
from videoseq.outputs import atomic_output

CHECKPOINT_FORMAT = "videoseq-checkpoint-1"
WHAT_RUNS = ("a .pt checkpoint written by videoseq train (predict also runs the .onnx and .torchscript.pt files "
             "of videoseq export)")


class CheckpointError(InputError, RuntimeError):
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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` and check it is a videoseq checkpoint (its parts: ``check_payload``)."""
    path = Path(path)
    if path.is_file() and is_torchscript(path):
        raise CheckpointError(f"{path} is a TorchScript export, not a checkpoint: videoseq predict runs it (and "
                              f".onnx exports); eval, export, features and train --resume need the .pt checkpoint "
                              f"written by videoseq train")
    payload = read_weights_file(path, "checkpoint", CheckpointError)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a videoseq checkpoint (no format {CHECKPOINT_FORMAT!r}); expected "
                              f"{WHAT_RUNS}")
    return payload


def check_payload(payload: Any, path: Path) -> None:
    """What a model is rebuilt from: a config, class names, normalisation and a state dict of tensors."""
    problems = [f"{key} ({what})" for key, ok, what in (
        ("config", isinstance(payload.get("config"), dict), "a mapping of config sections"),
        ("classes", _texts(payload.get("classes")) and len(set(payload["classes"])) == len(payload["classes"]),
         "distinct class names"),
        ("model", isinstance(payload.get("model"), dict)
         and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["model"].items()),
         "a state dict of tensors"),
        ("mean", _numbers(payload.get("mean")), "numbers"), ("std", _numbers(payload.get("std")), "numbers"),
        ("vocab", "vocab" not in payload or _texts(payload["vocab"]), "a list of words"),
    ) if not ok]
    if problems:
        raise CheckpointError(f"checkpoint {path} is incomplete or damaged: missing or wrong {', '.join(problems)}; "
                              "use a checkpoint written by videoseq train")


def _texts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _numbers(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


MAX_CLIP_PIXELS = 2**26  # views x frames x size^2 of one video's clips: 805 MB of float32 input at most


def checkpoint_config(payload: dict[str, Any], path: str | Path) -> Config:
    """The validated config of a checkpoint; a config out of range names the checkpoint (before any allocation).

    Beyond the config's own ranges, one video's clips (``data.test_views`` x ``data.frames`` x
    ``data.size``^2 pixels) must stay within ``MAX_CLIP_PIXELS``.
    """
    check_payload(payload, Path(path))
    try:
        config = config_from_dict(payload["config"])
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {path} holds a config videoseq refuses: {err}; "
                              "was it written by videoseq train?") from None
    d = config.data
    if not len(payload["mean"]) == len(payload["std"]) == d.input_channels():
        raise CheckpointError(f"checkpoint {path} normalises {len(payload['mean'])} / {len(payload['std'])} "
                              f"channels, but its data.modality={d.modality} takes {d.input_channels()} per frame; "
                              "use a checkpoint written by videoseq train")
    if d.test_views * d.frames * d.size**2 > MAX_CLIP_PIXELS:
        raise CheckpointError(f"checkpoint {path} asks for clips of {d.test_views} x {d.frames} frames of "
                              f"{d.size}x{d.size} pixels, more than the {MAX_CLIP_PIXELS:,} pixels videoseq decodes "
                              "for one video; refused before allocating them")
    return config


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
    """Rebuild the model from a checkpoint alone (no config file, no weight download).

    Checked before the model is allocated: the config (ranges, ``checkpoint_config``), that
    every weight is finite, and that the model the config describes has exactly the
    checkpoint's parameter shapes (built first on PyTorch's meta device, which holds shapes
    only): a config that asks for more than the file holds is refused, not allocated.
    """
    config = checkpoint_config(payload, path)
    if config.model.captions and not payload.get("vocab"):
        raise CheckpointError(f"checkpoint {path} is a caption model (model.task={config.model.task}) "
                              "without a vocabulary")
    bad = non_finite_keys(payload["model"])
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights in {bad[:4]}; it would predict "
                              "nothing meaningful: use an earlier checkpoint of the run (best.pt / last.pt)")
    classes, words = len(payload["classes"]), len(payload.get("vocab") or [])
    if "fusion" in payload:
        model = fused_model(payload)
    else:
        check_fits(shapes_of(config, classes, words), payload["model"], path)
        model = build_model_from_config(config, classes, pretrained=False, vocab_size=words)
    load_weights(model, payload["model"], path)
    model.eval()
    return model, config


def fused_model(payload: dict[str, Any]) -> VideoClassifier:
    """The untrained model of a fused checkpoint (``videoseq fuse``): its streams, fused with their weights."""
    configs = [config_from_dict(stream["config"]) for stream in payload["fusion"]["streams"]]
    streams = [build_model_from_config(c, len(payload["classes"]), pretrained=False) for c in configs]
    return fuse_models(streams, [c.data.input_channels() for c in configs], payload["fusion"]["weights"])


def shapes_of(config: Config, num_classes: int, vocab_size: int) -> dict[str, tuple[int, ...]] | None:
    """The state-dict shapes of the model ``config`` describes, without allocating it (meta device).

    None for the few torchvision builders that compute on tensors while building (RegNet);
    their model is then checked against the weights after it is built.
    """
    try:
        with torch.device("meta"):
            model = build_model_from_config(config, num_classes, pretrained=False, vocab_size=vocab_size)
    except NotImplementedError:
        return None
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_fits(shapes: dict[str, tuple[int, ...]] | None, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """The checkpoint's weights have exactly the keys and shapes of the model (``shapes``; None: not known)."""
    if shapes is None:
        return
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {shapes[k]}"
             for k in sorted(set(shapes) & set(state)) if tuple(state[k].shape) != shapes[k]]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model its config describes: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}, shape mismatches {wrong[:8]}"
        )


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a state dict, naming every missing, unexpected or mis-shaped key on failure."""
    check_fits({key: tuple(value.shape) for key, value in model.state_dict().items()}, state, path)
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
        raise UsageError("--set applies to a YAML config, not to a checkpoint")
    payload = load_checkpoint(path)
    return ModelSource(path, checkpoint_config(payload, path), payload)
