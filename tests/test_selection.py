"""What best.pt is chosen on: the val split when the manifest has one, said loudly otherwise; early stopping."""

import dataclasses

import pytest
import torch
import yaml

from videoseq.checkpoint import load_checkpoint
from videoseq.engine.selection import select_split, stale_after
from videoseq.engine.trainer import fit
from videoseq.manifest import write_manifest
from videoseq.prepare import resolve_manifest
from videoseq.tables import read_csv

from conftest import tiny_config


@pytest.fixture
def with_val(gestures, tmp_path):
    """The session's gestures as a manifest whose first 3 test videos form a val split."""
    manifest = resolve_manifest(tiny_config(gestures).data)
    test = [r.path for r in manifest.rows if r.split == "test"][:3]
    manifest.rows = [dataclasses.replace(r, split="val") if r.path in test else r for r in manifest.rows]
    write_manifest(manifest, tmp_path / "data")
    return tmp_path / "data" / "manifest.csv"


def test_auto_validates_on_val_and_best_pt_is_the_epoch_of_the_best_val_score(gestures, with_val, tmp_path, capsys):
    run = fit(tiny_config(gestures, f"data.manifest={with_val}", "train.epochs=3"), tmp_path / "run")
    out = capsys.readouterr()
    assert "best.pt is chosen on: val video accuracy (3 videos)" in out.out and "WARNING" not in out.err
    assert "(torch threads 1, workers 0)" in out.out  # the thread policy, with $OMP_NUM_THREADS=1 of the tests
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["val_split"] == "val"
    scores = [float(r["val_video_acc"]) for r in read_csv(run / "metrics.csv")[1]]
    assert all(abs(3 * s - round(3 * s)) < 1e-9 for s in scores)  # scored on the 3 val videos, not the 6 test ones
    assert load_checkpoint(run / "best.pt")["epoch"] == scores.index(max(scores)) + 1
    assert f"best.pt: epoch {scores.index(max(scores)) + 1}, val video accuracy" in out.out


def test_auto_without_val_selects_on_test_and_says_so(gestures):
    config = tiny_config(gestures)
    selection = select_split(config, resolve_manifest(config.data))
    assert selection.split == "test" and "no 'val' split" in selection.warning
    assert "best.pt is chosen on the test split" in selection.warning and "optimistic" in selection.warning
    assert selection.describe().startswith("test video accuracy")


@pytest.mark.parametrize("split", ["validation", "val"])
def test_an_empty_validation_split_is_an_error_naming_it_and_the_splits(gestures, tmp_path, split):
    config = tiny_config(gestures, f"data.val_split={split}")
    with pytest.raises(ValueError, match=rf"data.val_split='{split}': the manifest has no videos in split "
                                         rf"'{split}'; its splits are \{{'test': \d+, 'train': \d+\}}"):
        fit(config, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_null_selects_on_training_accuracy_and_early_stop_then_needs_a_split(gestures):
    config = tiny_config(gestures, "data.val_split=null")
    manifest = resolve_manifest(config.data)
    selection = select_split(config, manifest)
    assert selection.split is None and selection.describe() == "training accuracy (no validation split)"
    stopping = tiny_config(gestures, "data.val_split=null", "train.early_stop={patience: 2}")
    with pytest.raises(ValueError, match="train.early_stop watches the validation score"):
        select_split(stopping, manifest)


def test_stale_counts_validations_without_an_improvement_beyond_min_delta():
    assert stale_after(0, 0.5, -1.0, 0.0) == 0
    assert stale_after(0, 0.5, 0.5, 0.0) == 1 and stale_after(1, 0.55, 0.5, 0.1) == 2
    assert stale_after(2, 0.61, 0.5, 0.1) == 0
    assert stale_after(0, 0.0, None, 1.0) == 0  # the first validation, even at 0 accuracy, is the mark to beat


def test_early_stopping_stops_and_a_run_resumed_before_the_stop_stops_at_the_same_epoch(gestures, tmp_path,
                                                                                      capsys):
    # min_delta 1.0: no accuracy can beat the first epoch's by more, so epochs 2 and 3 are stale
    stop = ["train.epochs=6", "train.early_stop={patience: 2, min_delta: 1.0}"]
    straight = fit(tiny_config(gestures, *stop), tmp_path / "straight")
    out = capsys.readouterr()
    assert [r["epoch"] for r in read_csv(straight / "metrics.csv")[1]] == ["1", "2", "3"]
    assert "finished after 3 epoch(s): early stop: 2 validations without an improvement of more than 1" in out.out
    assert "WARNING: the manifest has no 'val' split" in out.err  # the gestures have train and test only
    last = load_checkpoint(straight / "last.pt")
    scores = [float(r["val_video_acc"]) for r in read_csv(straight / "metrics.csv")[1]]
    assert last["progress"]["stopped_early"] and last["progress"]["best_epoch"] == 1 + scores.index(max(scores))
    fit(tiny_config(gestures, *stop), straight, resume=True)  # a stopped run stays stopped
    assert len(read_csv(straight / "metrics.csv")[1]) == 3
    two_epochs = last["step"] // 3 * 2
    fit(tiny_config(gestures, *stop, f"train.stop_after_steps={two_epochs}"), tmp_path / "resumed")
    assert not load_checkpoint(tmp_path / "resumed" / "last.pt")["progress"]["stopped_early"]
    fit(tiny_config(gestures, *stop), tmp_path / "resumed", resume=True)
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert resumed["progress"]["stopped_early"] and resumed["epoch"] == 3
    assert all(torch.equal(resumed["model"][k], last["model"][k]) for k in last["model"])
