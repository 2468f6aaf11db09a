"""The misclassified videos of an evaluation, worst first, and a strip of the frames the model saw for each.

Worst first means the most confident mistakes first: the rows are sorted by the
score of the wrong top label, highest first. A strip is the first test view of the
video as the model received it (after the eval preset's resize and centre crop),
its frames side by side and scaled to ``STRIP_HEIGHT`` pixels, as a JPEG data URI
that ``report.html`` embeds, so the page stays one self-contained file. A motion
model's strip shows the first part of its input: the RGB frames of a fused model,
flow fields in the usual colour code (hue: direction, brightness: speed), RGB
differences as grey-centred images.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

from videoseq.datasets import ClipDataset
from videoseq.flow import ZERO_LEVEL, modality_parts

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


def viewable(clip: np.ndarray, modality: str) -> np.ndarray:
    """uint8 RGB frames ``(T, S, S, 3)`` of a clip's first input part ``(T, S, S, C)``: RGB as it is, the
    first flow field in colour (hue: direction, brightness: speed), the first RGB difference as it is."""
    part = modality_parts(modality)[0]
    if part != "flow":
        return np.ascontiguousarray(clip[..., :3])
    vectors = clip[..., :2].astype(np.float32) - ZERO_LEVEL  # (T, S, S, 2), quantised units
    speed, angle = cv2.cartToPolar(vectors[..., 0].reshape(-1), vectors[..., 1].reshape(-1), angleInDegrees=True)
    hsv = np.stack([angle.reshape(clip.shape[:3]) / 2, np.full(clip.shape[:3], 255.0),
                    np.clip(speed.reshape(clip.shape[:3]) * 2, 0, 255)], axis=-1).astype(np.uint8)
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_HSV2RGB) for frame in hsv])


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
        clip = sample["video"].permute(0, 2, 3, 1).numpy()  # (T, C, S, S) -> (T, S, S, C)
        modality = dataset.motion.modality if dataset.motion is not None else "rgb"
        strips[path] = jpeg_data_uri(frame_strip(viewable(clip, modality)))
    return strips
