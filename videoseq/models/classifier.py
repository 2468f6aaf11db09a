"""A video classifier: a per-frame backbone followed by a temporal head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoseq.errors import UsageError
from videoseq.models.backbones import FrameBackbone
from videoseq.models.heads import check_head_args, get_head_class
from videoseq.models.motion import shift_modules, step_frames


class VideoClassifier(nn.Module):
    """``backbone`` turns frames into features, ``head`` turns features into logits.

    ``forward`` takes a clip ``(B, T, C, H, W)``; ``init_state`` / ``step`` run
    one frame at a time (for cameras and streams) when ``supports_step`` is True,
    and give the same logits as ``forward`` on the frames seen so far.
    """

    def __init__(self, backbone: FrameBackbone, head: nn.Module) -> None:
        super().__init__()
        if backbone.spatial != head.spatial:
            raise ValueError(
                f"backbone spatial={backbone.spatial} does not match head {type(head).__name__} "
                f"spatial={head.spatial}"
            )
        self.backbone = backbone
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def supports_step(self) -> bool:
        return bool(getattr(self.head, "supports_step", False))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> ``(B, T, D)`` or ``(B, T, D, h, w)``."""
        return self.backbone(x)

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Independent frames ``(N, C, H, W)`` -> ``(N, D)`` or ``(N, D, h, w)`` (one streaming step)."""
        return self.backbone.forward_frames(frames)

    def step_frames(self, frames: torch.Tensor, cache: list[torch.Tensor] | None
                    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """One kept frame of each stream ``(N, C, H, W)`` -> its features and the cache for the next frame.

        The cache is the online temporal shift's: the previous frame's shifted channels at
        every shift (``models.motion.step_frames``); None for a model without a shift.
        """
        if not shift_modules(self.backbone):
            return self.forward_frames(frames), None
        return step_frames(self.backbone, frames, cache)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame features -> ``(B, num_classes)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def _require_step(self) -> None:
        if not self.supports_step:
            raise UsageError(
                f"head {type(self.head).__name__} cannot run frame by frame (supports_step=False); "
                "use a unidirectional gru/lstm or convlstm head, or sliding-window prediction"
            )

    def init_state(self, batch: int, device: torch.device | str) -> Any:
        """The head's initial recurrent state for streaming."""
        self._require_step()
        return self.head.init_state(batch, device)

    def step(self, frame: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One frame ``(B, C, H, W)`` -> logits ``(B, num_classes)`` and the new state."""
        self._require_step()
        features_t = self.backbone.forward_frames(frame)  # (B, D) or (B, D, h, w)
        return self.head.step(features_t, state)


def build_model(
    *,
    backbone: str,
    head: str,
    num_classes: int,
    pretrained: bool | str | Path = False,
    stage: str | None = None,
    freeze_backbone: bool = False,
    freeze_bn: bool = False,
    head_args: dict[str, Any] | None = None,
) -> VideoClassifier:
    """Build a :class:`VideoClassifier` from registry names.

    The head decides whether the backbone returns pooled or spatial features.
    ``head_args`` are the head's keyword arguments (e.g. ``{"hidden": 128}``);
    an unknown key is an error naming the valid ones.
    """
    head_class = get_head_class(head)
    head_args = dict(head_args or {})
    check_head_args(head, head_args)
    frame_backbone = FrameBackbone(
        backbone,
        pretrained=pretrained,
        stage=stage,
        spatial=head_class.spatial,
        freeze=freeze_backbone,
        freeze_bn=freeze_bn,
    )
    return VideoClassifier(frame_backbone, head_class(frame_backbone.feature_dim, num_classes, **head_args))
