"""Per-frame torchvision CNNs behind one contract.

A backbone turns frames ``(B, T, C, H, W)`` into features ``(B, T, D)`` (global
average pooled) or ``(B, T, D, h, w)`` (spatial maps, for the ConvLSTM head).
``B * T`` is folded into the CNN batch in :meth:`FrameBackbone.forward` and
nowhere else.

Any classification model of ``torchvision.models.list_models(module=torchvision.models)``
is a backbone, cut at a named *stage* with a channel count ``D`` and a stride (a
64x64 frame at stride 32 gives a 2x2 map). Six models are listed by hand in
:data:`BACKBONES` (their trunks are ``nn.Sequential`` slices, whose parameter names
checkpoints hold); every other one is cut with torchvision's FX feature extraction
at stages named by stride, ``stride4`` .. ``last`` (see :mod:`videoseq.models.fx_cut`),
or at any graph node that gives a map. Mean and std come from the model's weights.
Example::

    >>> bb = FrameBackbone("resnet18", stage="layer3", spatial=True)
    >>> bb(torch.zeros(2, 3, 3, 64, 64)).shape   # (B, T, 256, 64/16, 64/16)
    torch.Size([2, 3, 256, 4, 4])
    >>> FrameBackbone("regnet_y_400mf", stage="stride8").feature_dim
    104
"""

from __future__ import annotations

import copy
import difflib
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from videoseq.errors import InputError, UsageError
from videoseq.models.fx_cut import Stage, cut_at_node, find_stages, measure_node

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


LIST_MODELS = 'python -c "import torchvision; print(torchvision.models.list_models(module=torchvision.models))"'
OFFLINE_HINT = "set model.pretrained to a local .pth file path (a torchvision state_dict) or to false"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one torchvision model and where it may be cut.

    ``trunk`` gives the ``nn.Sequential`` a hand-listed model is sliced from; None for
    a model cut at its stages' graph nodes.
    """

    builder: Callable[..., nn.Module]
    weights: tvm.WeightsEnum | None
    trunk: Callable[[nn.Module], nn.Sequential] | None
    stages: dict[str, Stage]
    default_stage: str


@dataclass(frozen=True)
class Preprocessing:
    """What a model's weights expect: mean / std, and (as information) the eval resize and centre crop."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_size: int | None
    crop_size: int | None
    source: str  # the weights, or why ImageNet's statistics stand in


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
        f"layer{i}": Stage(channels=64 * 2 ** (i - 1) * expansion, stride=2 ** (i + 1), depth=4 + i)
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
        {"stride8": Stage(24, 8, depth=4), "stride16": Stage(48, 16, depth=9), "last": Stage(576, 32, depth=13)},
        "last",
    ),
    "mobilenet_v3_large": BackboneSpec(
        tvm.mobilenet_v3_large,
        tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        features_trunk,
        {"stride8": Stage(40, 8, depth=7), "stride16": Stage(112, 16, depth=13), "last": Stage(960, 32, depth=17)},
        "last",
    ),
    "efficientnet_b0": BackboneSpec(
        tvm.efficientnet_b0,
        tvm.EfficientNet_B0_Weights.IMAGENET1K_V1,
        features_trunk,
        {"stride8": Stage(40, 8, depth=4), "stride16": Stage(112, 16, depth=6), "last": Stage(1280, 32, depth=9)},
        "last",
    ),
}


def backbone_names() -> list[str]:
    """Every name ``model.backbone`` takes: torchvision's classification models."""
    return tvm.list_models(module=tvm)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name``; an unknown name lists close matches and how to list them all."""
    if name in BACKBONES:
        return BACKBONES[name]
    if name not in backbone_names():
        close = difflib.get_close_matches(name, backbone_names(), n=5, cutoff=0.5)
        raise UsageError(f"unknown backbone {name!r}; close matches: {close}; model.backbone takes any "
                         f"torchvision classification model, list them with: {LIST_MODELS}")
    return traced_spec(name)


@cache
def traced_spec(name: str) -> BackboneSpec:
    """A model outside :data:`BACKBONES`: stages found on its FX graph, weights its DEFAULT ones."""
    return BackboneSpec(tvm.get_model_builder(name), default_weights(name), None, find_stages(name), "last")


def default_weights(name: str) -> tvm.WeightsEnum | None:
    """torchvision's DEFAULT weights of model ``name``; None when it has none."""
    try:
        return tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def resolve_stage(name: str, stage: str | None) -> Stage:
    """The :class:`Stage` called ``stage`` of backbone ``name`` (None: its default).

    An FX-cut backbone also takes any node name of its graph whose output is a map.
    """
    spec = get_backbone_spec(name)
    stage = spec.default_stage if stage is None else stage
    if stage in spec.stages:
        return spec.stages[stage]
    cut = measure_node(name, stage) if spec.trunk is None else None
    if cut is None:
        nodes = (" or a node of torchvision.models.feature_extraction.get_graph_node_names(model) whose output "
                 "is an (N, C, H, W) map") if spec.trunk is None else ""
        raise UsageError(f"unknown stage {stage!r} for backbone {name!r}; valid stages: {list(spec.stages)}{nodes}")
    return cut


