"""The run: schedule, datasets of a config, the run folder fit writes, best.pt, names checked first."""

import math

import pytest
import torch

from videoseq.checkpoint import load_checkpoint, model_from_checkpoint
from videoseq.config import load_config
from videoseq.datasets import LoaderOptions, make_loader
from videoseq.engine.loops import evaluate
from videoseq.engine.trainer import build_datasets, fit, lr_factor
from videoseq.prepare import resolve_manifest
from videoseq.tables import read_csv

from conftest import tiny_config, write_video


def test_lr_schedule_warms_up_then_follows_a_cosine():
    f = lambda s: lr_factor(s, warmup_steps=4, total_steps=14, schedule="cosine")
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.0) and lr_factor(50, warmup_steps=0, total_steps=10, schedule="constant") == 1


def test_fit_writes_a_self_describing_run(gestures, tmp_path):
    run = fit(tiny_config(gestures), tmp_path / "run")
    for name in ("config.yaml", "classes.txt", "manifest.csv", "metrics.csv", "curves.png", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    rows = read_csv(run / "metrics.csv")[1]
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["val_video_acc"] for r in rows)
    payload = load_checkpoint(run / "last.pt")
    assert payload["classes"][0] == "MoveLeft" and payload["backbone"] == "resnet18" and payload["head"] == "gru"
    assert payload["epoch"] == 2 and len(payload["mean"]) == 3
    model, config = model_from_checkpoint(payload)
    assert config.data.frames == 4
    # the rebuilt model reproduces the validation scores of the trained one
    _, val_set = build_datasets(config, resolve_manifest(config.data))
    loader = make_loader(val_set, LoaderOptions(batch_size=4), shuffle=False)
    result = evaluate(model, loader, device=torch.device("cpu"))
    assert result["scores"].shape == (len(val_set), 9)
    assert result["video_metrics"]["top1"] == pytest.approx(float(rows[-1]["val_video_acc"]))


def test_best_checkpoint_is_chosen_among_validated_epochs_only(gestures, tmp_path, monkeypatch):
    # epochs 1 and 2 are not validated; their training accuracy must not compete with the
    # validation score of epoch 3, the one validated epoch, even when that score is the lowest possible
    import videoseq.engine.trainer as engine

    real = engine.validate
    monkeypatch.setattr(engine, "validate", lambda *a, **k: {**real(*a, **k), "val_video_acc": 0.0})
    run = fit(tiny_config(gestures, "train.epochs=3", "train.eval_every=3"), tmp_path / "run")
    rows = read_csv(run / "metrics.csv")[1]
    assert [bool(r["val_video_acc"]) for r in rows] == [False, False, True]
    assert load_checkpoint(run / "best.pt")["epoch"] == 3


def test_unknown_flip_swap_label_is_named(gestures):
    config = tiny_config(gestures, "data.flip_swap={Sideways: MoveLeft}")
    with pytest.raises(ValueError, match="Sideways"):
        build_datasets(config, resolve_manifest(config.data))


def test_channels_last_training_module_gives_the_same_logits(gestures):
    from videoseq.engine.trainer import training_module
    from videoseq.models.build import build_model_from_config

    config = tiny_config(gestures, "train.channels_last=true")
    torch.manual_seed(0)
    model = build_model_from_config(config, 9).eval()
    clips = torch.randn(2, 4, 3, 32, 32)
    expected = model(clips)
    module = training_module(model, config, torch.device("cpu"))
    assert module.backbone.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(module(clips), expected, atol=1e-5)


@pytest.mark.parametrize("override, valid", [("model.backbone=resnet19", "resnet18"), ("model.stage=layer9", "layer4"),
                                             ("model.head=transformer", "convlstm"),
                                             ("model.head_args={hiden: 8}", "hidden")])
def test_an_unknown_model_name_fails_before_the_run_folder_is_made(gestures, tmp_path, override, valid):
    with pytest.raises(ValueError, match=valid):
        fit(tiny_config(gestures, override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def imbalanced_videos(root, seed: int = 1):
    """60 Common and 6 Rare training videos whose brightness overlaps (100 vs 140, sd 25); 30 + 30 test videos."""
    import numpy as np

    from videoseq.manifest import Manifest, ManifestRow, write_manifest

    rng, rows = np.random.default_rng(seed), []
    for label, mean, train in (("Common", 100, 60), ("Rare", 140, 6)):
        for i in range(train + 30):
            level = np.clip(rng.normal(mean, 25), 0, 255)
            frames = np.clip(level + rng.normal(0, 8, (4, 32, 32, 3)), 0, 255).astype(np.uint8)
            write_video(root / label / f"{i:03d}.avi", frames)
            rows.append(ManifestRow(path=f"{label}/{i:03d}.avi", label=label, split="train" if i < train else "test"))
    write_manifest(Manifest(rows=rows, classes=["Common", "Rare"], root=root), root)
    return root / "manifest.csv"


@pytest.mark.slow
def test_class_weights_and_the_balanced_sampler_raise_the_rare_class_recall_in_the_per_class_report(tmp_path):
    from videoseq.evaluation import EvalOptions, run_eval

    manifest = imbalanced_videos(tmp_path / "data")
    base = [f"data.manifest={manifest}", "data.frames=2", "data.size=32", "data.num_workers=0", "data.val_split=null",
            "data.flip=false", "data.color_jitter=0", "data.crop_scale=[0.9, 1.0]", "model.backbone=resnet18",
            "model.stage=layer1", "model.head=mean", "train.epochs=12", "train.batch_size=8", "train.lr=0.001",
            "train.schedule=constant", "train.clip_grad=null"]
    recall = {}
    for name, extra in (("none", []), ("weights", ["train.class_weights=balanced"]),
                        ("sampler", ["data.sampler=balanced"])):
        run = fit(load_config(None, base + extra), tmp_path / name)
        run_eval(run / "last.pt", out_dir=run / "eval", options=EvalOptions(num_workers=0))
        recall[name] = {r["class"]: float(r["recall"]) for r in read_csv(run / "eval" / "per_class.csv")[1]}
    # unweighted, the rare class is mostly predicted as the common one (recall 0.3 on this set);
    # both remedies move the boundary towards it (0.87 with the weights, 0.9 with the sampler)
    assert recall["weights"]["Rare"] >= recall["none"]["Rare"] + 0.3
    assert recall["sampler"]["Rare"] >= recall["none"]["Rare"] + 0.3
    assert recall["none"]["Common"] >= 0.9
