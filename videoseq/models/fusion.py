"""Two-stream late fusion as one model: an RGB model and a motion model (or more streams) scoring together.

TSN fuses its RGB and optical-flow streams 1 : 1.5. The fused model is a
:class:`VideoClassifier` like any other, so eval, predict, streaming and export take it
through their usual interface:

- its input is the streams' inputs stacked on the channel axis, ``(B, T, C1 + C2, H, W)``
  (``data.modality: rgb+flow``: 3 RGB channels, then 2 per flow field), normalised with
  the streams' own means and stds side by side (``FusedBackbone.mean`` / ``std``);
- its per-frame features are the streams' features side by side, ``(N, D1 + D2)``, so a
  stream keeps one buffer and each kept frame is one pass of every stream's backbone;
- its logits are the log of the weighted mean of the streams' softmax probabilities,
  ``log(sum_i w_i p_i / sum_i w_i)``: their softmax is exactly the fused probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from videoseq.errors import UsageError
from videoseq.models.classifier import VideoClassifier


class FusedBackbone(nn.Module):
    """The streams' backbones side by side: each reads its own channels, their features are concatenated."""

    def __init__(self, backbones: Sequence[nn.Module], channels: Sequence[int]) -> None:
        super().__init__()
        if len(backbones) != len(channels) or len(backbones) < 2:
            raise UsageError(f"fusion needs two or more streams with their input channels, got {len(backbones)} "
                             f"backbones and channels {list(channels)}")
        spatial = {b.spatial for b in backbones}
        if spatial != {False}:
            raise UsageError("fusion takes streams whose heads read pooled features (mean, gru, lstm heads); "
                             "a spatial head (convlstm) cannot share a feature buffer with another stream")
        self.streams = nn.ModuleList(backbones)
        self.channels = [int(c) for c in channels]
        self.spatial = False
        self.feature_dims = [b.feature_dim for b in backbones]
        self.feature_dim = sum(self.feature_dims)
        self.mean = tuple(m for b in backbones for m in b.mean)
        self.std = tuple(s for b in backbones for s in b.std)
        self.name = "+".join(b.name for b in backbones)

    def split(self, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
        if x.shape[dim] != sum(self.channels):
            per_stream = " + ".join(map(str, self.channels))
            raise UsageError(f"the fused model takes {sum(self.channels)} channels ({per_stream} per stream), "
                             f"got {x.shape[dim]}")
        return torch.split(x, self.channels, dim=dim)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C1 + C2, H, W)`` -> ``(N, D1 + D2)``."""
        return torch.cat([b.forward_frames(part) for b, part in zip(self.streams, self.split(x, 1))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C1 + C2, H, W)`` -> ``(B, T, D1 + D2)`` (a temporal shift inside a stream sees the whole clip)."""
        return torch.cat([b(part) for b, part in zip(self.streams, self.split(x, 2))], dim=2)


class FusedHead(nn.Module):
    """The streams' heads on their slices of the features; the weighted mean of their probabilities, as log."""

    spatial = False

    def __init__(self, heads: Sequence[nn.Module], feature_dims: Sequence[int], weights: Sequence[float]) -> None:
        super().__init__()
        check_weights(weights, len(heads))
        classes = {h.num_classes for h in heads}
        if len(classes) != 1:
            raise UsageError(f"the streams predict different numbers of classes: {sorted(classes)}")
        self.heads = nn.ModuleList(heads)
        self.feature_dims = [int(d) for d in feature_dims]
        self.weights = [float(w) for w in weights]
        self.num_classes = classes.pop()
        self.supports_step = all(getattr(h, "supports_step", False) for h in heads)
        total = sum(self.weights)
        log_w = [math.log(w / total) if w > 0 else -math.inf for w in self.weights]
        self.register_buffer("log_weights", torch.tensor(log_w).view(-1, 1, 1), persistent=False)  # (S, 1, 1)

    def fuse(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-stream logits, each ``(B, C)`` -> ``log(sum_i w_i softmax_i)``, ``(B, C)``."""
        log_p = torch.stack([z.float().log_softmax(dim=-1) for z in logits])  # (S, B, C)
        return torch.logsumexp(log_p + self.log_weights, dim=0)  # (B, C)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D1 + D2)`` -> fused log-probabilities ``(B, C)``."""
        parts = torch.split(features, self.feature_dims, dim=2)
        return self.fuse([h(part) for h, part in zip(self.heads, parts)])

    def init_state(self, batch: int, device: torch.device | str) -> tuple[Any, ...]:
        return tuple(h.init_state(batch, device) for h in self.heads)

    def step(self, features_t: torch.Tensor, state: tuple[Any, ...]) -> tuple[torch.Tensor, tuple[Any, ...]]:
        """One frame's features ``(B, D1 + D2)`` -> fused log-probabilities ``(B, C)`` and the streams' states."""
        parts = torch.split(features_t, self.feature_dims, dim=1)
        outputs = [h.step(part, s) for h, part, s in zip(self.heads, parts, state)]
        return self.fuse([logits for logits, _ in outputs]), tuple(s for _, s in outputs)


def check_weights(weights: Sequence[float], streams: int) -> None:
    """One weight per stream, each >= 0, with a positive sum."""
    if len(weights) != streams:
        raise UsageError(f"fusion needs one weight per stream: {streams} streams, {len(weights)} weights "
                         f"({list(weights)})")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UsageError(f"fusion weights must be >= 0 with a positive sum, got {list(weights)}")


def fuse_models(models: Sequence[VideoClassifier], channels: Sequence[int],
                weights: Sequence[float]) -> VideoClassifier:
    """One :class:`VideoClassifier` of several trained classifiers (each reading ``channels[i]`` input channels)."""
    backbone = FusedBackbone([m.backbone for m in models], channels)
    return VideoClassifier(backbone, FusedHead([m.head for m in models], backbone.feature_dims, weights))
