"""Any torchvision classifier as a backbone: FX-cut stages, weights' preprocessing, the six hand-listed trunks."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import torchvision
from test_models import SIZE, B, bn_buffers, clip
from torch import nn

from videoseq.checkpoint import checkpoint_payload, save_checkpoint
from videoseq.config import config_from_dict
from videoseq.errors import UsageError
from videoseq.export import TOLERANCE, export_checkpoint
from videoseq.models import BACKBONES, build_model
from videoseq.models.backbones import (
    FrameBackbone,
    batchnorm_layers,
    build_with_weights,
    get_backbone_spec,
    resolve_stage,
    weights_preprocessing,
)
from videoseq.models.fx_cut import find_stages

from conftest import informative_model

T, NUM_CLASSES = 2, 5  # two frames: the light end of a clip
SLOW = pytest.mark.slow

# FX-cut models (the six hand-listed ones have their own test in test_models.py), with their family;
# the heaviest to build are marked slow.
SAMPLE = [
    ("resnext50_32x4d", "resnet"), pytest.param("wide_resnet50_2", "resnet", marks=SLOW),
    pytest.param("resnet101", "resnet", marks=SLOW),
    ("mobilenet_v2", "mobilenet"),
    ("efficientnet_b1", "efficientnet"), pytest.param("efficientnet_v2_s", "efficientnet", marks=SLOW),
    ("regnet_x_400mf", "regnet"), ("regnet_y_400mf", "regnet"),
    ("convnext_tiny", "convnext"), pytest.param("convnext_small", "convnext", marks=SLOW),
    ("densenet121", "densenet"), ("shufflenet_v2_x0_5", "shufflenet"), ("squeezenet1_1", "squeezenet"),
    ("mnasnet0_5", "mnasnet"), ("googlenet", "googlenet"), ("alexnet", "alexnet"), ("swin_t", "swin"),
    pytest.param("vgg11_bn", "vgg", marks=SLOW), pytest.param("inception_v3", "inception", marks=SLOW),
]


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name,family", SAMPLE)
def test_sampled_torchvision_models_give_finite_features_and_gradients(name: str, family: str) -> None:
    size = 96 if name == "inception_v3" else SIZE  # its unpadded stem needs >= 75 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet / inception_v3 init notes
        model = build_model(backbone=name, head="mean", num_classes=NUM_CLASSES)
    features = model.forward_features(clip(frames=T, size=size))
    assert features.shape == (B, T, get_backbone_spec(name).stages["last"].channels)
    logits = model.forward_head(features)
    assert logits.shape == (B, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert [n for n, p in trainable if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for _, p in trainable)


@pytest.mark.parametrize("name", ["regnet_y_400mf", "convnext_tiny", "mobilenet_v2", "efficientnet_b1"])
def test_named_stages_give_their_channels_and_map_size(name: str) -> None:
    stages = get_backbone_spec(name).stages
    assert list(stages) == ["stride4", "stride8", "stride16", "last"]
    assert [s.stride for s in stages.values()] == [4, 8, 16, 32]
    for stage_name, stage in stages.items():
        backbone = FrameBackbone(name, stage=stage_name, spatial=True).eval()
        with torch.no_grad():
            maps = backbone(clip(batch=1, frames=T))
        side = SIZE // stage.stride
        assert maps.shape == (1, T, stage.channels, side, side), stage_name
        assert (backbone.feature_dim, backbone.stride) == (stage.channels, stage.stride)


def test_stages_are_the_published_stage_widths() -> None:
    """Channel counts from the papers' tables, not from the code that measures them."""
    published = {"regnet_y_400mf": [48, 104, 208, 440], "convnext_tiny": [96, 192, 384, 768],
                 "resnext50_32x4d": [256, 512, 1024, 2048], "densenet121": [256, 512, 1024, 1024]}
    for name, widths in published.items():
        assert [s.channels for s in get_backbone_spec(name).stages.values()] == widths, name
    assert [s.node for s in get_backbone_spec("regnet_y_400mf").stages.values()] == [
        "trunk_output.block1", "trunk_output.block2", "trunk_output.block3", "trunk_output"]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_the_fx_rule_finds_the_hand_listed_stages(name: str) -> None:
    """Each hand-listed stage is, by channels and stride, the stage the FX rule names for that stride."""
    found = {stage.stride: stage.channels for stage in find_stages(name).values()}
    for stage in BACKBONES[name].stages.values():
        assert found[stage.stride] == stage.channels, stage


