"""Per-frame torchvision CNNs behind one contract.

A backbone turns frames ``(B, T, C, H, W)`` into features ``(B, T, D)`` (global
average pooled) or ``(B, T, D, h, w)`` (spatial maps, for the ConvLSTM head).
``B * T`` is folded into the CNN batch in :meth:`FrameBackbone.forward` and
nowhere else.

Every backbone is cut at a named *stage*; the registry below lists, per model,
the stages available with their channel count ``D`` and their stride (so a
64x64 frame at stride 32 gives a 2x2 map). Example::

    >>> bb = FrameBackbone("resnet18", stage="layer3", spatial=True)
    >>> bb(torch.zeros(2, 3, 3, 64, 64)).shape   # (B, T, 256, 64/16, 64/16)
    torch.Size([2, 3, 256, 4, 4])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Stage:
    """A cut point: keep the first ``depth`` modules of the trunk."""

    depth: int
    channels: int
    stride: int


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one torchvision model and where it may be cut."""

    builder: Callable[..., nn.Module]
    weights: tvm.WeightsEnum
    trunk: Callable[[nn.Module], nn.Sequential]
    stages: dict[str, Stage]
    default_stage: str


def resnet_trunk(model: nn.Module) -> nn.Sequential:
    """The resnet stem and layer1..layer4, keeping torchvision's module names."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return nn.Sequential(OrderedDict((name, getattr(model, name)) for name in names))


def features_trunk(model: nn.Module) -> nn.Sequential:
    """The ``features`` block of mobilenet / efficientnet (indices 0..N-1)."""
    return model.features


def resnet_stages(expansion: int) -> dict[str, Stage]:
    """layer1..layer4 of a resnet; the stem takes the first 4 trunk modules."""
    return {
        f"layer{i}": Stage(depth=4 + i, channels=64 * 2 ** (i - 1) * expansion, stride=2 ** (i + 1))
        for i in range(1, 5)
    }


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(
        tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, resnet_trunk, resnet_stages(1), "layer4"
    ),
    "resnet34": BackboneSpec(
        tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1, resnet_trunk, resnet_stages(1), "layer4"
    ),
    "resnet50": BackboneSpec(
        tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, resnet_trunk, resnet_stages(4), "layer4"
    ),
    "mobilenet_v3_small": BackboneSpec(
        tvm.mobilenet_v3_small,
        tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
        features_trunk,
        {"stride8": Stage(4, 24, 8), "stride16": Stage(9, 48, 16), "last": Stage(13, 576, 32)},
        "last",
    ),
    "mobilenet_v3_large": BackboneSpec(
        tvm.mobilenet_v3_large,
        tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        features_trunk,
        {"stride8": Stage(7, 40, 8), "stride16": Stage(13, 112, 16), "last": Stage(17, 960, 32)},
        "last",
    ),
    "efficientnet_b0": BackboneSpec(
        tvm.efficientnet_b0,
        tvm.EfficientNet_B0_Weights.IMAGENET1K_V1,
        features_trunk,
        {"stride8": Stage(4, 40, 8), "stride16": Stage(6, 112, 16), "last": Stage(9, 1280, 32)},
        "last",
    ),
}


def get_backbone_spec(name: str) -> BackboneSpec:
    """Look up ``name`` in :data:`BACKBONES`; unknown names list the valid ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {sorted(BACKBONES)}")
    return BACKBONES[name]


def resolve_stage(name: str, stage: str | None) -> Stage:
    """The :class:`Stage` called ``stage`` of backbone ``name`` (None: its default)."""
    spec = get_backbone_spec(name)
    stage = spec.default_stage if stage is None else stage
    if stage not in spec.stages:
        raise ValueError(f"unknown stage {stage!r} for backbone {name!r}; valid stages: {list(spec.stages)}")
    return spec.stages[stage]


