"""Export a checkpoint to ONNX or TorchScript and check each file against PyTorch (``exported`` runs them).

Three parts can be written, each with a dynamic batch axis:

- ``clip``: ``(B, T, K, S, S)`` normalised frames -> logits ``(B, C)`` (always);
- ``frames``: ``(B, K, S, S)`` -> per-frame features ``(B, D)`` or ``(B, D, h, w)``;
- ``head``: the feature buffer ``(B, T, D[, h, w])`` -> logits ``(B, C)``.

``frames`` + ``head`` (``--streaming``) are what a stream needs: the backbone once per new frame,
the head over the buffer. Next to ``OUT.onnx`` they are ``OUT.frames.onnx`` and ``OUT.head.onnx``.
``K`` is the input's channels: 3 for RGB, those of the motion images otherwise, and for a fused
two-stream model (``videoseq fuse``) the streams' channels side by side: one graph runs every
stream and their fusion. Every file carries the resolved config, class names and normalisation
(ONNX metadata ``videoseq``, a TorchScript extra file ``videoseq.json``), so ``videoseq predict
OUT.onnx ...`` needs nothing else. With an online temporal shift (``model.temporal_shift: online``)
the frames part also takes the previous frame's shifted channels at every shift (``cache_0, ...``)
and returns the new ones (``next_cache_0, ...``), so an ONNX stream keeps the cache too; the clip
part runs the shift over the whole clip. A bidirectional shift exports its clip part only. Each
export is run on a random batch of another size than the one traced (which also proves the batch
axis is dynamic) and compared with PyTorch.
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

from videoseq.checkpoint import load_checkpoint, model_from_checkpoint
from videoseq.config import Config
from videoseq.errors import UsageError
from videoseq.exported import METADATA_KEY, SUFFIXES, onnx_session, part_paths, read_torchscript
from videoseq.models import VideoClassifier
from videoseq.models.motion import shift_modules, step_frames
from videoseq.outputs import atomic_output, check_output
from videoseq.progress import progress_bar

EXPORT_FORMATS = ("onnx", "torchscript")
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


class StepFramesPart(nn.Module):
    """One frame through an online-shift backbone: ``(B, K, S, S)`` and the previous frame's shifted channels
    at every shift ``(B, fold, h, w)`` -> features and the new channels (``models.motion.step_frames``)."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.backbone = model.backbone

    def forward(self, frames: torch.Tensor, *cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, new = step_frames(self.backbone, frames, list(cache))
        return (features, *new)


class ClipFeaturesPart(nn.Module):
    """The backbone over whole clips, ``(B, T, K, S, S)`` -> ``(B, T, D[, h, w])``: a temporal shift sees the clip."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.backbone = model.backbone

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.backbone(clip)


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


def example_inputs(model: VideoClassifier, config: Config, batch: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Random inputs of every part for a batch of ``batch`` (the frames part: the frame, then any shift cache)."""
    size, frames = config.data.size, config.data.frames
    clip = torch.randn(batch, frames, config.data.input_channels(), size, size)  # (B, T, K, S, S)
    online = {s.mode for s in shift_modules(model.backbone)} == {"online"}
    with torch.no_grad():
        one = model.forward_features(clip)[:, 0]  # (B, D) or (B, D, h, w)
        cache = model.step_frames(clip[:, 0], None)[1] if online else []  # [(B, fold, h, w), ...]
    cache = [torch.randn_like(c) for c in cache]
    return {"clip": (clip,), "frames": (clip[:, 0].contiguous(), *cache),
            "head": (torch.randn(batch, frames, *one.shape[1:]),)}


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, *, fmt: str = "onnx",
                      streaming: bool = False, overwrite: bool = False) -> list[ExportCheck]:
    """Write the clip model (and with ``streaming`` the frames + head parts); check each one.

    The files are checked first (``outputs.check_output``: existing ones need ``overwrite``,
    the checkpoint itself is refused) and each is written whole under its name, or not at all.
    """
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {list(EXPORT_FORMATS)}")
    out = Path(out) if out else Path(checkpoint).with_suffix(SUFFIXES[fmt])
    paths, kept = part_paths(out, fmt), ("clip", "frames", "head") if streaming else ("clip",)
    for part in kept:
        check_output(paths[part], flag="--out", overwrite=overwrite, inputs=[checkpoint])
    payload = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(payload, checkpoint)
    model = model.cpu().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    modes = {s.mode for s in shift_modules(model.backbone)}
    if streaming and "bidirectional" in modes:
        raise UsageError(f"{checkpoint}: --streaming with a bidirectional temporal shift: each frame reads the next "
                         "frame, so the model cannot run frame by frame; export without --streaming, or train with "
                         "model.temporal_shift=online")
    # eval() on the wrappers too: the exporter restores each module's own mode afterwards.
    frames_part = StepFramesPart(model) if modes else FramesPart(model)
    modules = {"clip": model, "frames": frames_part.eval(), "head": HeadPart(model).eval()}
    torch.manual_seed(0)
    traced, checked = example_inputs(model, config, batch=2), example_inputs(model, config, batch=3)
    cache = [list(c.shape[1:]) for c in traced["frames"][1:]]  # (fold, h, w) per online shift
    meta = {part: metadata(config, payload, model, part, cache) for part in modules}
    onnx_parts = ("frames", "head") if streaming or not modes else ("head",)
    writes = len(onnx_parts) + 1 if fmt == "onnx" else len(kept)
    with tempfile.TemporaryDirectory() as tmp, progress_bar(total=writes + len(kept), desc=f"export {fmt}",
                                                            unit="step") as bar:
        if fmt == "onnx":
            parts = paths if streaming else part_paths(Path(tmp) / out.name, fmt)
            for part in onnx_parts:
                write_onnx(modules[part], traced[part], parts[part], meta[part])
                bar.update(1)
            write_clip_onnx(model, parts, paths["clip"], traced, meta["clip"], Path(tmp), shifted=bool(modes))
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


