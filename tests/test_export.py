import csv
import warnings

import numpy as np
import onnxruntime
import pytest
import torch

from videoseq.checkpoint import checkpoint_payload, save_checkpoint
from videoseq.cli import main
from videoseq.config import config_from_dict
from videoseq.export import TOLERANCE, export_checkpoint
from videoseq.exported import part_paths
from videoseq.predict import Predictor

from conftest import informative_model, motion_model

HEADS = [("mean", {}), ("gru", {"hidden": 16}), ("lstm", {"hidden": 16, "layers": 2}),
         ("gru", {"hidden": 16, "bidirectional": True}), ("convlstm", {"hidden": 8})]


def write_checkpoint(path, head: str, head_args: dict, frames: int = 4, size: int = 64):
    stage = "stride16" if head == "convlstm" else None
    config = config_from_dict({"data": {"frames": frames, "size": size, "sampling": "dense", "stride": 1},
                               "model": {"backbone": "mobilenet_v3_small", "stage": stage, "head": head,
                                         "head_args": head_args}})
    model = informative_model(head, head_args, frames=frames, size=size, stage=stage)
    return save_checkpoint(path, checkpoint_payload(model, config, ["a", "b", "c"]))


@pytest.mark.parametrize("head, head_args", HEADS, ids=[f"{h}-{len(a)}" for h, a in HEADS])
def test_onnx_clip_and_streaming_exports_match_pytorch(tmp_path, head, head_args):
    ckpt = write_checkpoint(tmp_path / "m.pt", head, head_args)
    checks = export_checkpoint(ckpt, fmt="onnx", streaming=True)
    assert [c.part for c in checks] == ["clip", "frames", "head"]
    assert all(c.ok and c.max_abs_diff <= TOLERANCE and c.path.is_file() for c in checks), [c.line() for c in checks]
    # a batch of 5 (traced with 2) through onnxruntime, against the PyTorch model
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    clip = torch.randn(5, 4, 3, 64, 64)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"frames": clip.numpy()})[0]
    with torch.no_grad():
        expected = predictor.model(clip).numpy()
    assert expected.std(0).max() > 1e-3  # the logits depend on the input: the check means something
    assert np.abs(got - expected).max() <= TOLERANCE


