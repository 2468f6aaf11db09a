"""The files a run leaves for people: TensorBoard scalars beside metrics.csv, and the summary it ends with."""

import pytest

from videoseq.engine.records import TENSORBOARD_DIR, closing_summary, scalar_tag
from videoseq.engine.selection import Selection
from videoseq.engine.trainer import fit
from videoseq.tables import read_csv

from conftest import tiny_config


def test_tensorboard_event_files_hold_the_epoch_scalars_of_metrics_csv(gestures, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = fit(tiny_config(gestures, "train.tensorboard=true"), tmp_path / "run")
    assert list((run / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    rows = read_csv(run / "metrics.csv")[1]
    tags = {"train_loss": "train/loss", "train_acc": "train/acc", "val_video_acc": "val/video_acc", "lr": "lr",
            "val_loss": "val/loss", "seconds": "seconds"}
    assert set(tags.values()) <= set(events.Tags()["scalars"])
    for column, tag in tags.items():
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)
    assert f"TensorBoard: tensorboard --logdir {run / TENSORBOARD_DIR}" in capsys.readouterr().out


def test_a_run_without_tensorboard_writes_no_event_files(gestures, tmp_path):
    run = fit(tiny_config(gestures, "train.epochs=1"), tmp_path / "run")
    assert not (run / TENSORBOARD_DIR).exists() and (run / "metrics.csv").is_file()


def test_scalar_tags_group_train_and_val_columns():
    assert [scalar_tag(c) for c in ("train_loss", "val_video_acc", "val_bleu4", "lr", "seconds")] == [
        "train/loss", "val/video_acc", "val/bleu4", "lr", "seconds"]


def test_the_closing_summary_names_the_best_epoch_what_chose_it_the_files_and_the_next_commands(tmp_path):
    for name in ("best.pt", "last.pt", "metrics.csv"):
        (tmp_path / name).write_text("")
    history = [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    text = closing_summary(tmp_path, history, Selection("val", 12), best_epoch=2, best=0.75)
    lines = text.splitlines()
    assert lines[0] == "finished after 3 epoch(s)"
    assert lines[1] == "best.pt: epoch 2, val video accuracy 0.7500 (12 videos)"
    assert lines[2] == f"files in {tmp_path}: best.pt, last.pt, metrics.csv"
    assert f"  videoseq eval {tmp_path / 'best.pt'} --split test --out {tmp_path / 'eval'}" in lines
    assert any(line.startswith(f"  videoseq predict {tmp_path / 'best.pt'} ") for line in lines)
    assert f"  videoseq export {tmp_path / 'best.pt'} --format onnx" in lines
    warned = closing_summary(tmp_path, history, Selection("test", 5, warning="chosen on test"), best_epoch=1,
                             best=0.5, stop_reason="early stop")
    assert warned.splitlines()[0] == "finished after 3 epoch(s): early stop" and "WARNING: chosen on test" in warned
