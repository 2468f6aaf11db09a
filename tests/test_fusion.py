"""Two-stream late fusion (``videoseq fuse``, ``models/fusion.py``) on two tiny trained checkpoints."""

import json

import numpy as np
import onnxruntime  # noqa: F401  (the export test needs it; fail early when it is missing)
import pytest
import torch

from videoseq.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from videoseq.cli import main
from videoseq.engine.trainer import fit
from videoseq.evaluation import EvalOptions, open_eval
from videoseq.export import export_checkpoint
from videoseq.flow import MotionInput
from videoseq.fusion import fuse_checkpoints
from videoseq.models.fusion import FusedBackbone
from videoseq.predict import Predictor
from videoseq.video.geometry import resize_short_side

from conftest import tiny_config

CLIPS = ("data.sampling=dense", "data.stride=2", "train.epochs=1", "train.device=cpu", "data.num_workers=0")


@pytest.fixture(scope="module")
def streams(gestures, tmp_path_factory):
    """An RGB and a flow model trained on the session's gestures (one epoch each), same clips."""
    out = tmp_path_factory.mktemp("streams")
    rgb = fit(tiny_config(gestures, *CLIPS), out / "rgb") / "last.pt"
    flow = fit(tiny_config(gestures, *CLIPS, "data.modality=flow", "data.flow_bound=8"), out / "flow") / "last.pt"
    return rgb, flow, out


def video_scores(checkpoint):
    run = open_eval(checkpoint, None, EvalOptions(split="test", device="cpu", num_workers=0))
    result, dataset = run.evaluate_views(1, 1)
    return result["video_scores"], [path for path, _ in dataset.videos]


def test_the_fused_checkpoint_is_the_weighted_mean_of_its_streams(streams):
    rgb, flow, out = streams
    only_flow = fuse_checkpoints([rgb, flow], [0.0, 1.0], out / "only_flow.pt")
    alone, _ = video_scores(flow)
    fused, _ = video_scores(only_flow)
    assert np.abs(fused - alone).max() <= 1e-5  # the flow part of the fused input is the flow model's own input
    both = fuse_checkpoints([rgb, flow], [1.0, 1.5], out / "both.pt")
    model, config = model_from_checkpoint(load_checkpoint(both), both)
    assert config.data.modality == "rgb+flow" and config.data.input_channels() == 5
    run = open_eval(both, None, EvalOptions(split="test", device="cpu", num_workers=0))
    batch = next(iter(run.loader(1, 1)))
    x = (batch["video"].float() / 255 - torch.tensor(model.backbone.mean).view(-1, 1, 1)) / torch.tensor(
        model.backbone.std).view(-1, 1, 1)  # (B, T, 5, S, S)
    rgb_model = model_from_checkpoint(load_checkpoint(rgb), rgb)[0]
    flow_model = model_from_checkpoint(load_checkpoint(flow), flow)[0]
    with torch.no_grad():
        expected = (rgb_model(x[:, :, :3]).softmax(1) + 1.5 * flow_model(x[:, :, 3:]).softmax(1)) / 2.5
        assert torch.allclose(model(x).softmax(1), expected, atol=1e-6)


def test_the_rgb_and_flow_parts_of_a_fused_input_are_the_frames_and_their_flow():
    ramp = (np.indices((48, 48))[1] * 5).astype(np.uint8)[..., None].repeat(3, axis=-1)  # (48, 48, 3)
    frames = np.stack([np.roll(ramp, 2 * i, axis=1) for i in range(6)])  # (6, 48, 48, 3) moving right
    table = np.array([[0, 2], [2, 4]])  # (T, L+1)
    both = MotionInput("rgb+flow", step=2, short_side=32, bound=8)(frames, table)
    flow = MotionInput("flow", step=2, short_side=32, bound=8)(frames, table)
    assert both.shape == (2, 32, 32, 5)
    assert np.array_equal(both[..., :3], resize_short_side(frames, 32, area=True)[[2, 4]])
    assert np.array_equal(both[..., 3:], flow)