def download_imagenet_weights(name: str, weights: tvm.WeightsEnum) -> dict[str, torch.Tensor]:
    """Fetch torchvision's ImageNet state_dict (cached under ``$TORCH_HOME``)."""
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as err:  # URLError, socket and HTTP errors are all OSErrors
        raise RuntimeError(
            f"could not download ImageNet weights {weights!r} for backbone {name!r} ({err}); "
            "when offline, set model.pretrained to a local .pth file path (a torchvision "
            "state_dict) or to false"
        ) from err


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a torchvision state_dict saved with ``torch.save(model.state_dict(), path)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (model.pretrained)")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_torchvision_model(name: str, pretrained: bool | str | Path) -> nn.Module:
    """The full torchvision classifier, with weights as ``pretrained`` asks.

    ``False`` (or None): random init, and every BatchNorm momentum is reset to 0.1 (see
    :class:`FrameBackbone`). ``True``: torchvision's ImageNet weights.
    A path: a local torchvision state_dict file, loaded strictly.
    """
    spec = get_backbone_spec(name)
    model = spec.builder(weights=None)
    if not pretrained:
        reset_batchnorm_momentum(model, 0.1)
        return model
    if pretrained is True:
        state_dict, source = download_imagenet_weights(name, spec.weights), repr(spec.weights)
    else:
        state_dict, source = read_state_dict_file(pretrained), str(pretrained)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise RuntimeError(f"weights from {source} do not fit backbone {name!r}: {err}") from err
    return model


def reset_batchnorm_momentum(module: nn.Module, momentum: float) -> None:
    """Set the running-stat momentum of every BatchNorm layer inside ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = momentum


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer inside ``module``."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class FrameBackbone(nn.Module):
    """A torchvision CNN applied to every frame of a clip.

    Args:
        name: a key of :data:`BACKBONES`.
        pretrained: ``False`` (random init), ``True`` (torchvision ImageNet
            weights, downloaded when online) or a path to a local torchvision
            state_dict ``.pth`` file.
        stage: where to cut the CNN (see ``BACKBONES[name].stages``); None is
            the last stage.
        spatial: return ``(B, T, D, h, w)`` maps instead of pooled ``(B, T, D)``.
        freeze: no gradients into the backbone, and it stays in eval mode.
        freeze_bn: BatchNorm layers stay in eval mode and their affine
            parameters get no gradients; the rest of the backbone trains.

    When not pretrained, every BatchNorm momentum is reset to 0.1. torchvision's
    MobileNetV3 (and EfficientNet) use 0.01, tuned for long ImageNet runs; after
    a short from-scratch training the eval-mode running stats are still near
    their initial values and predictions collapse to a single class.
    """

    def __init__(
        self,
        name: str,
        *,
        pretrained: bool | str | Path = False,
        stage: str | None = None,
        spatial: bool = False,
        freeze: bool = False,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        spec = get_backbone_spec(name)
        cut = resolve_stage(name, stage)
        self.name = name
        self.stage = spec.default_stage if stage is None else stage
        self.spatial = spatial
        self.freeze = freeze
        self.freeze_bn = freeze_bn
        self.feature_dim: int = cut.channels
        self.stride: int = cut.stride
        self.mean: tuple[float, float, float] = IMAGENET_MEAN
        self.std: tuple[float, float, float] = IMAGENET_STD
        self.trunk = spec.trunk(build_torchvision_model(name, pretrained))[: cut.depth]
        self.pool = nn.Identity() if spatial else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self._freeze_parameters()
        self.train()

    def _freeze_parameters(self) -> None:
        """Turn off gradients as ``freeze`` / ``freeze_bn`` ask."""
        if self.freeze:
            self.trunk.requires_grad_(False)
        if self.freeze_bn:
            for layer in batchnorm_layers(self.trunk):
                layer.requires_grad_(False)

    def train(self, mode: bool = True) -> FrameBackbone:
        """Like ``nn.Module.train``, but frozen parts stay in eval mode."""
        super().train(mode)
        if self.freeze:
            super().train(False)
        elif self.freeze_bn:
            for layer in batchnorm_layers(self.trunk):
                layer.train(False)
        return self

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Features of independent frames: ``(N, C, H, W)`` -> ``(N, D)`` or ``(N, D, h, w)``."""
        return self.pool(self.trunk(x))  # (N, D) or (N, D, h, w)

    def forward(self, x: torch.Tensor, *, maps: bool = False) -> torch.Tensor:
        """Clip features: ``(B, T, C, H, W)`` -> ``(B, T, D)`` or ``(B, T, D, h, w)``.

        ``maps=True`` gives the maps ``(B, T, D, h, w)`` even when the backbone pools
        (a caption decoder that attends over positions reads them; their mean over
        ``h, w`` is the pooled feature).
        """
        if x.dim() != 5:
            raise ValueError(f"expected frames of shape (B, T, C, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        frames = x.flatten(0, 1)  # (B*T, C, H, W)
        features = self.trunk(frames) if maps else self.forward_frames(frames)  # (B*T, D[, h, w])
        return features.unflatten(0, (b, t))  # (B, T, D) or (B, T, D, h, w)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, stage={self.stage!r}, spatial={self.spatial}, "
            f"feature_dim={self.feature_dim}"
        )