def test_node_names_are_stages_too() -> None:
    stage = resolve_stage("regnet_y_400mf", "trunk_output.block2.block2-0")
    assert (stage.channels, stage.stride) == (104, 8)
    backbone = FrameBackbone("regnet_y_400mf", stage="trunk_output.block1.block1-0.f.b", spatial=True)
    assert backbone(clip(frames=T)).shape == (B, T, 48, SIZE // 4, SIZE // 4)
    assert (backbone.feature_dim, backbone.stride, backbone.stage) == (48, 4, "trunk_output.block1.block1-0.f.b")


def test_unknown_names_and_stages_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"'convnext_tinny'.*close matches: \['convnext_tiny'.*list_models"):
        FrameBackbone("convnext_tinny")
    with pytest.raises(ValueError, match=r"stride3.*'stride4', 'stride8', 'stride16', 'last'.*get_graph_node_names"):
        FrameBackbone("regnet_x_400mf", stage="stride3")
    for not_a_map in ("avgpool", "fc", "flatten", "trunk_output.block9"):
        with pytest.raises(ValueError, match="valid stages"):
            resolve_stage("regnet_x_400mf", not_a_map)
    with pytest.raises(ValueError, match=r"'layer1', 'layer2', 'layer3', 'layer4'\]$"):
        resolve_stage("resnet18", "stride8")  # hand-listed models keep their own names only


def test_models_without_a_growing_feature_map_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'vit_b_16' cannot be cut: it does not run on a 96x96 frame"):
        FrameBackbone("vit_b_16")


def test_swin_offers_its_patch_embedding_and_last_map() -> None:
    """Swin's inner stages are channels-last (N, H, W, C): only its NCHW maps are stages."""
    stages = get_backbone_spec("swin_t").stages
    assert {k: (s.node, s.channels, s.stride) for k, s in stages.items()} == {
        "stride4": ("features.0.0", 96, 4), "last": ("permute", 768, 32)}


def test_mean_and_std_come_from_the_weights_transforms() -> None:
    for name in ("efficientnet_v2_l", "regnet_y_400mf"):  # the first one normalises with 0.5 / 0.5
        weights = torchvision.models.get_model_weights(name).DEFAULT
        preset = weights.transforms()
        spec = get_backbone_spec(name)
        assert spec.weights == weights
        got = weights_preprocessing(spec.weights, name)
        assert (list(got.mean), list(got.std)) == (list(preset.mean), list(preset.std))
        assert (got.resize_size, got.crop_size) == (preset.resize_size[0], preset.crop_size[0])
    assert weights_preprocessing(get_backbone_spec("efficientnet_v2_l").weights, "efficientnet_v2_l").mean == (
        0.5, 0.5, 0.5)
    backbone = FrameBackbone("regnet_y_400mf")
    preset = torchvision.models.RegNet_Y_400MF_Weights.DEFAULT.transforms()
    assert (backbone.mean, backbone.std) == (tuple(preset.mean), tuple(preset.std))
    assert backbone.preprocessing.source == "RegNet_Y_400MF_Weights.IMAGENET1K_V2"
    assert (backbone.preprocessing.resize_size, backbone.preprocessing.crop_size) == (232, 224)


def test_hand_listed_models_keep_their_weights_and_imagenet_statistics() -> None:
    assert get_backbone_spec("resnet50").weights == torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    got = weights_preprocessing(get_backbone_spec("resnet50").weights, "resnet50")
    assert (got.mean, got.std, got.resize_size) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256)