def test_torchscript_export_matches_pytorch(tmp_path):
    ckpt = write_checkpoint(tmp_path / "m.pt", "gru", {"hidden": 16})
    checks = export_checkpoint(ckpt, tmp_path / "out" / "m.torchscript.pt", fmt="torchscript", streaming=True)
    assert [c.path.name for c in checks] == ["m.torchscript.pt", "m.frames.torchscript.pt", "m.head.torchscript.pt"]
    assert all(c.ok for c in checks)
    extra = {"videoseq.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation note
        scripted = torch.jit.load(str(checks[0].path), _extra_files=extra)
    assert b'"classes": ["a", "b", "c"]' in extra["videoseq.json"]
    assert scripted(torch.randn(3, 4, 3, 64, 64)).shape == (3, 3)


def test_onnx_sessions_follow_torch_threads_and_do_not_spin(tmp_path):
    from videoseq.exported import onnx_session

    ckpt = write_checkpoint(tmp_path / "m.pt", "gru", {"hidden": 8})
    export_checkpoint(ckpt, fmt="onnx")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        options = onnx_session(tmp_path / "m.onnx").get_session_options()
    finally:
        torch.set_num_threads(before)
    # idle worker threads spin by default and starve the decoding thread on a small CPU
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1


def test_part_paths_sit_beside_the_clip_file(tmp_path):
    paths = part_paths(tmp_path / "model.onnx", "onnx")
    assert [p.name for p in paths.values()] == ["model.onnx", "model.frames.onnx", "model.head.onnx"]


@pytest.mark.parametrize("fmt, name", [("onnx", "tiny.onnx"), ("torchscript", "tiny.torchscript.pt")])
def test_predict_runs_the_exported_model_like_the_checkpoint(tiny_run, tmp_path, shared_video, capsys, fmt, name):
    onnx_path = tmp_path / name
    assert main(["export", str(tiny_run / "best.pt"), "--format", fmt, "--out", str(onnx_path), "--streaming"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("max abs diff vs PyTorch") == 3 and printed.count(" ok") == 3
    video = str(shared_video("ucf_like_320x240.avi"))
    tables = {}
    for name, model in (("pt", tiny_run / "best.pt"), ("onnx", onnx_path)):
        for mode, extra in (("file", []), ("stream", ["--stream"])):
            out = tmp_path / f"{name}_{mode}.csv"
            assert main(["predict", str(model), video, "--csv", str(out), "--topk", "3", *extra]) == 0
            with open(out, newline="") as f:
                tables[name, mode] = list(csv.DictReader(f))
    for mode in ("file", "stream"):
        pt, ox = tables["pt", mode], tables["onnx", mode]
        assert len(pt) == len(ox) > 0
        for a, b in zip(pt, ox):
            assert a["label_1"] == b["label_1"] and float(a["score_1"]) == pytest.approx(float(b["score_1"]), abs=1e-4)


def test_a_torchscript_export_is_recognised_by_its_contents_and_refused_where_a_checkpoint_is_needed(
        tiny_run, tmp_path, shared_video, capsys):
    exported = tmp_path / "tiny.torchscript.pt"
    assert main(["export", str(tiny_run / "best.pt"), "--format", "torchscript", "--out", str(exported)]) == 0
    renamed = tmp_path / "renamed.pt"  # a TorchScript file under a checkpoint's name still runs
    renamed.write_bytes(exported.read_bytes())
    video = str(shared_video("short_32frames.mp4"))
    for model in (exported, renamed):
        assert main(["predict", str(model), video, "--csv", str(tmp_path / "p.csv"), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["eval", str(renamed), "--out", str(tmp_path / "eval")]) == 1  # an input of the wrong kind
    err = capsys.readouterr().err
    assert "is a TorchScript export, not a checkpoint: videoseq predict runs it" in err and ".onnx" in err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "weights.pt")  # some other program's file
    assert main(["predict", str(tmp_path / "weights.pt"), video]) == 1
    assert ".onnx and .torchscript.pt files of videoseq export" in capsys.readouterr().err


def test_streaming_an_onnx_export_without_its_parts_is_explained(tiny_run, tmp_path, shared_video, capsys):
    onnx_path = tmp_path / "clip_only.onnx"
    assert main(["export", str(tiny_run / "best.pt"), "--out", str(onnx_path)]) == 0
    assert main(["predict", str(onnx_path), str(shared_video("short_32frames.mp4")), "--stream"]) == 1
    assert "--streaming" in capsys.readouterr().err


MOTION_EXPORTS = [("flow", None), ("rgb", "online"), ("flow", "online"), ("rgb", "bidirectional")]


def write_motion_checkpoint(path, modality: str, shift: str | None):
    model, config = motion_model(modality, shift)
    return save_checkpoint(path, checkpoint_payload(model, config, ["a", "b", "c"]))


@pytest.mark.parametrize("modality, shift", MOTION_EXPORTS, ids=[f"{m}-{s}" for m, s in MOTION_EXPORTS])
def test_flow_and_temporal_shift_exports_match_pytorch(tmp_path, modality, shift):
    ckpt = write_motion_checkpoint(tmp_path / "m.pt", modality, shift)
    streaming = shift != "bidirectional"
    checks = export_checkpoint(ckpt, fmt="onnx", streaming=streaming)
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert len(checks) == (3 if streaming else 1)
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    clip = torch.randn(5, 4, predictor.config.data.input_channels(), 64, 64)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"frames": clip.numpy()})[0]
    with torch.no_grad():
        expected = predictor.model(clip).numpy()
    assert expected.std(0).max() > 1e-3
    assert np.abs(got - expected).max() <= TOLERANCE


ONLINE_STREAMS = [("rgb", "onnx"), ("flow", "onnx"), ("flow", "torchscript")]


@pytest.mark.parametrize("modality, fmt", ONLINE_STREAMS, ids=[f"{m}-{f}" for m, f in ONLINE_STREAMS])
def test_an_exported_stream_keeps_the_online_shift_cache(tmp_path, modality, fmt, shared_video):
    """The exported frames part takes and returns the shift cache: exported streams equal PyTorch streams."""
    from videoseq.exported import SUFFIXES
    from videoseq.video.decoder import VideoReader

    ckpt = write_motion_checkpoint(tmp_path / "m.pt", modality, "online")
    assert all(c.ok for c in export_checkpoint(ckpt, fmt=fmt, streaming=True))
    with VideoReader(shared_video("vtest.avi")) as reader:
        frames = reader.read(np.arange(0, 18, 2))
    exported = tmp_path / f"m{SUFFIXES[fmt]}"
    torch_stream, onnx_stream = (Predictor.from_checkpoint(p, device="cpu") for p in (ckpt, exported))
    steps = [(torch_stream.step_logits(f), onnx_stream.step_logits(f)) for f in frames]
    steps = [(a, b) for a, b in steps if a is not None]
    assert len(steps) == 6 and all(b is not None for _, b in steps)
    assert max(torch.max(torch.abs(a - b)).item() for a, b in steps) <= TOLERANCE
    assert torch.stack([a for a, _ in steps]).std(0).max() > 1e-3


def test_a_bidirectional_shift_exports_no_streaming_parts(tmp_path):
    ckpt = write_motion_checkpoint(tmp_path / "m.pt", "rgb", "bidirectional")
    with pytest.raises(ValueError, match="bidirectional temporal shift.*temporal_shift=online"):
        export_checkpoint(ckpt, fmt="onnx", streaming=True)
