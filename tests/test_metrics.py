import numpy as np
import pytest

from videoseq.metrics import (
    aggregate_by_video,
    classification_metrics,
    mean_class_accuracy,
    per_class_table,
    plot_confusion,
    plot_curves,
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


def colour_centre(image: np.ndarray, rgb: tuple[float, float, float], tolerance: float = 2.5 / 255):
    """Pixel count and centre (x, y) of the pixels of one colour in an RGB(A) float image."""
    mask = (np.abs(image[..., :3] - np.asarray(rgb)) <= tolerance).all(axis=2)
    ys, xs = np.nonzero(mask)
    return len(xs), (xs.mean() if len(xs) else np.nan, ys.mean() if len(ys) else np.nan)


def test_the_confusion_plot_draws_each_cell_in_the_colour_of_its_row_share(tmp_path):
    import matplotlib.image as mpimg
    from matplotlib import colormaps

    cm = np.array([[3, 1], [0, 4]])  # row shares 0.75 0.25 / 0 1, drawn on a square-root scale
    image = mpimg.imread(plot_confusion(cm, ["a", "b"], tmp_path / "cm.png"))
    blues = colormaps["Blues"]
    cells = {(i, j): colour_centre(image, blues(np.sqrt(share))[:3])
             for (i, j), share in np.ndenumerate(cm / cm.sum(1, keepdims=True))}
    counts = [count for count, _ in cells.values()]
    assert min(counts) > 0.6 * max(counts) > 1000  # four blocks of about one size
    (x00, y00), (x01, y01), (x10, y10), (x11, y11) = (cells[k][1] for k in ((0, 0), (0, 1), (1, 0), (1, 1)))
    assert x00 < x01 and x10 < x11 and y00 < y10 and y01 < y11  # rows are true classes, columns predicted ones


def test_the_curves_show_the_validation_lines_only_when_validated(tmp_path):
    import matplotlib.image as mpimg

    train_blue, val_orange = (0x1F / 255, 0x77 / 255, 0xB4 / 255), (0xFF / 255, 0x7F / 255, 0x0E / 255)
    history = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 0.9, "val_clip_acc": 0.6},
               {"epoch": 2, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.7, "val_clip_acc": 0.7}]
    image = mpimg.imread(plot_curves(history, tmp_path / "curves.png"))
    assert image.shape[:2] == (400, 1000)  # loss and accuracy side by side, 10 x 4 inches at 100 dpi
    halves = image[:, :500], image[:, 500:]
    assert all(colour_centre(half, colour)[0] > 50 for half in halves for colour in (train_blue, val_orange))
    unvalidated = [{k: v for k, v in row.items() if not k.startswith("val")} for row in history]
    image = mpimg.imread(plot_curves(unvalidated, tmp_path / "train_only.png"))
    assert colour_centre(image, train_blue)[0] > 100 and colour_centre(image, val_orange)[0] == 0


from videoseq.metrics import (  # noqa: E402
    accuracy_interval,
    aggregate_views,
    expected_calibration_error,
    macro_f1,
    mcnemar_exact,
    most_confused_pairs,
    plot_per_class,
    rank_classes,
    ranked_metrics,
    topk_from_ranks,
)


def test_golden_confusion_matrix_and_ranked_metrics():
    ranked = rank_classes(SCORES, 3)
    assert ranked.tolist() == [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]]
    m = ranked_metrics(LABELS, ranked, SCORES.max(1), ["a", "b", "c"])
    # rows true a, b, c; columns predicted: a->a; b->c, b->b; c->a
    assert m["confusion"] == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    assert m["top1"] == 0.5 and m["top5"] == 1.0 and m["mean_class_acc"] == pytest.approx(0.5)
    # F1: a = 2/3 (p 1/2, r 1), b = 2/3 (p 1, r 1/2), c = 0 -> macro 4/9
    assert m["macro_f1"] == pytest.approx(4 / 9)
    assert m["most_confused"] == [{"true": "b", "predicted": "c", "count": 1, "share": 0.5},
                                  {"true": "c", "predicted": "a", "count": 1, "share": 1.0}]
    assert m["count"] == 4 and m["ece_bins"] == 15