def test_a_model_without_weights_falls_back_to_imagenet_and_says_so() -> None:
    with pytest.warns(UserWarning, match="'mymodel'.*ImageNet mean / std"):
        got = weights_preprocessing(None, "mymodel")
    assert (got.mean, got.std, got.resize_size) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), None)
    assert "no weights" in got.source
    spec = get_backbone_spec("regnet_x_400mf")
    no_weights = type(spec)(spec.builder, None, spec.trunk, spec.stages, spec.default_stage)
    with pytest.raises(UsageError, match="no torchvision weights.*model.pretrained"):
        build_with_weights("regnet_x_400mf", no_weights)


# The state-dict keys of the six hand-listed trunks are what checkpoints hold: torchvision's own
# names of the kept modules, without the "features." prefix for the features-sliced ones.
KEPT = {"resnet18": ("layer3", ["conv1.", "bn1.", "layer1.", "layer2.", "layer3."], ""),
        "resnet50": ("layer4", ["conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."], ""),
        "resnet34": ("layer2", ["conv1.", "bn1.", "layer1.", "layer2."], ""),
        "mobilenet_v3_small": ("stride16", [f"features.{i}." for i in range(9)], "features."),
        "mobilenet_v3_large": ("last", [f"features.{i}." for i in range(17)], "features."),
        "efficientnet_b0": ("stride8", [f"features.{i}." for i in range(4)], "features.")}


@pytest.mark.parametrize("name", list(KEPT))
def test_hand_listed_trunks_keep_their_state_dict_keys(name: str) -> None:
    stage, kept, prefix = KEPT[name]
    full = getattr(torchvision.models, name)().state_dict()
    expected = [key[len(prefix):] for key in full if key.startswith(tuple(kept))]
    backbone = FrameBackbone(name, stage=stage)
    assert list(backbone.trunk.state_dict()) == expected
    assert isinstance(backbone.trunk, nn.Sequential)
    old_checkpoint = {f"trunk.{key[len(prefix):]}": value for key, value in full.items() if key.startswith(tuple(kept))}
    backbone.load_state_dict(old_checkpoint)  # strict: a state dict in today's layout loads
    assert torch.equal(backbone.trunk.state_dict()[expected[0]], full[prefix + expected[0]])


def test_hand_listed_stage_table_is_unchanged() -> None:
    table = {name: {k: (s.channels, s.stride, s.depth) for k, s in spec.stages.items()}
             for name, spec in BACKBONES.items()}
    assert table["resnet18"] == {"layer1": (64, 4, 5), "layer2": (128, 8, 6), "layer3": (256, 16, 7),
                                 "layer4": (512, 32, 8)}
    assert table["resnet50"]["layer4"] == (2048, 32, 8)
    assert table["mobilenet_v3_small"] == {"stride8": (24, 8, 4), "stride16": (48, 16, 9), "last": (576, 32, 13)}
    assert table["mobilenet_v3_large"] == {"stride8": (40, 8, 7), "stride16": (112, 16, 13), "last": (960, 32, 17)}
    assert table["efficientnet_b0"] == {"stride8": (40, 8, 4), "stride16": (112, 16, 6), "last": (1280, 32, 9)}
    assert {name: spec.default_stage for name, spec in BACKBONES.items()} == {
        "resnet18": "layer4", "resnet34": "layer4", "resnet50": "layer4",
        "mobilenet_v3_small": "last", "mobilenet_v3_large": "last", "efficientnet_b0": "last"}


def test_fx_trunk_keeps_torchvision_parameter_names_and_loads_a_local_file(tmp_path: Path) -> None:
    saved = torchvision.models.regnet_x_400mf().state_dict()
    path = tmp_path / "regnet.pth"
    torch.save(saved, path)
    backbone = FrameBackbone("regnet_x_400mf", stage="stride16", pretrained=path)
    trunk_state = backbone.trunk.state_dict()
    assert "stem.0.weight" in trunk_state and not any(k.startswith(("fc.", "trunk_output.block4")) for k in trunk_state)
    for key, value in trunk_state.items():
        assert torch.equal(value, saved[key]), key


