import base64
import csv
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from videoseq.cli import main
from videoseq.errors import InputError
from videoseq.evaluation import (
    from_scores,
    parse_views,
    prediction_table,
    read_predictions,
    run_metrics,
)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def multi_view_eval(tiny_run, tmp_path_factory):
    """The tiny model evaluated with 2 clips x 3 crops, per-view rows, through the CLI."""
    out = tmp_path_factory.mktemp("eval23")
    assert main(["eval", str(tiny_run / "best.pt"), "--out", str(out), "--views", "2x3", "--per-view",
                 "--workers", "0", "--aggregate", "mean_logits"]) == 0
    return out


def test_parse_views():
    assert parse_views("10x3") == (10, 3) and parse_views("5") == (5, 1) and parse_views(4) == (4, 1)
    for bad in ("10x2", "0x1", "axb", "2x3x1"):
        with pytest.raises(ValueError, match="--views"):
            parse_views(bad)


def test_predictions_round_trip_through_the_csv(tmp_path):
    scores = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    preds = from_scores(scores, np.array([1, 2]), ["a.avi", "b.avi"], ["video", "video"], ["x", "y", "z"])
    from videoseq.tables import write_csv

    write_csv(tmp_path / "p.csv", *prediction_table(preds))
    back = read_predictions(tmp_path / "p.csv")  # no classes.txt: names seen, sorted
    assert back.classes == ["x", "y", "z"] and back.ranked.tolist() == [[1, 2, 0], [0, 1, 2]]
    assert back.scores.tolist() == [[0.6, 0.3, 0.1], [0.5, 0.25, 0.25]] and back.labels.tolist() == [1, 2]
    assert back.metrics() == preds.metrics()


def test_external_predictions_without_view_column_and_bad_labels(tmp_path):
    path = tmp_path / "elsewhere.csv"
    path.write_text("path,label,label_1,score_1\nv1,run,run,0.9\nv2,jump,run,0.6\nv3,jump,jump,0.7\n")
    report = run_metrics(path)
    assert report["video"]["top1"] == pytest.approx(2 / 3) and report["video"]["top5"] == 1.0  # 2 classes
    assert report["classes"] == ["jump", "run"] and "clip" not in report
    (tmp_path / "classes.txt").write_text("run\n")
    with pytest.raises(InputError, match="line 3: label 'jump' is not in the class list"):
        read_predictions(path)
    (tmp_path / "broken.csv").write_text("path,label_1\nv1,run\n")
    with pytest.raises(InputError, match="missing \\['label', 'score_1'\\]"):
        read_predictions(tmp_path / "broken.csv")


def test_eval_writes_every_output_with_views_and_per_view_rows(multi_view_eval, tiny_run):
    for name in ("report.json", "report.html", "per_class.csv", "per_class.png", "confusion.csv", "confusion.png",
                 "predictions.csv", "classes.txt"):
        assert (multi_view_eval / name).is_file(), name
    report = json.loads((multi_view_eval / "report.json").read_text())
    assert report["views"] == "2x3" and report["aggregate"] == "mean_logits"
    assert report["config"]["data"]["frames"] == 4
    rows = read_rows(multi_view_eval / "predictions.csv")
    videos = [r for r in rows if r["view"] == "video"]
    views = [r for r in rows if r["view"] != "video"]
    assert len(views) == 6 * len(videos) == 6 * report["video"]["count"]
    assert {r["view"] for r in views} == {f"t{t}c{c}" for t in range(2) for c in range(3)}
    assert report["clip"]["count"] == len(views)
    assert set(report["single_view"]) >= {"top1", "top5", "mean_class_acc", "macro_f1", "ece", "top1_ci95"}
    for name in ("top1", "top5", "mean_class_acc", "macro_f1", "ece"):
        assert 0 <= report["video"][name] <= 1
    assert report["video"]["top1_ci95"][0] <= report["video"]["top1"] <= report["video"]["top1_ci95"][1]


def test_eval_metrics_equal_metrics_recomputed_from_its_predictions(multi_view_eval, tmp_path, capsys):
    capsys.readouterr()
    assert main(["metrics", str(multi_view_eval / "predictions.csv"), "--out", str(tmp_path / "again")]) == 0
    assert "top1" in capsys.readouterr().out
    original = json.loads((multi_view_eval / "report.json").read_text())
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["video"] == original["video"]
    assert again["clip"] == original["clip"]
    assert (tmp_path / "again" / "confusion.csv").read_text() == (multi_view_eval / "confusion.csv").read_text()
    assert (tmp_path / "again" / "per_class.csv").read_text() == (multi_view_eval / "per_class.csv").read_text()


def test_report_html_is_self_contained_and_its_images_decode(multi_view_eval):
    from PIL import Image

    page = (multi_view_eval / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "Headline metrics" in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 2
    for encoded in images:
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        image.load()
        pixels = np.asarray(image.convert("L"))
        assert min(image.size) >= 300 and pixels.std() > 10  # a real picture, not a blank
    for name in ("confusion.png", "per_class.png"):
        assert Image.open(multi_view_eval / name).size[0] >= 300


def test_metrics_errors_name_the_file(tmp_path, capsys):
    assert main(["metrics", str(tmp_path / "none.csv")]) == 1  # an input that fails
    assert "none.csv" in capsys.readouterr().err
    assert main(["eval", "x.pt", "--views", "3x2"]) == 2
    assert "--views" in capsys.readouterr().err


@pytest.mark.slow
def test_report_html_renders_headless(multi_view_eval, tmp_path):
    """Render report.html with a headless Chromium and check the screenshot shows the page."""
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine")
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,2400", (multi_view_eval / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    inked = (pixels.sum(axis=2) < 600).mean()  # text, tables and figures, not a blank page
    blue = (pixels[..., 2] > pixels[..., 0] + 60).mean()  # the Blues confusion matrix was drawn
    assert inked > 0.03 and blue > 0.002
