"""Run what ``videoseq export`` writes: ONNX files on onnxruntime, TorchScript files on ``torch.jit``.

:func:`load_export` opens the clip file of an export and answers like a :class:`VideoClassifier`
(``model(clip)``, ``forward_frames``, ``forward_head``, ``step_frames``) with the config, classes
and normalisation the file carries; the frames and head parts are found beside it
(:func:`part_paths`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoseq.checkpoint import is_torchscript
from videoseq.config import Config, config_from_dict
from videoseq.errors import InputError, UsageError, one_line

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
METADATA_KEY = "videoseq"

def part_paths(out: Path, fmt: str) -> dict[str, Path]:
    """``OUT.onnx`` -> clip ``OUT.onnx``, frames ``OUT.frames.onnx``, head ``OUT.head.onnx``."""
    suffix = SUFFIXES[fmt]
    stem = out.name[: -len(suffix)] if out.name.endswith(suffix) else out.stem
    return {part: out.with_name(stem + ("" if part == "clip" else f".{part}") + suffix)
            for part in ("clip", "frames", "head")}


_SESSIONS: dict[str, Any] = {}


def onnx_session(path: Path) -> Any:
    """One onnxruntime CPU session per file (cached: loading a model takes a while)."""
    import onnxruntime as ort

    key = str(Path(path).resolve())
    if key not in _SESSIONS or _SESSIONS[key][0] != Path(path).stat().st_mtime_ns:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # as many threads as torch uses (set_num_threads / OMP_NUM_THREADS), so one knob sets both
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types: InvalidProtobuf, Fail, ...
            raise InputError(f"ONNX model {path} cannot be read by onnxruntime ({type(err).__name__}: "
                             f"{one_line(err, 200)}); write it again with videoseq export") from None
        _SESSIONS[key] = (Path(path).stat().st_mtime_ns, session)
    return _SESSIONS[key][1]


class ExportedModel:
    """An export that answers like a :class:`VideoClassifier` (CPU tensors in and out): ``model(clip)``,
    ``forward_frames`` and ``forward_head``; the last two need the ``--streaming`` parts beside the clip file."""

    fmt = ""

    def __init__(self, paths: dict[str, Path], mean: list[float], std: list[float]) -> None:
        self.paths, self.mean, self.std = paths, tuple(mean), tuple(std)

    def part_path(self, part: str) -> Path:
        path = self.paths[part]
        if not path.is_file():
            raise InputError(f"{path} is missing: streaming an export needs its frames and head parts; "
                             f"write them with videoseq export CHECKPOINT --format {self.fmt} --streaming")
        return path

    def _run(self, part: str, *x: torch.Tensor) -> list[torch.Tensor]:
        """Every output of one part on CPU float inputs."""
        raise NotImplementedError

    def cache_shapes(self) -> list[list[int]]:
        """Per-sample shapes of the frames part's shift cache (none without an online shift)."""
        raise NotImplementedError

    def step_frames(self, frames: torch.Tensor, cache: list[torch.Tensor] | None
                    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``VideoClassifier.step_frames``: features, and the online shift's cache when the frames part has one."""
        shapes = self.cache_shapes()
        if not shapes:
            return self.forward_frames(frames), None
        if cache is None:  # a stream's first frame: zeros in place of the previous frame's channels
            cache = [torch.zeros(frames.shape[0], *shape) for shape in shapes]
        features, *new = self._run("frames", frames, *cache)
        return features, new

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self._run("clip", clip)[0]

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return self._run("frames", frames)[0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._run("head", features)[0]

    def to(self, device: torch.device | str) -> ExportedModel:
        if torch.device(device).type != "cpu":
            raise UsageError(f"{self.fmt} exports run on the CPU here; use --device cpu (or the .pt checkpoint)")
        return self

    def eval(self) -> ExportedModel:
        return self


class OnnxModel(ExportedModel):
    """An ONNX export run by onnxruntime (CPUExecutionProvider)."""

    fmt = "onnx"

    def _run(self, part: str, *x: torch.Tensor) -> list[torch.Tensor]:
        session = onnx_session(self.part_path(part))
        feed = {i.name: t.detach().cpu().numpy().astype(np.float32) for i, t in zip(session.get_inputs(), x)}
        return [torch.from_numpy(out) for out in session.run(None, feed)]

    def cache_shapes(self) -> list[list[int]]:
        return [list(i.shape[1:]) for i in onnx_session(self.part_path("frames")).get_inputs()[1:]]


class TorchScriptModel(ExportedModel):
    """A TorchScript export run by ``torch.jit`` on the CPU; each part is loaded when first used."""

    fmt = "torchscript"

    def __init__(self, paths: dict[str, Path], mean: list[float], std: list[float]) -> None:
        super().__init__(paths, mean, std)
        self.modules: dict[str, torch.jit.ScriptModule] = {}
        self.meta: dict[str, str] = {}  # each part's videoseq.json

    @torch.no_grad()
    def _run(self, part: str, *x: torch.Tensor) -> list[torch.Tensor]:
        out = self._module(part)(*(t.detach().cpu().float() for t in x))
        return list(out) if isinstance(out, tuple) else [out]

    def _module(self, part: str) -> torch.jit.ScriptModule:
        if part not in self.modules:
            self.modules[part], self.meta[part] = read_torchscript(self.part_path(part))
        return self.modules[part]

    def cache_shapes(self) -> list[list[int]]:
        self._module("frames")
        return json.loads(self.meta["frames"] or "{}").get("cache", [])


def read_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, str]:
    """A TorchScript file and its ``videoseq.json`` metadata text ("" when it has none)."""
    extra = {"videoseq.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation note
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as err:  # damaged or not TorchScript at all
            raise InputError(f"{path} cannot be read as a TorchScript export ({one_line(err, 200)}); write it "
                             "again with videoseq export --format torchscript") from None
    text = extra["videoseq.json"]
    return module.eval(), text.decode() if isinstance(text, bytes) else text


def export_format(path: str | Path) -> str | None:
    """``onnx`` or ``torchscript`` for a file ``videoseq export`` writes, else None (a checkpoint, or unknown)."""
    if Path(path).suffix.lower() == ".onnx":
        return "onnx"
    if str(path).endswith(SUFFIXES["torchscript"]) or is_torchscript(path):
        return "torchscript"
    return None


def load_export(path: str | Path) -> tuple[ExportedModel, Config, list[str]]:
    """The clip file of an export (``.onnx`` or ``.torchscript.pt``), with the config and classes it carries."""
    path = Path(path)
    fmt = export_format(path)
    if not path.is_file():
        raise InputError(f"exported model {path} does not exist")
    if fmt == "onnx":
        meta_text = onnx_session(path).get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    else:
        meta_text = read_torchscript(path)[1]
    if not meta_text:
        raise InputError(f"{path} has no {METADATA_KEY!r} metadata, so its classes and preprocessing are unknown; "
                         f"export the checkpoint with videoseq export")
    try:
        meta = json.loads(meta_text)
        config = config_from_dict(meta["config"])
        classes, mean, std = list(meta["classes"]), meta["mean"], meta["std"]
    except (ValueError, KeyError, TypeError) as err:  # ConfigError is a ValueError
        raise InputError(f"{path}: its {METADATA_KEY!r} metadata is damaged ({one_line(err, 200)}); "
                         "write it again with videoseq export") from None
    if meta.get("part") != "clip":
        raise UsageError(f"{path} is the {meta['part']!r} part of an export; "
                         f"pass the clip file (without .{meta['part']})")
    kind = OnnxModel if fmt == "onnx" else TorchScriptModel
    return kind({**part_paths(path, fmt), "clip": path}, mean, std), config, classes
