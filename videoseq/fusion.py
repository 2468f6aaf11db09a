"""Two-stream late fusion: class probabilities of several models, weighted and averaged.

TSN fuses its RGB and optical-flow streams 1 : 1.5. Each stream is a model trained on
its own (an RGB model, a flow model) that scores the same videos; the fused score of a
video is ``sum_i w_i p_i / sum_i w_i`` over the streams' softmax probabilities ``p_i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fuse_scores(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of per-stream probabilities, each ``(N, C)`` over the same videos in the same order."""
    if len(scores) != len(weights) or not scores:
        raise ValueError(f"late fusion needs one weight per stream, got {len(scores)} streams and "
                         f"{len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"fusion weights must be >= 0 with a positive sum, got {list(weights)}")
    shapes = {np.shape(s) for s in scores}
    if len(shapes) != 1:
        raise ValueError(f"the streams scored different sets of videos or classes: shapes {sorted(shapes)}")
    return sum(w * np.asarray(s, dtype=np.float64) for w, s in zip(weights, scores)) / sum(weights)
