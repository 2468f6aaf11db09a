"""Classification metrics (scikit-learn underneath) and the pictures people read them from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from videoseq.outputs import save_figure


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true label is among the ``k`` highest scores."""
    num_classes = scores.shape[1]
    if k >= num_classes:
        return 1.0
    return float(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(num_classes)))


def mean_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """Mean over the classes present in ``labels`` of their recall (UCF/HMDB's 'mean class accuracy')."""
    cm = confusion_matrix(labels, preds, labels=np.arange(num_classes))
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """top-1, top-5 and mean class accuracy of ``scores`` (N, C) against ``labels`` (N,)."""
    preds = scores.argmax(axis=1)
    return {
        "top1": float(np.mean(preds == labels)),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_acc": mean_class_accuracy(labels, preds, scores.shape[1]),
    }


AGGREGATIONS = ("mean_softmax", "mean_logits", "max")
ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 ("On Calibration of Modern Neural Networks")
CI_METHOD, CI_LEVEL = "wilson", 0.95  # the accuracy's confidence interval: Wilson score, 95%


def aggregate_by_video(
    scores: np.ndarray, video_ids: np.ndarray, reduce: str = "sum"
) -> tuple[np.ndarray, np.ndarray]:
    """Sum (or ``mean``, ``max``) the clip rows of each video: ``(unique video ids, (V, C) scores)``."""
    videos, inverse = np.unique(video_ids, return_inverse=True)
    if reduce == "max":
        out = np.full((len(videos), scores.shape[1]), -np.inf)
        np.maximum.at(out, inverse, scores)
        return videos, out
    out = np.zeros((len(videos), scores.shape[1]), dtype=np.float64)
    np.add.at(out, inverse, scores)
    if reduce == "mean":
        out /= np.bincount(inverse)[:, None]
    elif reduce != "sum":
        raise ValueError(f"reduce {reduce!r} is not one of ['sum', 'mean', 'max']")
    return videos, out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, in float64."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def aggregate_views(logits: np.ndarray, video_ids: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """One (V, C) score row per video from the logits of its views.

    - ``mean_softmax``: mean of the views' probabilities (the usual multi-view testing);
    - ``mean_logits``: softmax of the mean logits;
    - ``max``: per class, the highest probability any view gave (rows need not sum to 1).

    Example, two views with logits ``[2, 0]`` and ``[0, 0]``: mean_softmax gives
    ``[0.690, 0.310]``, mean_logits ``softmax([1, 0]) = [0.731, 0.269]``, max ``[0.881, 0.5]``.
    """
    if method == "mean_softmax":
        return aggregate_by_video(softmax(logits), video_ids, "mean")
    if method == "mean_logits":
        videos, mean = aggregate_by_video(logits, video_ids, "mean")
        return videos, softmax(mean)
    if method == "max":
        return aggregate_by_video(softmax(logits), video_ids, "max")
    raise ValueError(f"aggregation {method!r} is not one of {list(AGGREGATIONS)}")


def rank_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best class ids per row, best first; ties go to the lower class id (like argmax)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def topk_from_ranks(labels: np.ndarray, ranked: np.ndarray, k: int, num_classes: int) -> float | None:
    """Top-k accuracy from ranked class ids (N, >=k); None when fewer than ``k`` ranks were kept."""
    if k >= num_classes:
        return 1.0
    if ranked.shape[1] < k:
        return None
    return float(np.mean(np.any(ranked[:, :k] == labels[:, None], axis=1)))


def macro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """F1 averaged over the classes present in ``labels`` (like mean class accuracy)."""
    return float(f1_score(labels, preds, labels=np.unique(labels), average="macro", zero_division=0))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width bins ``(lo, hi]`` of ``|accuracy - mean confidence|`` weighted by the bin's share.

    Example, 2 bins: confidences ``[0.9, 0.8, 0.3]`` with correct ``[1, 0, 0]`` -> the
    upper bin has accuracy 0.5 and confidence 0.85, the lower 0 and 0.3:
    ``2/3 * 0.35 + 1/3 * 0.3 = 0.3333``.
    """
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    correct = np.asarray(correct, dtype=np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    for b in np.unique(which):
        inside = which == b
        ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def accuracy_interval(correct: np.ndarray, level: float = CI_LEVEL) -> list[float]:
    """Wilson score interval of the accuracy of a 0/1 ``correct`` vector (scipy's ``proportion_ci``).

    Unlike a bootstrap or the normal approximation it stays honest at 0% and 100%:
    8 of 8 right gives [0.676, 1.0], not [1, 1]; 0 of 8 gives [0.0, 0.324].
    """
    correct = np.asarray(correct, dtype=bool)
    if not len(correct):
        return [0.0, 1.0]
    interval = binomtest(int(correct.sum()), len(correct)).proportion_ci(confidence_level=level, method=CI_METHOD)
    return [float(interval.low), float(interval.high)]


def most_confused_pairs(cm: np.ndarray, classes: Sequence[str], k: int = 10) -> list[dict]:
    """The ``k`` largest off-diagonal cells: true class, predicted class, count, share of the true class."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    support = cm.sum(axis=1)
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), cm.shape[1])
        if off[i, j] == 0:
            break
        pairs.append({"true": classes[i], "predicted": classes[j], "count": int(off[i, j]),
                      "share": float(off[i, j] / support[i])})
    return pairs


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test: a two-sided binomial test on the videos exactly one model got right.

    ``a_only``/``b_only`` count the discordant videos; under "equally good" each is
    Binomial(a_only + b_only, 1/2). Example: 1 vs 6 -> p = 2 * (1 + 7) / 2**7 = 0.125.
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    p = 1.0 if n == 0 else float(binomtest(min(a_only, b_only), n, 0.5).pvalue)
    return {"videos": int(len(a)), "a_only": a_only, "b_only": b_only, "p_value": p}


def ranked_metrics(labels: np.ndarray, ranked: np.ndarray, confidence: np.ndarray, classes: Sequence[str]) -> dict:
    """Every metric of the report from ranked predictions alone.

    ``labels`` (N,) true class ids, ``ranked`` (N, k) class ids best first, ``confidence``
    (N,) the score of the best class. Needing only these makes ``videoseq metrics`` on a
    ``predictions.csv`` give exactly what ``videoseq eval`` computed.
    """
    n = len(classes)
    preds = ranked[:, 0]
    correct = preds == labels
    cm = confusion_matrix(labels, preds, labels=np.arange(n))
    return {
        "count": int(len(labels)),
        "top1": float(correct.mean()),
        "top1_ci95": accuracy_interval(correct),
        "top5": topk_from_ranks(labels, ranked, 5, n),
        "mean_class_acc": mean_class_accuracy(labels, preds, n),
        "macro_f1": macro_f1(labels, preds),
        "ece": expected_calibration_error(confidence, correct),
        "ece_bins": ECE_BINS,
        "ci": {"method": CI_METHOD, "level": CI_LEVEL},
        "per_class": per_class_table(labels, preds, classes),
        "most_confused": most_confused_pairs(cm, classes),
        "confusion": cm.tolist(),
    }


def per_class_table(labels: np.ndarray, preds: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Per-class precision, recall, F1 and support."""
    p, r, f, s = precision_recall_fscore_support(
        labels, preds, labels=np.arange(len(classes)), zero_division=0
    )
    return [
        {"class": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(classes)
    ]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix, readable at 101 classes.

    The figure grows with the class count (about 0.2 inch a cell, so labels keep a
    legible size), and a square-root colour scale keeps rare confusions visible.
    Counts are written in the cells up to 20 classes.
    """
    from matplotlib.colors import PowerNorm

    plt = _pyplot()
    n = len(classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(max(6.0, 0.2 * n + 3.5), 40.0)
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(norm, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0, vmax=1))
    cell_points = (side - 3.5) / max(n, 1) * 72
    fontsize = max(4.0, min(10.0, 0.7 * cell_points))
    ax.set_xticks(range(n), classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), classes, fontsize=fontsize)
    if n > 20:  # faint grid every 10 classes to follow rows and columns
        for edge in range(10, n, 10):
            ax.axhline(edge - 0.5, color="0.85", linewidth=0.5)
            ax.axvline(edge - 0.5, color="0.85", linewidth=0.5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix (rows normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_per_class(table: list[dict], path: str | Path, title: str = "") -> Path:
    """Per-class F1 bars, worst class on top, with precision and recall marks and the support."""
    plt = _pyplot()
    rows = sorted(table, key=lambda r: (-r["f1"], r["class"]))
    n = len(rows)
    y = np.arange(n)
    fig, ax = plt.subplots(figsize=(8, min(max(3.0, 0.2 * n + 1.5), 40.0)))
    fontsize = 9 if n <= 40 else 7
    ax.barh(y, [r["f1"] for r in rows], color="#9ecae1", label="F1")
    ax.plot([r["precision"] for r in rows], y, "|", color="#08519c", markersize=8, mew=2, label="precision")
    ax.plot([r["recall"] for r in rows], y, "o", color="#e6550d", markersize=4, label="recall")
    ax.set_yticks(y, [f"{r['class']} ({r['support']})" for r in rows], fontsize=fontsize)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("score (class support in brackets)")
    ax.grid(axis="x", color="0.9")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8, frameon=False)
    ax.set_title(title or "per-class F1, worst on top", pad=22)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss and accuracy per epoch from the training history rows."""
    plt = _pyplot()

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    if any("val_loss" in h for h in history):
        left.plot(epochs, [h.get("val_loss", np.nan) for h in history], marker="o", label="val")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [h["train_acc"] for h in history], marker="o", label="train acc")
    for key, label in (("val_clip_acc", "val clip acc"), ("val_video_acc", "val video acc"),
                       ("val_bleu4", "val BLEU-4")):
        if any(key in h for h in history):
            right.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=label)
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1.02)
    right.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return Path(path)


