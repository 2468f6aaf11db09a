import numpy as np
import pytest

from videoseq.metrics import (
    aggregate_by_video, classification_metrics, mean_class_accuracy, per_class_table, plot_confusion, plot_curves,
    topk_accuracy,
)

SCORES = np.array([
    [0.7, 0.2, 0.1],   # true 0, pred 0
    [0.1, 0.3, 0.6],   # true 1, pred 2 (1 is second)
    [0.2, 0.5, 0.3],   # true 1, pred 1
    [0.5, 0.1, 0.4],   # true 2, pred 0 (2 is second)
])
LABELS = np.array([0, 1, 1, 2])


def test_golden_top1_topk_and_mean_class_accuracy():
    assert topk_accuracy(SCORES, LABELS, 1) == pytest.approx(0.5)
    assert topk_accuracy(SCORES, LABELS, 2) == pytest.approx(1.0)
    # recalls: class 0 = 1/1, class 1 = 1/2, class 2 = 0/1 -> mean 0.5
    assert mean_class_accuracy(LABELS, SCORES.argmax(1), 3) == pytest.approx(0.5)
    m = classification_metrics(SCORES, LABELS)
    assert m == {"top1": pytest.approx(0.5), "top5": 1.0, "mean_class_acc": pytest.approx(0.5)}


def test_mean_class_accuracy_ignores_absent_classes():
    assert mean_class_accuracy(np.array([0, 0, 2]), np.array([0, 1, 2]), 4) == pytest.approx((0.5 + 1) / 2)


def test_video_aggregation_sums_clip_scores():
    ids, summed = aggregate_by_video(SCORES, np.array([5, 5, 9, 9]))
    assert ids.tolist() == [5, 9]
    assert np.allclose(summed[0], [0.8, 0.5, 0.7]) and np.allclose(summed[1], [0.7, 0.6, 0.7])


def test_per_class_table_matches_hand_counts():
    table = per_class_table(LABELS, SCORES.argmax(1), ["a", "b", "c"])
    assert table[0] == {"class": "a", "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert table[1]["precision"] == 1.0 and table[1]["recall"] == 0.5 and table[2]["support"] == 1


def test_plots_are_written(tmp_path):
    cm = np.array([[3, 1], [0, 4]])
    plot_confusion(cm, ["a", "b"], tmp_path / "cm.png")
    history = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 0.9, "val_clip_acc": 0.6},
               {"epoch": 2, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.7, "val_clip_acc": 0.7}]
    plot_curves(history, tmp_path / "curves.png")
    for name in ("cm.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
