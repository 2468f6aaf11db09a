"""Motion in the per-frame backbone: motion-image input channels and temporal shift (TSM).

Both are applied to a built :class:`FrameBackbone`, in place:

- ``adapt_input(backbone, channels, mean, std, pretrained)`` replaces the first
  convolution with one taking ``channels`` input channels (``2 L`` for ``L`` stacked
  flow fields). With ImageNet weights its filters start as the average of the RGB
  filters over the three colour channels, repeated on every input channel (TSN's
  cross-modality initialisation); from scratch it gets torchvision's own init.
- ``insert_temporal_shift(backbone, mode, fraction, placement)`` wraps every residual
  block of the trunk with a :class:`TemporalShift` (Lin et al., TSM): a fraction of
  the channels is exchanged between neighbouring frames, which gives a 2D CNN
  temporal reasoning at no extra FLOPs. ``bidirectional`` (offline) moves ``fraction``
  of the channels one frame back in time and as many one frame forward; ``online``
  moves ``fraction`` from the previous frame only, so a stream can run one frame at a
  time keeping the previous frame's shifted channels as a cache (``step_frames``).
  ``placement="residual"`` shifts inside the residual branch only (the shortcut keeps
  the frame's own features; TSM's choice), ``"inplace"`` shifts the block's input.

The shift needs the clip length: a forward pre-hook on the backbone tells every shift
module ``T`` from the ``(B, T, C, H, W)`` clip before the trunk folds ``B * T``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.efficientnet import MBConv
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from videoseq.errors import UsageError
from videoseq.models.backbones import FrameBackbone

SHIFT_MODES = ("bidirectional", "online")
PLACEMENTS = ("residual", "inplace")
# Where the residual branch of each kind of block starts (a dotted path inside the block).
RESIDUAL_BRANCH: dict[type, str] = {BasicBlock: "conv1", Bottleneck: "conv1", InvertedResidual: "block.0",
                                    MBConv: "block.0"}


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def first_conv(trunk: nn.Module) -> tuple[str, nn.Conv2d]:
    """The dotted name and module of the first convolution of ``trunk`` (the one that sees the input)."""
    for name, module in trunk.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise UsageError(f"{type(trunk).__name__} has no Conv2d to adapt to motion input channels")


def adapt_input(backbone: FrameBackbone, channels: int, mean: tuple[float, ...], std: tuple[float, ...], *,
                pretrained: bool) -> FrameBackbone:
    """Make ``backbone`` take ``channels`` input channels normalised with ``mean`` / ``std`` (in place).

    ``pretrained``: initialise the new filters TSN's way from the existing (ImageNet)
    ones; otherwise initialise them afresh (kaiming, as torchvision does).
    """
    if len(mean) != channels or len(std) != channels:
        raise UsageError(f"need one mean and std per input channel ({channels}), got {len(mean)} and {len(std)}")
    backbone.mean, backbone.std = tuple(mean), tuple(std)
    name, old = first_conv(backbone.trunk)
    if old.in_channels == channels:
        return backbone
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                    dilation=old.dilation, groups=old.groups, bias=old.bias is not None)
    with torch.no_grad():
        if pretrained:
            average = old.weight.mean(dim=1, keepdim=True)  # (out, 1, k, k)
            new.weight.copy_(average.expand(-1, channels, -1, -1))
            if old.bias is not None:
                new.bias.copy_(old.bias)
        else:
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
            if new.bias is not None:
                nn.init.zeros_(new.bias)
    new.requires_grad_(old.weight.requires_grad)
    _set_submodule(backbone.trunk, name, new)
    return backbone


def shift_clip(x: torch.Tensor, segments: int, fold: int, mode: str) -> torch.Tensor:
    """Shift channels along time: ``(B*T, C, H, W)`` with ``T = segments`` -> the same shape.

    Channels ``[0, fold)`` come from the previous frame (zeros at the first); in
    ``bidirectional`` mode channels ``[fold, 2 fold)`` come from the next frame (zeros at
    the last). The other channels stay.
    """
    nt, c, h, w = x.shape
    clips = x.view(nt // segments, segments, c, h, w)  # (B, T, C, H, W)
    zeros = clips.new_zeros(clips.shape[0], 1, fold, h, w)
    past = torch.cat([zeros, clips[:, :-1, :fold]], dim=1)  # frame t gets frame t-1's channels
    if mode == "online":
        return torch.cat([past, clips[:, :, fold:]], dim=2).view(nt, c, h, w)
    future = torch.cat([clips[:, 1:, fold:2 * fold], zeros], dim=1)  # frame t gets frame t+1's channels
    return torch.cat([past, future, clips[:, :, 2 * fold:]], dim=2).view(nt, c, h, w)


class TemporalShift(nn.Module):
    """Shift a fraction of the input channels along time, then run ``inner``.

    ``segments`` (the clip length) is set before every clip forward by the backbone's
    pre-hook. In step mode (``step_frames``) the input is one frame per clip and
    ``cache`` holds the previous frame's first ``fold`` channels (None: a first frame).
    """

    def __init__(self, inner: nn.Module, channels: int, *, fraction: float = 0.125, mode: str = "bidirectional"):
        super().__init__()
        if mode not in SHIFT_MODES:
            raise UsageError(f"temporal shift mode {mode!r} is not one of {list(SHIFT_MODES)}")
        self.inner, self.mode = inner, mode
        self.fold = max(1, int(channels * fraction))
        if (2 if mode == "bidirectional" else 1) * self.fold > channels:
            raise UsageError(f"shift fraction {fraction} moves more than the {channels} channels of a block")
        self.segments = 1
        self.stepping = False
        self.cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stepping:  # x: (B, C, H, W), one frame of each clip
            previous = self.cache if self.cache is not None else x.new_zeros(x.shape[0], self.fold, *x.shape[2:])
            self.cache = x[:, :self.fold]
            return self.inner(torch.cat([previous, x[:, self.fold:]], dim=1))
        return self.inner(shift_clip(x, self.segments, self.fold, self.mode))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, fold={self.fold}"


def _block_channels(block: nn.Module) -> int:
    """Input channels of a residual block: those of its first convolution."""
    return first_conv(block)[1].in_channels


def _tell_clip_length(backbone: nn.Module, args: tuple) -> None:
    """Forward pre-hook: every shift module learns ``T`` of the ``(B, T, C, H, W)`` clip."""
    for module in backbone.modules():
        if isinstance(module, TemporalShift):
            module.segments = args[0].shape[1]


def insert_temporal_shift(backbone: FrameBackbone, *, mode: str = "bidirectional", fraction: float = 0.125,
                          placement: str = "residual") -> FrameBackbone:
    """Wrap every residual block of ``backbone.trunk`` with a :class:`TemporalShift` (in place).

    ``residual``: the shift goes in front of the block's residual branch (mobilenet and
    efficientnet blocks without a shortcut are left alone, as TSM does); ``inplace``:
    in front of the whole block. Returns ``backbone``; the number of shifts is
    ``len(shift_modules(backbone))``.
    """
    if placement not in PLACEMENTS:
        raise UsageError(f"temporal shift placement {placement!r} is not one of {list(PLACEMENTS)}")
    blocks = [(name, m) for name, m in backbone.trunk.named_modules() if type(m) in RESIDUAL_BRANCH]
    if not blocks:
        raise UsageError(f"backbone {backbone.name!r} cut at {backbone.stage!r} has no residual block "
                         f"({sorted(t.__name__ for t in RESIDUAL_BRANCH)}) to shift")
    for name, block in blocks:
        channels = _block_channels(block)
        if placement == "inplace":
            _set_submodule(backbone.trunk, name, TemporalShift(block, channels, fraction=fraction, mode=mode))
        elif getattr(block, "use_res_connect", True):
            branch = RESIDUAL_BRANCH[type(block)]
            shifted = TemporalShift(block.get_submodule(branch), channels, fraction=fraction, mode=mode)
            _set_submodule(block, branch, shifted)
    backbone.register_forward_pre_hook(_tell_clip_length)
    return backbone


def shift_modules(module: nn.Module) -> list[TemporalShift]:
    """The temporal shift modules inside ``module``, in forward order."""
    return [m for m in module.modules() if isinstance(m, TemporalShift)]


def step_frames(backbone: FrameBackbone, frames: torch.Tensor, cache: list[torch.Tensor] | None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One frame per stream through an online-shift backbone: ``(B, C, H, W)`` -> features, new cache.

    ``cache`` is what the previous call returned (None at a stream's first frame): the
    shifted channels of the previous frame at every shift module, ``[(B, fold, h, w), ...]``.
    Frame by frame this gives the features a clip forward gives each frame (BatchNorm
    in eval mode).
    """
    shifts = shift_modules(backbone)
    if any(s.mode != "online" for s in shifts):
        raise UsageError("a bidirectional temporal shift needs the next frame; stream with "
                         "model.temporal_shift=online")
    previous: list[Any] = list(cache) if cache is not None else [None] * len(shifts)
    try:
        for shift, held in zip(shifts, previous):
            shift.stepping, shift.cache = True, held
        features = backbone.forward_frames(frames)  # (B, D) or (B, D, h, w)
        return features, [shift.cache for shift in shifts]
    finally:
        for shift in shifts:
            shift.stepping, shift.cache = False, None
