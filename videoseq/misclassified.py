"""The misclassified videos of an evaluation, worst first, and a strip of the frames the model saw for each.

Worst first means the most confident mistakes first: the rows are sorted by the
score of the wrong top label, highest first. A strip is the first test view of the
video as the model received it (after the eval preset's resize and centre crop),
its frames side by side and scaled to ``STRIP_HEIGHT`` pixels, as a JPEG data URI
that ``report.html`` embeds, so the page stays one self-contained file.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

from videoseq.datasets import ClipDataset

STRIP_HEIGHT = 64  # pixels of each thumbnail
MAX_STRIPS = 100  # videos that get a strip in report.html (the worst ones); report.json lists every one
JPEG_QUALITY = 85


def misclassified_rows(paths: Sequence[str], classes: Sequence[str], labels: np.ndarray, ranked: np.ndarray,
                       scores: np.ndarray) -> list[dict]:
    """Every video whose top label is wrong, most confident mistake first.

    ``labels`` (N,) true class ids, ``ranked`` (N, k) class ids best first, ``scores``
    (N, k) their scores. Each row: ``path``, ``label``, ``predicted``, ``confidence``
    (the wrong label's score), ``true_rank`` (1-based rank of the true label among the
    top k, None when it is not among them) and ``true_score``.
    """
    rows = []
    for i in np.flatnonzero(ranked[:, 0] != labels):
        where = np.flatnonzero(ranked[i] == labels[i])
        rows.append({"path": paths[i], "label": classes[labels[i]], "predicted": classes[ranked[i, 0]],
                     "confidence": float(scores[i, 0]),
                     "true_rank": int(where[0]) + 1 if len(where) else None,
                     "true_score": float(scores[i, where[0]]) if len(where) else None})
    return sorted(rows, key=lambda r: (-r["confidence"], r["path"]))


def frame_strip(clip: np.ndarray, height: int = STRIP_HEIGHT) -> np.ndarray:
    """uint8 RGB frames ``(T, H, W, 3)`` side by side, each scaled to ``height`` rows: ``(height, T * w, 3)``."""
    width = max(1, round(clip.shape[2] * height / clip.shape[1]))
    return np.concatenate([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in clip], axis=1)


def jpeg_data_uri(image: np.ndarray) -> str:
    """An RGB image as a ``data:image/jpeg;base64,...`` URI."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a frame strip as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def clip_strips(dataset: ClipDataset, paths: Sequence[str], limit: int = MAX_STRIPS) -> dict[str, str]:
    """``{path: data URI}`` of the first test view of the first ``limit`` of ``paths`` (videos of ``dataset``).

    A video that no longer decodes gets no strip.
    """
    index = {path: v for v, (path, _) in enumerate(dataset.videos)}
    per_video = dataset.views * dataset.crops
    strips = {}
    for path in list(paths)[:limit]:
        if path not in index:
            continue
        sample = dataset[index[path] * per_video]  # view 0: temporal clip 0, crop 0
        if sample["error"]:
            continue
        clip = sample["video"].permute(0, 2, 3, 1).numpy()  # (T, 3, S, S) -> (T, S, S, 3)
        strips[path] = jpeg_data_uri(frame_strip(clip))
    return strips