def test_predict_and_onnx_export_take_the_fused_checkpoint(streams, tmp_path):
    rgb, flow, out = streams
    fused = fuse_checkpoints([rgb, flow], [1.0, 1.5], out / "fused_export.pt")
    scores, paths = video_scores(fused)
    predictor = Predictor.from_checkpoint(fused, device="cpu")
    by_file = np.stack([predictor.predict_video(path) for path in paths[:4]])
    assert np.abs(by_file - scores[:4]).max() <= 1e-5  # predict's own reading of the files, same clips
    checks = export_checkpoint(fused, tmp_path / "fused.onnx", streaming=True)
    assert [c.part for c in checks] == ["clip", "frames", "head"] and all(c.ok for c in checks), checks
    onnx = Predictor.from_checkpoint(tmp_path / "fused.onnx")
    assert np.abs(np.stack([onnx.predict_video(path) for path in paths[:4]]) - by_file).max() <= 1e-4


def test_frame_by_frame_the_fused_model_gives_its_clip_logits(streams):
    rgb, flow, out = streams
    fused = fuse_checkpoints([rgb, flow], [1.0, 1.5], out / "fused_step.pt")
    model = model_from_checkpoint(load_checkpoint(fused), fused)[0]
    torch.manual_seed(0)
    clip = torch.randn(2, 4, 5, 32, 32)  # (B, T, 3 + 2, S, S)
    with torch.no_grad():
        whole = model(clip)
        buffer = torch.stack([model.forward_frames(clip[:, t]) for t in range(4)], dim=1)  # (B, T, D1 + D2)
        state = model.init_state(2, "cpu")
        for t in range(4):
            stepped, state = model.step(clip[:, t], state)
    assert torch.allclose(model.forward_head(buffer), whole, atol=1e-5)
    assert torch.allclose(stepped, whole, atol=1e-5)
    assert torch.allclose(whole.exp().sum(1), torch.ones(2), atol=1e-5)  # log-probabilities


def test_fuse_and_eval_on_the_command_line(streams, tmp_path, capsys):
    rgb, flow, _ = streams
    out = tmp_path / "fused.pt"
    assert main(["fuse", str(rgb), str(flow), "--weights", "1", "1.5", "--out", str(out)]) == 0
    assert "weights 1 : 1.5" in capsys.readouterr().out
    assert main(["eval", str(out), "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert 0 <= report["video"]["top1"] <= 1 and (tmp_path / "eval" / "predictions.csv").is_file()
    assert main(["fuse", str(rgb), str(flow), "--out", str(out)]) == 2  # exists: --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_streams_that_cannot_be_fused_are_refused(streams, gestures, tmp_path):
    rgb, flow, out = streams
    with pytest.raises(CheckpointError, match="not one of|distinct"):
        fuse_checkpoints([rgb, rgb], [1.0, 1.0], tmp_path / "same.pt")
    with pytest.raises(ValueError, match="one weight per stream"):
        fuse_checkpoints([rgb, flow], [1.0], tmp_path / "w.pt")
    with pytest.raises(ValueError, match=">= 0"):
        fuse_checkpoints([rgb, flow], [-1.0, 2.0], tmp_path / "w.pt")
    longer = fit(tiny_config(gestures, *CLIPS, "data.frames=6", "data.modality=rgbdiff"), out / "longer") / "last.pt"
    with pytest.raises(CheckpointError, match="data.frames"):
        fuse_checkpoints([rgb, longer], [1.0, 1.0], tmp_path / "frames.pt")
    with pytest.raises(ValueError, match="videoseq fuse"):
        fit(tiny_config(gestures, *CLIPS, "data.modality=rgb+flow"), tmp_path / "train_fused")
    assert not any(tmp_path.glob("*.pt"))


def test_the_fused_backbone_checks_its_input_channels(streams):
    rgb, flow, out = streams
    fused = fuse_checkpoints([rgb, flow], [1.0, 1.0], out / "fused_check.pt")
    model = model_from_checkpoint(load_checkpoint(fused), fused)[0]
    assert isinstance(model.backbone, FusedBackbone) and model.backbone.channels == [3, 2]
    with pytest.raises(ValueError, match="takes 5 channels"):
        model(torch.zeros(1, 4, 3, 32, 32))
