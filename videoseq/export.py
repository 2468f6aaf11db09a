"""Export a checkpoint to ONNX or TorchScript, check it against PyTorch, and run ONNX exports.

Three parts can be written, each with a dynamic batch axis:

- ``clip``: ``(B, T, 3, S, S)`` normalised frames -> logits ``(B, C)`` (always);
- ``frames``: ``(B, 3, S, S)`` -> per-frame features ``(B, D)`` or ``(B, D, h, w)``;
- ``head``: the feature buffer ``(B, T, D[, h, w])`` -> logits ``(B, C)``.

``frames`` + ``head`` (``--streaming``) are what a stream needs: the backbone once
per new frame, the head over the buffer. Next to ``OUT.onnx`` they are
``OUT.frames.onnx`` and ``OUT.head.onnx``. Every file carries the resolved config,
class names and normalisation (ONNX metadata ``videoseq``, a TorchScript extra
file ``videoseq.json``), so ``videoseq predict OUT.onnx ...`` needs nothing else.
Each export is run on a random batch of another size than the one traced (which
also proves the batch axis is dynamic) and compared with PyTorch.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from videoseq.checkpoint import is_torchscript, load_checkpoint, model_from_checkpoint
from videoseq.config import Config, config_from_dict
from videoseq.errors import InputError, UsageError, one_line
from videoseq.models import VideoClassifier
from videoseq.outputs import atomic_output, check_output
from videoseq.progress import progress_bar

EXPORT_FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
METADATA_KEY = "videoseq"
TOLERANCE = 1e-4
ONNX_OPSET = 17


class FramesPart(nn.Module):
    """The backbone on independent frames: ``(B, 3, S, S)`` -> ``(B, D)`` or ``(B, D, h, w)``.

    Holds the backbone alone, so the exported file carries no head weights.
    """

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.backbone = model.backbone

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_frames(frames)


class HeadPart(nn.Module):
    """The temporal head over a feature buffer: ``(B, T, D[, h, w])`` -> ``(B, C)``."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@dataclass(frozen=True)
class ExportCheck:
    part: str  # clip | frames | head
    path: Path
    max_abs_diff: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= TOLERANCE

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.part:6s} {self.path}: max abs diff vs PyTorch {self.max_abs_diff:.2e} "
                f"(<= {TOLERANCE:g}) {verdict}")


def part_paths(out: Path, fmt: str) -> dict[str, Path]:
    """``OUT.onnx`` -> clip ``OUT.onnx``, frames ``OUT.frames.onnx``, head ``OUT.head.onnx``."""
    suffix = SUFFIXES[fmt]
    stem = out.name[: -len(suffix)] if out.name.endswith(suffix) else out.stem
    return {part: out.with_name(stem + ("" if part == "clip" else f".{part}") + suffix)
            for part in ("clip", "frames", "head")}


def example_inputs(model: VideoClassifier, config: Config, batch: int) -> dict[str, torch.Tensor]:
    """Random inputs of every part for a batch of ``batch``."""
    size, frames = config.data.size, config.data.frames
    clip = torch.randn(batch, frames, 3, size, size)  # (B, T, 3, S, S)
    with torch.no_grad():
        one = model.forward_frames(clip[:, 0])  # (B, D) or (B, D, h, w)
    return {"clip": clip, "frames": clip[:, 0].contiguous(), "head": torch.randn(batch, frames, *one.shape[1:])}


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, *, fmt: str = "onnx",
                      streaming: bool = False, overwrite: bool = False) -> list[ExportCheck]:
    """Write the clip model (and with ``streaming`` the frames + head parts); check each one.

    The files are checked first (``outputs.check_output``: existing ones need ``overwrite``,
    the checkpoint itself is refused) and each is written whole under its name, or not at all.
    """
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {list(EXPORT_FORMATS)}")
    out = Path(out) if out else Path(checkpoint).with_suffix(SUFFIXES[fmt])
    paths = part_paths(out, fmt)
    for part in ("clip", "frames", "head") if streaming else ("clip",):
        check_output(paths[part], flag="--out", overwrite=overwrite, inputs=[checkpoint])
    payload = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(payload, checkpoint)
    model = model.cpu().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    # eval() on the wrappers too: the exporter restores each module's own mode afterwards.
    modules = {"clip": model, "frames": FramesPart(model).eval(), "head": HeadPart(model).eval()}
    torch.manual_seed(0)
    traced, checked = example_inputs(model, config, batch=2), example_inputs(model, config, batch=3)
    meta = {part: metadata(config, payload, model, part) for part in modules}
    kept = ("clip", "frames", "head") if streaming else ("clip",)
    written = ("frames", "head", "clip") if fmt == "onnx" else kept
    bar = progress_bar(total=len(written) + len(kept), desc=f"export {fmt}", unit="step")
    with tempfile.TemporaryDirectory() as tmp, bar:
        if fmt == "onnx":
            parts = paths if streaming else part_paths(Path(tmp) / out.name, fmt)
            for part in ("frames", "head"):
                write_onnx(modules[part], traced[part], parts[part], meta[part])
                bar.update(1)
            write_onnx_clip(parts["frames"], parts["head"], traced, paths["clip"], meta["clip"])
            bar.update(1)
        else:
            for part in kept:
                write_torchscript(modules[part], traced[part], paths[part], meta[part])
                bar.update(1)
        checks = []
        for part in kept:  # each file run on another batch size than traced, against PyTorch
            checks.append(ExportCheck(part, paths[part], compare(modules[part], paths[part], fmt, checked[part])))
            bar.update(1)
    return checks