def preprocessing(name: str) -> Preprocessing:
    """Mean / std and eval resize / crop from the weights of backbone ``name`` (ImageNet's when it has none)."""
    return weights_preprocessing(get_backbone_spec(name).weights, name)


def weights_preprocessing(weights: tvm.WeightsEnum | None, name: str) -> Preprocessing:
    """What ``weights`` expect, read from their transforms; ImageNet's mean / std, with a warning, for None."""
    if weights is None:
        source = f"ImageNet mean / std: torchvision has no weights for {name!r}"
        warnings.warn(f"backbone {name!r}: {source}", stacklevel=2)
        return Preprocessing(IMAGENET_MEAN, IMAGENET_STD, None, None, source)
    transforms = weights.transforms()  # an ImageClassification preset; builds no model, downloads nothing
    return Preprocessing(tuple(map(float, transforms.mean)), tuple(map(float, transforms.std)),
                         transforms.resize_size[0], transforms.crop_size[0], str(weights))


def build_with_weights(name: str, spec: BackboneSpec) -> nn.Module:
    """The model with torchvision's weights (its builder downloads them, cached under ``$TORCH_HOME``)."""
    if spec.weights is None:
        raise UsageError(f"backbone {name!r} has no torchvision weights; {OFFLINE_HINT}")
    try:
        return spec.builder(weights=spec.weights, progress=True)
    except OSError as err:  # URLError, socket and HTTP errors are all OSErrors
        raise InputError(f"could not download weights {spec.weights!r} for backbone {name!r} ({err}); "
                           f"when offline, {OFFLINE_HINT}") from err


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def read_weights_file(path: str | Path, what: str, error: type[Exception] = InputError) -> Any:
    """``torch.load(weights_only=True)`` of a file the user named; every failure is one ``error`` naming it.

    Anything that would need arbitrary unpickling is refused with a message, never run.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} {'is a folder, not a file' if path.is_dir() else 'does not exist'}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise error(f"{what} {path} holds objects other than tensors and plain types; refused without unpickling "
                    f"them (only load files you trust with other tools): {str(err).splitlines()[0]}") from None
    except Exception as err:  # truncated or not a torch file at all
        raise error(f"{what} {path} cannot be read: {_unreadable(path, err)}") from None


def _unreadable(path: Path, err: BaseException) -> str:
    """Why ``torch.load`` failed, in words: not a PyTorch file at all, or a damaged one."""
    if isinstance(err, OSError):
        return f"{err.strerror or err}; check that you may read it"
    with path.open("rb") as f:
        head = f.read(4)
    if head != ZIP_MAGIC:
        return f"it is not a PyTorch file (it starts with {head!r}, not the zip archive torch.save writes)"
    reason = " ".join(str(err).split())[:200]
    return f"the file is damaged or incomplete ({type(err).__name__}: {reason}); copy it again"


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a torchvision state_dict saved with ``torch.save(model.state_dict(), path)``."""
    state = read_weights_file(path, "model.pretrained weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"model.pretrained weights file {path} does not hold a state dict (names -> tensors); "
                         "save one with torch.save(model.state_dict(), path)")
    return state


def build_torchvision_model(name: str, pretrained: bool | str | Path) -> nn.Module:
    """The full torchvision classifier, with weights as ``pretrained`` asks.

    ``False`` (or None): random init, and every BatchNorm momentum is reset to 0.1 (see
    :class:`FrameBackbone`). ``True``: torchvision's weights (the spec's; built by the
    model's builder, which also sets what the weights need, such as googlenet's
    ``transform_input``). A path: a local torchvision state_dict file, loaded strictly.
    """
    spec = get_backbone_spec(name)
    if pretrained is True:
        return build_with_weights(name, spec)
    model = spec.builder(weights=None)
    if not pretrained:
        reset_batchnorm_momentum(model, 0.1)
        return model
    state, own = read_state_dict_file(pretrained), model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise InputError(f"weights from {pretrained} do not fit backbone {name!r}: {len(missing)} missing keys "
                         f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}, {len(wrong)} of another "
                         f"shape {wrong[:3]}; pass the state dict of a torchvision {name}")
    model.load_state_dict(state)
    return model


def cut_trunk(spec: BackboneSpec, model: nn.Module, stage: Stage) -> nn.Module:
    """The part of ``model`` that runs up to ``stage``: ``(N, 3, H, W)`` -> ``(N, D, h, w)``."""
    if stage.node is not None:
        return cut_at_node(model, stage.node)
    return spec.trunk(model)[: stage.depth]


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
        name: a torchvision classification model (:func:`backbone_names`).
        pretrained: ``False`` (random init), ``True`` (torchvision's weights,
            downloaded when online) or a path to a local torchvision
            state_dict ``.pth`` file.
        stage: where to cut the CNN (``get_backbone_spec(name).stages``, or a graph
            node of an FX-cut model); None is the last stage.
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
        self.preprocessing = preprocessing(name)
        self.mean: tuple[float, ...] = self.preprocessing.mean
        self.std: tuple[float, ...] = self.preprocessing.std
        self.trunk = cut_trunk(spec, build_torchvision_model(name, pretrained), cut)
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

    def __deepcopy__(self, memo: dict) -> FrameBackbone:
        """A copy in this backbone's mode: copying an FX trunk rebuilds it in train mode."""
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return copied.train(self.training)

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