def bleu_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 (sacrebleu, in [0, 1]) of one hypothesis per clip against its references.

    Text is compared as given, split on spaces (``tokenize="none"``): pass captions
    through ``text.normalize_caption`` first so both sides are tokenised alike. Clips
    may have different numbers of references.
    """
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need one reference list per hypothesis, got {len(hypotheses)} and {len(references)}")
    if any(not refs for refs in references):
        raise ValueError("every clip needs at least one reference caption")
    most = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    return {
        f"bleu{n}": round(BLEU(tokenize="none", max_ngram_order=n, effective_order=False).corpus_score(
            list(hypotheses), streams).score / 100.0, 6)
        for n in range(1, 5)
    }


# CIDEr-D and METEOR come from the COCO caption evaluation code (pycocoevalcap) when it is
# installed: CIDEr-D is pure Python, METEOR runs its bundled jar and needs `java` on PATH.
OPTIONAL_CAPTION_METRICS = ("cider_d", "meteor")


def coco_caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    """CIDEr-D and METEOR where their implementations can run here, else why not.

    Returns ``(scores, missing)``: ``missing`` maps each metric not computed to the reason.
    """
    import shutil

    scores: dict[str, float] = {}
    missing: dict[str, str] = {}
    res = {i: [h] for i, h in enumerate(hypotheses)}
    gts = {i: list(r) for i, r in enumerate(references)}
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        return {}, {m: "pycocoevalcap is not installed (pip install pycocoevalcap)" for m in OPTIONAL_CAPTION_METRICS}
    scores["cider_d"] = float(Cider().compute_score(gts, res)[0])
    if shutil.which("java") is None:
        missing["meteor"] = "METEOR runs a Java jar: install a Java runtime"
    else:
        from pycocoevalcap.meteor.meteor import Meteor

        try:
            scores["meteor"] = float(Meteor().compute_score(gts, res)[0])
        except Exception as err:  # the jar failed (missing paraphrase data, JVM error): report, go on
            missing["meteor"] = f"METEOR failed: {err}"
    return scores, missing


def caption_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """BLEU-1..4 always; CIDEr-D / METEOR when available (``missing`` says why not)."""
    scores = bleu_scores(hypotheses, references)
    extra, missing = coco_caption_scores(hypotheses, references)
    return {**scores, **extra, "missing": missing} if missing else {**scores, **extra}