def write_clip_onnx(model: VideoClassifier, parts: dict[str, Path], path: Path,
                    traced: dict[str, tuple[torch.Tensor, ...]], meta: str, tmp: Path, shifted: bool) -> None:
    """The clip file from the parts; with a temporal shift, the backbone over whole clips then the head."""
    if not shifted:
        return write_onnx_clip(parts["frames"], parts["head"], traced, path, meta)
    features = tmp / "features.onnx"  # the shift needs the clip
    write_onnx(ClipFeaturesPart(model).eval(), traced["clip"], features, meta)
    write_onnx_clip(features, parts["head"], traced, path, meta, fold=False)


def metadata(config: Config, payload: dict[str, Any], model: VideoClassifier, part: str,
             cache: list[list[int]]) -> str:
    """What a file carries: its part, the config, classes, normalisation and the shift cache's shapes."""
    return json.dumps({"part": part, "config": config.to_dict(), "classes": list(payload["classes"]),
                       "mean": list(model.backbone.mean), "std": list(model.backbone.std), "cache": cache})


def write_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, meta: str) -> None:
    """TorchScript-based ONNX export (opset 17), dynamic batch, metadata stored in the file."""
    import onnx

    name_in = "features" if isinstance(module, HeadPart) else "frames"
    name_out = "logits" if isinstance(module, HeadPart) else "features"
    caches = range(len(example) - 1)  # the shift cache of StepFramesPart
    names_in = [name_in, *(f"cache_{i}" for i in caches)]
    names_out = [name_out, *(f"next_cache_{i}" for i in caches)]
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notes; the numeric check decides
        torch.onnx.export(module, example, str(tmp), input_names=names_in, output_names=names_out,
                          dynamic_axes={name: {0: "batch"} for name in names_in + names_out},
                          opset_version=ONNX_OPSET, dynamo=False)
        proto = onnx.load(str(tmp))
        set_metadata(proto, meta)
        onnx.save(proto, str(tmp))


def set_metadata(proto: Any, meta: str) -> None:
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=meta)


def write_onnx_clip(frames_path: Path, head_path: Path, examples: dict[str, tuple[torch.Tensor, ...]], path: Path,
                    meta: str, fold: bool = True) -> None:
    """The clip model as ONNX: fold (B, T) -> frames part -> unfold -> head part, joined as graphs.

    Exporting the whole ``VideoClassifier`` in one trace bakes the traced batch into the
    recurrent heads' zero state (the exporter reads the intermediate feature shape as
    static), so the clip graph is assembled from the two parts, which export cleanly.
    ``fold=False``: ``frames_path`` already maps whole clips to their features (``ClipFeaturesPart``).
    """
    import onnx
    from onnx import compose

    frames, head = onnx.load(str(frames_path)), onnx.load(str(head_path))
    for part in (frames, head):
        del part.metadata_props[:]  # each part's own; the clip gets its own below
    if not fold:
        model = compose.merge_models(frames, head, io_map=[("features", "features")], prefix1="clip/",
                                     prefix2="head/")
        rename_io(model, {"clip/frames": "frames", "head/logits": "logits"})
        return save_onnx(model, meta, path)
    clip_shape, head_shape = list(examples["clip"][0].shape[1:]), list(examples["head"][0].shape[1:])
    fold = reshape_model("frames", "folded", ["batch", *clip_shape], ["frames_batch", *clip_shape[1:]], frames)
    unfold = reshape_model("features", "unfolded", ["frames_batch", *head_shape[1:]], ["batch", *head_shape], frames)
    model = compose.merge_models(fold, frames, io_map=[("folded", "frames")], prefix1="fold/", prefix2="frames/")
    model = compose.merge_models(model, unfold, io_map=[("frames/features", "features")], prefix2="unfold/")
    model = compose.merge_models(model, head, io_map=[("unfold/unfolded", "features")], prefix2="head/")
    rename_io(model, {"fold/frames": "frames", "head/logits": "logits"})
    save_onnx(model, meta, path)


def save_onnx(model: Any, meta: str, path: Path) -> None:
    import onnx

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


def write_torchscript(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, meta: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(module, example, check_trace=False)
        with atomic_output(path) as tmp:
            torch.jit.save(scripted, str(tmp), _extra_files={"videoseq.json": meta})


@torch.no_grad()
def compare(module: nn.Module, path: Path, fmt: str, example: tuple[torch.Tensor, ...]) -> float:
    """Max absolute difference between PyTorch and the exported file on ``example``, over every output."""
    expected = as_arrays(module(*example))
    if fmt == "onnx":
        session = onnx_session(path)
        got = session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), example)})
    else:
        got = as_arrays(read_torchscript(path)[0](*example))
    if [g.shape for g in got] != [e.shape for e in expected]:
        return float("inf")
    return max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))


def as_arrays(out: torch.Tensor | tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def export_command(checkpoint: str, out: str | None, fmt: str, streaming: bool, overwrite: bool = False) -> int:
    """``videoseq export``: write, check and print every part; exit 1 when a check fails."""
    results = export_checkpoint(checkpoint, out, fmt=fmt, streaming=streaming, overwrite=overwrite)
    for result in results:
        print(result.line())
    return 0 if all(r.ok for r in results) else 1