def metadata(config: Config, payload: dict[str, Any], model: VideoClassifier, part: str) -> str:
    return json.dumps({"part": part, "config": config.to_dict(), "classes": list(payload["classes"]),
                       "mean": list(model.backbone.mean), "std": list(model.backbone.std)})


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path, meta: str) -> None:
    """TorchScript-based ONNX export (opset 17), dynamic batch, metadata stored in the file."""
    import onnx

    name_in = "features" if isinstance(module, HeadPart) else "frames"
    name_out = "features" if isinstance(module, FramesPart) else "logits"
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notes; the numeric check decides
        torch.onnx.export(module, (example,), str(tmp), input_names=[name_in], output_names=[name_out],
                          dynamic_axes={name_in: {0: "batch"}, name_out: {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)
        proto = onnx.load(str(tmp))
        set_metadata(proto, meta)
        onnx.save(proto, str(tmp))


def set_metadata(proto: Any, meta: str) -> None:
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=meta)


def write_onnx_clip(frames_path: Path, head_path: Path, examples: dict[str, torch.Tensor], path: Path,
                    meta: str) -> None:
    """The clip model as ONNX: fold (B, T) -> frames part -> unfold -> head part, joined as graphs.

    Exporting the whole ``VideoClassifier`` in one trace bakes the traced batch into the
    recurrent heads' zero state (the exporter reads the intermediate feature shape as
    static), so the clip graph is assembled from the two parts, which export cleanly.
    """
    import onnx
    from onnx import compose

    frames, head = onnx.load(str(frames_path)), onnx.load(str(head_path))
    for part in (frames, head):
        del part.metadata_props[:]  # each part's own; the clip gets its own below
    clip_shape, head_shape = list(examples["clip"].shape[1:]), list(examples["head"].shape[1:])
    fold = reshape_model("frames", "folded", ["batch", *clip_shape], ["frames_batch", *clip_shape[1:]], frames)
    unfold = reshape_model("features", "unfolded", ["frames_batch", *head_shape[1:]], ["batch", *head_shape], frames)
    model = compose.merge_models(fold, frames, io_map=[("folded", "frames")], prefix1="fold/", prefix2="frames/")
    model = compose.merge_models(model, unfold, io_map=[("frames/features", "features")], prefix2="unfold/")
    model = compose.merge_models(model, head, io_map=[("unfold/unfolded", "features")], prefix2="head/")
    rename_io(model, {"fold/frames": "frames", "head/logits": "logits"})
    set_metadata(model, meta)
    onnx.checker.check_model(model)
    with atomic_output(path) as tmp:
        onnx.save(model, str(tmp))


def reshape_model(name_in: str, name_out: str, in_shape: list, out_shape: list, like: Any) -> Any:
    """A one-node ONNX model reshaping ``name_in`` to ``out_shape``; its first (named) axis is the batch."""
    from onnx import TensorProto, helper, numpy_helper

    target = [-1, *out_shape[1:]]
    shape = numpy_helper.from_array(np.array(target, dtype=np.int64), name=f"{name_out}_shape")
    node = helper.make_node("Reshape", [name_in, shape.name], [name_out])
    graph = helper.make_graph(
        [node], f"reshape_{name_out}", [helper.make_tensor_value_info(name_in, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(name_out, TensorProto.FLOAT, out_shape)], initializer=[shape])
    return helper.make_model(graph, opset_imports=like.opset_import, ir_version=like.ir_version)


def rename_io(model: Any, names: dict[str, str]) -> None:
    """Rename graph inputs/outputs (and every node use of them)."""
    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        if value.name in names:
            value.name = names[value.name]
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]


def write_torchscript(module: nn.Module, example: torch.Tensor, path: Path, meta: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(module, (example,), check_trace=False)
        with atomic_output(path) as tmp:
            torch.jit.save(scripted, str(tmp), _extra_files={"videoseq.json": meta})


@torch.no_grad()
def compare(module: nn.Module, path: Path, fmt: str, example: torch.Tensor) -> float:
    """Max absolute difference between PyTorch and the exported file on ``example``."""
    expected = module(example).numpy()
    if fmt == "onnx":
        session = onnx_session(path)
        got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    else:
        got = read_torchscript(path)[0](example).numpy()
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got - expected)))


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

    def _run(self, part: str, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self._run("clip", clip)

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return self._run("frames", frames)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._run("head", features)

    def to(self, device: torch.device | str) -> ExportedModel:
        if torch.device(device).type != "cpu":
            raise UsageError(f"{self.fmt} exports run on the CPU here; use --device cpu (or the .pt checkpoint)")
        return self

    def eval(self) -> ExportedModel:
        return self


class OnnxModel(ExportedModel):
    """An ONNX export run by onnxruntime (CPUExecutionProvider)."""

    fmt = "onnx"

    def _run(self, part: str, x: torch.Tensor) -> torch.Tensor:
        session = onnx_session(self.part_path(part))
        out = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)


class TorchScriptModel(ExportedModel):
    """A TorchScript export run by ``torch.jit`` on the CPU; each part is loaded when first used."""

    fmt = "torchscript"

    def __init__(self, paths: dict[str, Path], mean: list[float], std: list[float]) -> None:
        super().__init__(paths, mean, std)
        self.modules: dict[str, torch.jit.ScriptModule] = {}

    @torch.no_grad()
    def _run(self, part: str, x: torch.Tensor) -> torch.Tensor:
        if part not in self.modules:
            self.modules[part] = read_torchscript(self.part_path(part))[0]
        return self.modules[part](x.detach().cpu().float())


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


def export_command(checkpoint: str, out: str | None, fmt: str, streaming: bool, overwrite: bool = False) -> int:
    """``videoseq export``: write, check and print every part; exit 1 when a check fails."""
    results = export_checkpoint(checkpoint, out, fmt=fmt, streaming=streaming, overwrite=overwrite)
    for result in results:
        print(result.line())
    return 0 if all(r.ok for r in results) else 1
