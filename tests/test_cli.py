import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

from videoseq.cli import main


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_prints_metrics_and_matches_sklearn_on_its_predictions(tiny_run, tmp_path, capsys):
    assert main(["eval", str(tiny_run / "best.pt"), "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "top1" in printed and "top5" in printed and "mean_class_acc" in printed
    for name in ("predictions.csv", "per_class.csv", "confusion.csv", "confusion.png", "report.json"):
        assert (tmp_path / "eval" / name).is_file(), name
    rows = read_csv(tmp_path / "eval" / "predictions.csv")
    classes = (tiny_run / "classes.txt").read_text().split()
    true = np.array([classes.index(r["label"]) for r in rows])
    pred = np.array([classes.index(r["label_1"]) for r in rows])
    top5 = np.mean([r["label"] in [r[f"label_{i}"] for i in range(1, 6)] for r in rows])
    metrics = json.loads((tmp_path / "eval" / "report.json").read_text())["video"]
    assert metrics["top1"] == pytest.approx(accuracy_score(true, pred))
    assert metrics["top5"] == pytest.approx(top5)
    assert metrics["mean_class_acc"] == pytest.approx(recall_score(true, pred, average="macro", labels=np.unique(true)))
    cm = confusion_matrix(true, pred, labels=range(len(classes)))
    with open(tmp_path / "eval" / "confusion.csv", newline="") as f:
        saved = [[int(v) for v in r[1:]] for r in list(csv.reader(f))[1:]]
    assert saved == cm.tolist()


def test_predict_real_files_writes_a_row_each_and_fails_on_the_broken_one(tiny_run, tmp_path, shared_video):
    files = [shared_video(n) for n in ("flipping_a_pancake.mkv", "ucf_like_320x240.avi", "corrupted.mp4")]
    out = tmp_path / "pred.csv"
    code = main(["predict", str(tiny_run / "best.pt"), *map(str, files), "--csv", str(out), "--topk", "3"])
    assert code == 1
    rows = read_csv(out)
    assert [r["path"] for r in rows] == [str(f) for f in files]
    assert rows[0]["label_1"] and float(rows[0]["score_1"]) >= float(rows[0]["score_2"]) and not rows[0]["error"]
    assert rows[2]["label_1"] == "" and "corrupted.mp4" in rows[2]["error"]


def test_predict_windows_gives_one_row_per_window(tiny_run, tmp_path, shared_video):
    video = shared_video("ucf_like_320x240.avi")  # 164 frames at 25 fps = 6.56 s
    out = tmp_path / "win.csv"
    assert main(["predict", str(tiny_run / "best.pt"), str(video), "--csv", str(out),
                 "--window", "2", "--stride", "1.5"]) == 0
    rows = read_csv(out)
    starts = [float(r["start_s"]) for r in rows]
    assert starts == [0.0, 1.52, 3.04, 4.56] and float(rows[-1]["end_s"]) == pytest.approx(6.56)


def test_predict_folder_and_glob(tiny_run, gestures, tmp_path):
    out = tmp_path / "folder.csv"
    assert main(["predict", str(tiny_run / "best.pt"), str(gestures / "videos" / "Grow"), "--csv", str(out)]) == 0
    assert len(read_csv(out)) == 4
    pattern = str(gestures / "videos" / "*" / "*_g01_*.avi")
    assert main(["predict", str(tiny_run / "best.pt"), pattern, "--csv", str(out)]) == 2  # out exists
    assert main(["predict", str(tiny_run / "best.pt"), pattern, "--csv", str(out), "--overwrite"]) == 0
    assert all("_g01_" in r["path"] for r in read_csv(out)) and len(read_csv(out)) >= 9


def test_checkpoint_predicts_with_no_config_in_a_fresh_process(tiny_run, tmp_path, gestures):
    """Only the checkpoint file travels: a copy in an empty folder, predicted from another process."""
    lonely = tmp_path / "alone"
    lonely.mkdir()
    (lonely / "model.pt").write_bytes((tiny_run / "best.pt").read_bytes())
    clip = next((gestures / "videos" / "MoveLeft").glob("*.avi"))
    result = subprocess.run([sys.executable, "-m", "videoseq", "predict", "model.pt", str(clip)],
                            cwd=lonely, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()[-2:]
    assert header.startswith("path,label_1,score_1") and row.startswith(str(clip))


def test_cli_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epoch: 3}\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "train.epoch" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.pt"), "x.avi"]) == 1  # an input that fails
    assert "missing.pt" in capsys.readouterr().err


def test_python_api_matches_the_predict_csv(tiny_run, tmp_path, shared_video):
    from videoseq.predict import Predictor

    video = shared_video("ucf_like_320x240.avi")
    out = tmp_path / "one.csv"
    assert main(["predict", str(tiny_run / "best.pt"), str(video), "--csv", str(out), "--topk", "1"]) == 0
    row = read_csv(out)[0]
    predictor = Predictor.from_checkpoint(tiny_run / "best.pt")
    probs = predictor.predict_video(video)
    assert probs.shape == (len(predictor.classes),) and probs.sum() == pytest.approx(1, abs=1e-4)
    assert predictor.classes[int(probs.argmax())] == row["label_1"]
    assert float(row["score_1"]) == pytest.approx(float(probs.max()), abs=1e-5)
    windows = list(predictor.predict_windows(video, 2.0, 1.5))
    assert [round(start, 2) for start, _, _ in windows] == [0.0, 1.52, 3.04, 4.56]
    assert all(p.shape == probs.shape for _, _, p in windows)


def parsers(parser, name="videoseq"):
    """Every parser of the command line, by its command, subcommands included."""
    import argparse

    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from parsers(child, f"{name} {sub}")


def test_every_command_has_an_example_and_every_option_a_description_and_its_default():
    import argparse

    from videoseq.cli import build_parser

    found = dict(parsers(build_parser()))
    assert {"videoseq train", "videoseq synth gestures", "videoseq prepare folder", "videoseq bench threads"} <= set(
        found)
    assert [name for name, p in found.items() if "example" not in (p.description or "")] == []
    undescribed, no_default = [], []
    for name, parser in found.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            text = formatter._get_help_string(action)
            flag = action.option_strings[0] if action.option_strings else action.dest
            if not (action.help or "").strip():
                undescribed.append(f"{name} {flag}")
            elif action.option_strings and action.nargs != 0 and not action.required and "default" not in text:
                no_default.append(f"{name} {flag}")
    assert undescribed == [] and no_default == []
    shown = found["videoseq predict"].format_help()
    assert "labels and scores per row (default: 5)" in " ".join(shown.split())


def test_threads_flag_sets_train_threads(gestures, tmp_path, monkeypatch):
    import videoseq.engine.trainer as trainer

    seen = {}
    monkeypatch.setattr(trainer, "fit",
                        lambda config, out, resume=False, overwrite=False: seen.update(threads=config.train.threads))
    config = tmp_path / "c.yaml"
    config.write_text("train: {epochs: 1}\n")
    assert main(["train", str(config), "--threads", "3", "--out", str(tmp_path / "r")]) == 0
    assert seen == {"threads": 3}
