import csv
import json

import pytest

from videoseq.cli import main
from videoseq.demo import run_demo


@pytest.mark.slow
def test_demo_runs_every_step_on_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--per-class", "6", "--set", "train.epochs=1",
                 "--set", "data.num_workers=0"]) == 0
    printed = capsys.readouterr().out
    assert "test top-1 accuracy" in printed and str(out / "predictions.csv") in printed
    for name in ("run/best.pt", "run/metrics.csv", "run/curves.png", "eval/report.json", "eval/confusion.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "eval" / "report.json").read_text())
    assert 0 <= report["video"]["top1"] <= 1
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["label_1"] and not rows[0]["error"]


@pytest.mark.slow
def test_caption_demo_runs_every_step_on_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--task", "caption", "--out", str(out), "--per-class", "6", "--set", "train.epochs=1",
                 "--set", "data.num_workers=0", "--set", "caption.beam=2"]) == 0
    printed = capsys.readouterr().out
    assert "test BLEU-4" in printed and "test top-1 accuracy" in printed
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and "caption" in rows[0] and not rows[0]["error"]
    vocab = (out / "run" / "vocab.txt").read_text().split("\n")
    assert set(rows[0]["caption"].split()) <= set(vocab)  # one epoch on 54 clips: maybe no word yet
    report = json.loads((out / "eval" / "report.json").read_text())
    assert 0 <= report["caption"]["bleu4"] <= report["caption"]["bleu1"] <= 1


def test_unknown_demo_task_and_clip_count_are_named(tmp_path):
    with pytest.raises(ValueError, match="demo task 'describe'"):
        run_demo(tmp_path / "demo", task="describe")
    with pytest.raises(ValueError, match="per_class=0"):
        run_demo(tmp_path / "demo", per_class=0)


def test_a_second_demo_into_the_same_folder_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "demo"
    (out / "run").mkdir(parents=True)
    (out / "predictions.csv").write_text("kept\n")
    with pytest.raises(ValueError, match=r"--out .*demo already holds \['run', 'predictions.csv'\]; .*another --out"):
        run_demo(out)
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "run"]  # no data/ written
    assert (out / "predictions.csv").read_text() == "kept\n"