def test_pretrained_true_loads_the_weights_state_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The download itself needs a network: torchvision's fetch is replaced by a known state dict."""
    served = torchvision.models.mnasnet0_5().state_dict()
    asked: list[str] = []

    def fetch(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        asked.append(url)
        return served

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fetch)
    backbone = FrameBackbone("mnasnet0_5", pretrained=True)
    assert asked == [torchvision.models.MNASNet0_5_Weights.DEFAULT.url]
    assert all(torch.equal(v, served[k]) for k, v in backbone.trunk.state_dict().items())
    # pretrained keeps torchvision's BatchNorm momentum (1 - 0.9997 for MNASNet); from scratch it is 0.1
    assert {round(bn.momentum, 6) for bn in batchnorm_layers(backbone)} == {0.0003}
    assert {bn.momentum for bn in batchnorm_layers(FrameBackbone("mnasnet0_5"))} == {0.1}


def test_freezing_an_fx_trunk() -> None:
    model = build_model(backbone="regnet_x_400mf", head="gru", num_classes=NUM_CLASSES, freeze_backbone=True)
    model.train()
    assert not any(m.training for m in model.backbone.modules())
    before = bn_buffers(model.backbone)
    model(clip(frames=T)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, bn_buffers(model.backbone)))

    model = build_model(backbone="regnet_x_400mf", head="mean", num_classes=NUM_CLASSES, freeze_bn=True).train()
    layers = batchnorm_layers(model.backbone)
    assert layers and not any(bn.training for bn in layers)
    before = bn_buffers(model.backbone)
    model(clip(frames=T)).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, bn_buffers(model.backbone)))
    assert all(p.grad is None for bn in layers for p in bn.parameters())
    assert all(m.weight.grad is not None for m in model.backbone.modules() if isinstance(m, nn.Conv2d))


def test_fx_trunk_follows_train_and_eval_mode() -> None:
    """convnext's stochastic depth drops residual branches in train mode only."""
    backbone = FrameBackbone("convnext_tiny")
    x = clip(batch=4, frames=T)
    with torch.no_grad():
        train_a, train_b = backbone.train()(x), backbone(x)
        eval_a, eval_b = backbone.eval()(x), backbone(x)
    assert not torch.equal(train_a, train_b)
    assert torch.equal(eval_a, eval_b)
    copied = copy.deepcopy(backbone)  # the engine's weight averaging copies the model
    assert not any(m.training for m in copied.modules())
    with torch.no_grad():
        assert torch.equal(copied(x), eval_a)
    assert all(m.training for m in copy.deepcopy(backbone.train()).modules())


def test_one_frame_at_a_time_gives_the_clip_features_and_logits() -> None:
    model = informative_model("gru", {"hidden": 16}, frames=3, size=SIZE, backbone="regnet_x_400mf")
    x = clip(frames=3)
    with torch.no_grad():
        per_frame = torch.stack([model.forward_frames(x[:, t]) for t in range(3)], dim=1)  # (B, T, D)
        torch.testing.assert_close(per_frame, model.forward_features(x), atol=1e-5, rtol=1e-4)
        state = model.init_state(B, "cpu")
        for t in range(3):
            logits, state = model.step(x[:, t], state)
        torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-4)


def test_onnx_export_of_an_fx_cut_classifier_matches_pytorch(tmp_path: Path) -> None:
    config = config_from_dict({"data": {"frames": 3, "size": SIZE, "sampling": "dense", "stride": 1},
                               "model": {"backbone": "regnet_x_400mf", "stage": "stride16", "head": "gru",
                                         "head_args": {"hidden": 16}}})
    model = informative_model("gru", {"hidden": 16}, frames=3, size=SIZE, backbone="regnet_x_400mf",
                              stage="stride16")
    ckpt = save_checkpoint(tmp_path / "m.pt", checkpoint_payload(model, config, ["a", "b", "c"]))
    checks = export_checkpoint(ckpt, fmt="onnx", streaming=True)
    assert [c.part for c in checks] == ["clip", "frames", "head"]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = clip(batch=5, frames=3)
    got = session.run(None, {"frames": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std(0).max() > 1e-3  # the logits depend on the input
    assert np.abs(got - expected).max() <= TOLERANCE
