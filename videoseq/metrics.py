"""Classification metrics (scikit-learn underneath) and the pictures people read them from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score


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


def aggregate_by_video(scores: np.ndarray, video_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum the clip scores of each video: ``(unique video ids, (V, C) summed scores)``."""
    videos, inverse = np.unique(video_ids, return_inverse=True)
    summed = np.zeros((len(videos), scores.shape[1]), dtype=np.float64)
    np.add.at(summed, inverse, scores)
    return videos, summed


def per_class_table(labels: np.ndarray, preds: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Per-class precision, recall, F1 and support."""
    p, r, f, s = precision_recall_fscore_support(
        labels, preds, labels=np.arange(len(classes)), zero_division=0
    )
    return [
        {"class": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(classes)
    ]


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix; labels shrink so 101 classes stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(max(5.0, 0.25 * n + 3), 30.0)
    fig, ax = plt.subplots(figsize=(side, side))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fontsize = max(3, min(10, int(400 / max(n, 1))))
    ax.set_xticks(range(n), classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), classes, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix (rows normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss and accuracy per epoch from the training history rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=100)
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
