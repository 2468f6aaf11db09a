"""The misclassified videos of an evaluation, worst first, each with the strip of frames the model saw."""

import base64
import re

import cv2
import numpy as np
import pytest

from videoseq.cli import main
from videoseq.misclassified import STRIP_HEIGHT, frame_strip, jpeg_data_uri, misclassified_rows, viewable
from videoseq.tables import read_csv


def test_rows_are_the_wrong_top_labels_most_confident_first():
    classes = ["a", "b", "c"]
    labels = np.array([0, 1, 2, 0])
    ranked = np.array([[0, 1], [0, 1], [1, 0], [2, 1]])  # right, wrong (true 2nd), wrong (true absent), wrong
    scores = np.array([[0.9, 0.1], [0.6, 0.3], [0.8, 0.1], [0.5, 0.4]])
    rows = misclassified_rows(["v0", "v1", "v2", "v3"], classes, labels, ranked, scores)
    assert [r["path"] for r in rows] == ["v2", "v1", "v3"]
    assert rows[0] == {"path": "v2", "label": "c", "predicted": "b", "confidence": 0.8, "true_rank": None,
                       "true_score": None}
    assert rows[1]["true_rank"] == 2 and rows[1]["true_score"] == 0.3


def test_a_strip_puts_the_frames_side_by_side_at_the_thumbnail_height():
    clip = np.zeros((3, 32, 48, 3), dtype=np.uint8)
    clip[1] = 255
    strip = frame_strip(clip, height=16)
    assert strip.shape == (16, 3 * 24, 3)
    assert strip[:, :24].max() == 0 and strip[:, 24:48].min() == 255 and strip[:, 48:].max() == 0
    decoded = decode_uri(jpeg_data_uri(strip))
    assert decoded.shape == strip.shape and np.abs(decoded.astype(int) - strip).mean() < 4


def test_a_motion_clip_is_shown_as_its_first_part_flow_in_colour_by_direction():
    still, right, left = (np.full((8, 8, 2), 128, np.uint8) for _ in range(3))
    right[..., 0], left[..., 0] = 178, 78  # +50 / -50 quantised units along x
    flow = viewable(np.stack([still, right, left]), "flow")
    assert flow.shape == (3, 8, 8, 3) and flow.dtype == np.uint8
    assert flow[0].max() == 0 and flow[1].max() > 64 and flow[2].max() > 64  # no motion is black
    assert not np.array_equal(flow[1], flow[2])  # opposite directions, other hues
    rgb = np.arange(2 * 4 * 4 * 5, dtype=np.uint8).reshape(2, 4, 4, 5)  # rgb+flow: the RGB frames first
    assert np.array_equal(viewable(rgb, "rgb+flow"), rgb[..., :3])


def decode_uri(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    data = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), dtype=np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def tiny_eval(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    assert main(["eval", str(tiny_run / "best.pt"), "--out", str(out), "--workers", "0"]) == 0
    return out


def test_report_html_lists_every_misclassified_video_worst_first_with_the_frames_it_saw(tiny_eval):
    _, rows = read_csv(tiny_eval / "predictions.csv")
    wrong = sorted((r for r in rows if r["label_1"] != r["label"]), key=lambda r: (-float(r["score_1"]), r["path"]))
    assert wrong, "a one-epoch model gets some of the 9 classes wrong"
    page = (tiny_eval / "report.html").read_text()
    table = page.split("<table class='misclassified'>")[1].split("</table>")[0]
    listed = re.findall(r"<tr><td class='num'>\d+</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>"
                        r"<td class='num'>([\d.]+)</td>", table)
    assert [(p, t, w) for p, t, w, _ in listed] == [(r["path"], r["label"], r["label_1"]) for r in wrong]
    assert [float(c) for *_, c in listed] == pytest.approx([float(r["score_1"]) for r in wrong], abs=1e-3)
    strips = re.findall(r"<img class='strip' alt='frames' src='([^']+)'>", table)
    assert len(strips) == len(wrong)
    frames = decode_uri(strips[0])  # 4 frames of 32 x 32, each scaled to the thumbnail height
    assert frames.shape == (STRIP_HEIGHT, 4 * STRIP_HEIGHT, 3) and frames.std() > 1


def test_report_json_lists_them_too_and_metrics_recomputes_the_list(tiny_eval, tmp_path):
    import json

    report = json.loads((tiny_eval / "report.json").read_text())
    assert main(["metrics", str(tiny_eval / "predictions.csv"), "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "report.json").read_text())
    assert report["misclassified"] == again["misclassified"] and report["misclassified"]
    assert "<table class='misclassified'>" in (tmp_path / "report.html").read_text()
