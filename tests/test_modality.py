import numpy as np
import pytest
import torch

from videoseq.checkpoint import load_checkpoint, model_from_checkpoint
from videoseq.config import ConfigError, load_config
from videoseq.engine.trainer import build_datasets, fit
from videoseq.evaluation import EvalOptions, run_eval
from videoseq.flow import MOTION_MEAN
from videoseq.modality import eval_preset, motion_input, train_preset
from videoseq.models.motion import shift_modules
from videoseq.prepare import resolve_manifest
from videoseq.transforms import ClipTrainPreset, MotionEvalPreset, MotionTrainPreset
from videoseq.video.geometry import eval_resize


@pytest.mark.parametrize("overrides,message", [
    (["data.modality=depth"], "data.modality"),
    (["data.flow_method=lucas"], "data.flow_method"),
    (["data.flow_stack=0"], "data.flow_stack"),
    (["data.flow_bound=-1"], "data.flow_bound"),
    (["model.temporal_shift=both"], "model.temporal_shift"),
    (["model.shift_placement=head"], "model.shift_placement"),
    (["model.shift_fraction=0.9"], "model.shift_fraction"),
    (["data.modality=flow", "data.features=/tmp/feats"], "data.features"),
])
def test_bad_motion_options_name_their_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_each_modality_gets_its_presets_and_channels():
    rgb, flow, diff = (load_config(None, [f"data.modality={m}", "data.flow_stack=3"]).data
                       for m in ("rgb", "flow", "rgbdiff"))
    assert [d.input_channels() for d in (rgb, flow, diff)] == [3, 6, 9]
    assert motion_input(rgb) is None and isinstance(train_preset(rgb, {}), ClipTrainPreset)
    assert isinstance(train_preset(flow, {}), MotionTrainPreset) and train_preset(flow, {}).flow_bound == 20.0
    assert train_preset(diff, {}).flow_bound is None  # differences are cropped, not rescaled
    assert isinstance(eval_preset(flow, 3), MotionEvalPreset) and eval_preset(flow, 3).crops == 3
    assert motion_input(flow).lookback == 3 * flow.stride and motion_input(flow).short_side == 128


def test_flow_model_with_online_shift_trains_checkpoints_and_evaluates(gestures, tmp_path):
    overrides = [f"data.root={gestures / 'videos'}", f"data.splits_dir={gestures / 'splits'}", "data.format=ucf101",
                 "data.frames=4", "data.size=32", "data.sampling=dense", "data.num_workers=1", "data.modality=flow",
                 "data.flow_stack=2", "data.flow_bound=8", "model.backbone=resnet18", "model.stage=layer2",
                 "model.head=gru", "model.head_args={hidden: 16}", "model.temporal_shift=online",
                 "train.epochs=1", "train.batch_size=8", "train.device=cpu"]
    config = load_config(None, overrides)
    train_set, _ = build_datasets(config, resolve_manifest(config.data))
    sample = train_set[0]["video"]
    assert sample.shape == (4, 4, 32, 32) and sample.dtype == torch.uint8
    run = fit(config, tmp_path / "run")
    payload = load_checkpoint(run / "last.pt")
    assert payload["mean"] == [MOTION_MEAN] * 4
    model, loaded = model_from_checkpoint(payload, run / "last.pt")
    assert loaded.data.modality == "flow" and len(shift_modules(model.backbone)) == 4
    assert model.backbone.trunk.conv1.in_channels == 4
    report = run_eval(run / "last.pt", out_dir=tmp_path / "eval", options=EvalOptions(split="test", num_workers=0))
    assert report["failed_videos"] == 0 and np.isfinite(report["video"]["top1"])


def test_predict_reads_motion_images_from_files_and_refuses_single_frames(gestures):
    from videoseq.models.build import build_model_from_config
    from videoseq.predict import Predictor

    config = load_config(None, ["data.modality=flow", "model.stage=layer1", "data.frames=4", "data.size=32",
                                "data.sampling=dense"])
    torch.manual_seed(0)
    model = build_model_from_config(config, 3)
    predictor = Predictor(model, config, ["a", "b", "c"], torch.device("cpu"))
    video = next((gestures / "videos").rglob("*.avi"))
    views = predictor.read_views(video)
    side = eval_resize(32)  # flow at the eval resize of the 32 px model, before the crop
    assert views.shape == (1, 4, side, side, 2) and views.dtype == np.uint8
    probs = predictor.predict_video(video)
    with torch.no_grad():
        expected = model(predictor.prepare(views)).softmax(1)[0].numpy()
    assert probs.shape == (3,) and np.allclose(probs, expected, atol=1e-6)
    with pytest.raises(ValueError, match="takes 2 channels"):
        predictor.predict_clip(np.zeros((4, 32, 32, 3), np.uint8))