def test_top2_from_ranks_and_too_few_ranks():
    ranked = rank_classes(SCORES, 2)
    assert topk_from_ranks(LABELS, ranked, 2, 3) == 1.0
    assert topk_from_ranks(LABELS, ranked[:, :1], 2, 4) is None
    assert topk_from_ranks(LABELS, ranked[:, :1], 5, 3) == 1.0  # k >= classes: always a hit


def test_ties_rank_the_lower_class_first_like_argmax():
    tied = np.array([[0.2, 0.4, 0.4, 0.0]])
    assert rank_classes(tied, 3).tolist() == [[1, 2, 0]] and tied.argmax(1)[0] == 1


def test_golden_view_aggregation():
    logits = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    videos = np.array([7, 7, 9])
    ids, mean_softmax = aggregate_views(logits, videos, "mean_softmax")
    assert ids.tolist() == [7, 9]
    np.testing.assert_allclose(mean_softmax[0], [0.690399, 0.309601], atol=1e-6)
    np.testing.assert_allclose(aggregate_views(logits, videos, "mean_logits")[1][0], [0.731059, 0.268941], atol=1e-6)
    np.testing.assert_allclose(aggregate_views(logits, videos, "max")[1][0], [0.880797, 0.5], atol=1e-6)
    np.testing.assert_allclose(mean_softmax[1], [0.047426, 0.952574], atol=1e-6)  # one view: its softmax
    with pytest.raises(ValueError, match="mean_softmax"):
        aggregate_views(logits, videos, "median")


def test_golden_ece_and_mcnemar():
    assert expected_calibration_error(np.array([0.9, 0.8, 0.3]), np.array([1, 0, 0]), bins=2) == pytest.approx(1 / 3)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == 0.0
    a = np.array([1, 0, 0, 0, 0, 0, 0, 1], bool)
    b = np.array([0, 1, 1, 1, 1, 1, 1, 1], bool)
    test = mcnemar_exact(a, b)  # 1 vs 6 discordant: p = 2 * (1 + 7) / 128
    assert (test["a_only"], test["b_only"], test["videos"]) == (1, 6, 8)
    assert test["p_value"] == pytest.approx(0.125)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval by its formula (Wilson 1927), to check scipy's against."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(8, 8), (0, 8), (70, 100), (1, 3)])
def test_accuracy_interval_is_the_wilson_interval_and_has_a_width_at_0_and_100_percent(k, n):
    lo, hi = accuracy_interval(np.array([1] * k + [0] * (n - k)))
    assert (lo, hi) == pytest.approx(wilson(k, n), abs=1e-6)
    assert 0 <= lo < k / n or k == 0
    assert k / n < hi <= 1 or k == n


def test_eight_of_eight_right_gives_the_worked_interval():
    assert accuracy_interval(np.ones(8)) == pytest.approx([0.6756, 1.0], abs=1e-4)
    assert accuracy_interval(np.zeros(8)) == pytest.approx([0.0, 0.3244], abs=1e-4)


def test_macro_f1_and_confused_pairs_skip_empty_cells():
    assert macro_f1(np.array([0, 0, 1]), np.array([0, 0, 1])) == 1.0
    cm = np.array([[5, 0], [0, 3]])
    assert most_confused_pairs(cm, ["a", "b"]) == []


def test_per_class_plot_at_101_classes(tmp_path):
    import matplotlib.image as mpimg

    rng = np.random.default_rng(0)
    table = [{"class": f"Class{i:03d}", "precision": float(p), "recall": float(r), "f1": float(2 * p * r / (p + r)),
              "support": 30} for i, (p, r) in enumerate(rng.uniform(0.2, 1.0, size=(101, 2)))]
    plot_per_class(table, tmp_path / "per_class.png")
    labels = rng.integers(0, 101, 3000)
    preds = np.where(rng.random(3000) < 0.7, labels, rng.integers(0, 101, 3000))
    from sklearn.metrics import confusion_matrix

    plot_confusion(confusion_matrix(labels, preds), [t["class"] for t in table], tmp_path / "cm.png")
    tall, square = mpimg.imread(tmp_path / "per_class.png"), mpimg.imread(tmp_path / "cm.png")
    assert tall.shape[0] >= 101 * 18  # at least 18 pixel rows per class: labels stay legible
    assert square.shape[0] >= 101 * 18 and square.shape[1] >= 101 * 18
