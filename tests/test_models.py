"""Backbones, heads and the classifier: shapes, gradients, freezing, streaming, weights."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from videoseq.errors import InputError, VideoseqError
from videoseq.models import BACKBONES, HEADS, FrameBackbone, VideoClassifier, build_model
from videoseq.models.backbones import batchnorm_layers
from videoseq.models.heads import ConvLSTMHead, GRUHead, LSTMHead, MeanHead

B, T, SIZE, NUM_CLASSES = 2, 3, 64, 5
FAST_BACKBONES = ["resnet18", "mobilenet_v3_small"]

# All heads on the two light backbones and every backbone with `mean` run by
# default; the rest of the backbone x head product is marked slow.
COMBOS = [
    pytest.param(
        backbone,
        head,
        marks=() if backbone in FAST_BACKBONES or head == "mean" else pytest.mark.slow,
    )
    for backbone in BACKBONES
    for head in HEADS
]


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def clip(batch: int = B, frames: int = T, size: int = SIZE) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size)  # (B, T, C, H, W)


def bn_buffers(module: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for bn in batchnorm_layers(module) for t in (bn.running_mean, bn.running_var)]


@pytest.mark.parametrize("backbone,head", COMBOS)
def test_every_backbone_and_head_gives_finite_logits_and_gradients(backbone: str, head: str) -> None:
    model = build_model(backbone=backbone, head=head, num_classes=NUM_CLASSES)
    logits = model(clip())
    assert logits.shape == (B, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_stage_gives_the_documented_channels_and_map_size(name: str) -> None:
    for stage_name, stage in BACKBONES[name].stages.items():
        backbone = FrameBackbone(name, stage=stage_name, spatial=True).eval()
        with torch.no_grad():
            features = backbone(clip(batch=1, frames=2))
        side = SIZE // stage.stride
        assert features.shape == (1, 2, stage.channels, side, side), stage_name
        assert backbone.feature_dim == stage.channels


def test_resnet18_stages_shrink_the_map_and_grow_the_channels() -> None:
    expected = {"layer1": (64, 16), "layer2": (128, 8), "layer3": (256, 4), "layer4": (512, 2)}
    for stage, (channels, side) in expected.items():
        features = FrameBackbone("resnet18", stage=stage, spatial=True)(clip())
        assert features.shape == (B, T, channels, side, side)


def test_pooled_features_are_the_spatial_mean() -> None:
    spatial = FrameBackbone("resnet18", spatial=True).eval()
    pooled = FrameBackbone("resnet18", spatial=False).eval()
    pooled.load_state_dict(spatial.state_dict())
    x = clip()
    with torch.no_grad():
        assert pooled(x).shape == (B, T, 512)
        torch.testing.assert_close(pooled(x), spatial(x).mean(dim=(3, 4)))


def test_backbone_exposes_imagenet_normalisation() -> None:
    backbone = FrameBackbone("mobilenet_v3_small")
    assert backbone.mean == (0.485, 0.456, 0.406)
    assert backbone.std == (0.229, 0.224, 0.225)
    assert backbone.feature_dim == 576


def test_forward_frames_matches_the_folded_clip_forward() -> None:
    backbone = FrameBackbone("resnet18").eval()
    x = clip()
    with torch.no_grad():
        per_frame = torch.stack([backbone.forward_frames(x[:, t]) for t in range(T)], dim=1)
        torch.testing.assert_close(backbone(x), per_frame, atol=1e-5, rtol=1e-4)


def test_freeze_keeps_the_backbone_fixed_and_in_eval_mode() -> None:
    model = build_model(backbone="resnet18", head="gru", num_classes=NUM_CLASSES, freeze_backbone=True)
    model.train()
    assert not model.backbone.training
    assert all(not m.training for m in model.backbone.modules())
    assert model.head.training
    before = bn_buffers(model.backbone)
    model(clip()).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, bn_buffers(model.backbone)))


def test_freeze_bn_freezes_only_batchnorm() -> None:
    model = build_model(backbone="mobilenet_v3_small", head="mean", num_classes=NUM_CLASSES, freeze_bn=True)
    model.train()
    layers = batchnorm_layers(model.backbone)
    assert layers and all(not bn.training for bn in layers)
    before = bn_buffers(model.backbone)
    model(clip()).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, bn_buffers(model.backbone)))
    assert all(p.grad is None for bn in layers for p in bn.parameters())
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert all(conv.weight.grad is not None for conv in convs)


def test_unfrozen_backbone_updates_batchnorm_stats_in_train_mode() -> None:
    backbone = FrameBackbone("resnet18").train()
    before = bn_buffers(backbone)
    backbone(clip())
    assert any(not torch.equal(a, b) for a, b in zip(before, bn_buffers(backbone)))


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="resnet18.*resnet50|resnet50.*resnet18"):
        FrameBackbone("resnet19")
    with pytest.raises(ValueError, match="layer1.*layer4"):
        FrameBackbone("resnet18", stage="layer5")
    with pytest.raises(ValueError, match="stride8.*last"):
        FrameBackbone("efficientnet_b0", stage="layer4")
    with pytest.raises(ValueError, match="convlstm.*gru.*lstm.*mean"):
        build_model(backbone="resnet18", head="transformer", num_classes=3)
    with pytest.raises(ValueError, match="'hiden'.*'hidden'"):
        build_model(backbone="resnet18", head="gru", num_classes=3, head_args={"hiden": 8})


def test_head_args_reach_the_head() -> None:
    model = build_model(
        backbone="mobilenet_v3_small",
        head="lstm",
        num_classes=3,
        head_args={"hidden": 16, "layers": 2, "bidirectional": True},
    )
    assert model.head.rnn.hidden_size == 16
    assert model.head.rnn.num_layers == 2
    assert model.head.fc.in_features == 32
    assert model(clip()).shape == (B, 3)


def test_head_decides_spatial_features() -> None:
    assert [name for name, cls in HEADS.items() if cls.spatial] == ["convlstm"]
    model = build_model(backbone="resnet18", head="convlstm", num_classes=3, stage="layer3")
    assert model.backbone.spatial
    assert model.forward_features(clip()).shape == (B, T, 256, 4, 4)
    assert not build_model(backbone="resnet18", head="gru", num_classes=3).backbone.spatial


def test_pooled_head_rejects_spatial_features_and_vice_versa() -> None:
    with pytest.raises(ValueError, match="gru"):
        GRUHead(8, 3)(torch.randn(B, T, 8, 2, 2))
    with pytest.raises(ValueError, match="convlstm"):
        ConvLSTMHead(8, 3)(torch.randn(B, T, 8))


def run_steps(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    state = head.init_state(features.shape[0], features.device)
    for t in range(features.shape[1]):
        logits, state = head.step(features[:, t], state)
    return logits


@pytest.mark.parametrize(
    "make_head,shape",
    [
        (lambda: GRUHead(16, NUM_CLASSES, hidden=12), (B, 6, 16)),
        (lambda: GRUHead(16, NUM_CLASSES, hidden=12, layers=2), (B, 6, 16)),
        (lambda: LSTMHead(16, NUM_CLASSES, hidden=12), (B, 6, 16)),
        (lambda: LSTMHead(16, NUM_CLASSES, hidden=12, layers=2), (B, 6, 16)),
        (lambda: ConvLSTMHead(16, NUM_CLASSES, hidden=8), (B, 6, 16, 4, 4)),
        (lambda: ConvLSTMHead(16, NUM_CLASSES, hidden=8, proj_channels=6), (B, 6, 16, 3, 5)),
    ],
    ids=["gru", "gru-2layers", "lstm", "lstm-2layers", "convlstm", "convlstm-proj"],
)
def test_streaming_step_matches_the_full_sequence(make_head, shape: tuple[int, ...]) -> None:
    head = make_head().eval()
    features = torch.randn(shape)
    with torch.no_grad():
        full = head(features)
        streamed = run_steps(head, features)
    assert head.supports_step
    assert (full - streamed).abs().max().item() <= 1e-5


def test_classifier_step_matches_forward_frame_by_frame() -> None:
    model = build_model(
        backbone="resnet18", head="convlstm", num_classes=NUM_CLASSES, head_args={"hidden": 8}
    )
    model.eval()
    x = clip()
    with torch.no_grad():
        full = model(x)
        state = model.init_state(B, "cpu")
        for t in range(T):
            logits, state = model.step(x[:, t], state)
    torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)


def test_whole_clip_heads_refuse_to_step() -> None:
    assert not MeanHead(8, 3).supports_step
    bidirectional = GRUHead(8, 3, bidirectional=True)
    assert not bidirectional.supports_step
    with pytest.raises(ValueError, match="bidirectional"):
        bidirectional.init_state(1, "cpu")
    model = build_model(backbone="mobilenet_v3_small", head="mean", num_classes=3)
    with pytest.raises(ValueError, match="supports_step"):
        model.init_state(1, "cpu")


def test_bidirectional_head_uses_forward_last_and_backward_first() -> None:
    head = GRUHead(8, 3, hidden=4, bidirectional=True).eval()
    features = torch.randn(B, T, 8)
    out, _ = head.rnn(features)  # (B, T, 2*hidden)
    expected = head.fc(torch.cat([out[:, -1, :4], out[:, 0, 4:]], dim=1))
    torch.testing.assert_close(head(features), expected)


def test_gru_sees_time_order_and_mean_does_not() -> None:
    features = torch.randn(B, 6, 16)  # (B, T, D)
    reversed_features = features.flip(dims=[1])
    gru, mean = GRUHead(16, NUM_CLASSES, hidden=12).eval(), MeanHead(16, NUM_CLASSES).eval()
    with torch.no_grad():
        assert (gru(features) - gru(reversed_features)).abs().max().item() > 1e-3
        torch.testing.assert_close(mean(features), mean(reversed_features))


def test_from_scratch_batchnorm_momentum_lets_eval_stats_move() -> None:
    backbone = FrameBackbone("mobilenet_v3_small").train()
    layers = batchnorm_layers(backbone)
    assert all(bn.momentum == 0.1 for bn in layers)
    first_bn = layers[0]
    seen: list[torch.Tensor] = []
    first_bn.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    x = clip()
    steps = 3
    for _ in range(steps):
        backbone(x)
    batch_mean = seen[0].mean(dim=(0, 2, 3))  # (C,): the same input every step
    # running_mean starts at 0 and moves a fraction `momentum` of the way each step
    expected = (1 - (1 - 0.1) ** steps) * batch_mean
    torch.testing.assert_close(first_bn.running_mean, expected, atol=1e-5, rtol=1e-4)
    # with torchvision's momentum 0.01 it would have moved ~10x less
    assert first_bn.running_mean.abs().sum() > 9 * ((1 - 0.99**steps) * batch_mean).abs().sum()


def test_pretrained_weights_keep_torchvision_momentum(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    backbone = FrameBackbone("mobilenet_v3_small", pretrained=str(path))
    assert all(bn.momentum == 0.01 for bn in batchnorm_layers(backbone))


@pytest.mark.parametrize("name,prefix", [("resnet18", ""), ("mobilenet_v3_small", "features.")])
def test_pretrained_file_loads_the_saved_state_dict(tmp_path: Path, name: str, prefix: str) -> None:
    saved = getattr(torchvision.models, name)().state_dict()
    path = tmp_path / f"{name}.pth"
    torch.save(saved, path)
    backbone = FrameBackbone(name, pretrained=path)
    trunk_state = backbone.trunk.state_dict()
    assert trunk_state
    for key, value in trunk_state.items():
        assert torch.equal(value, saved[prefix + key]), key


def test_pretrained_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.pth"):
        FrameBackbone("resnet18", pretrained=tmp_path / "missing.pth")
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(InputError, match=r"resnet18.pth do not fit backbone .mobilenet_v3_small.: \d+ missing keys"):
        FrameBackbone("mobilenet_v3_small", pretrained=path)


@pytest.mark.parametrize("name", ["resnet18", "regnet_x_400mf"])  # hand-listed and FX-cut
def test_offline_imagenet_download_explains_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """No network: the download fails inside torchvision and the error says what to set."""

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(VideoseqError, match=f"_Weights.*{name}.*model.pretrained.*local .pth"):
        FrameBackbone(name, pretrained=True)


def test_classifier_joins_backbone_and_head() -> None:
    model = build_model(backbone="mobilenet_v3_small", head="gru", num_classes=7, head_args={"hidden": 16})
    assert isinstance(model, VideoClassifier)
    assert model.num_classes == 7
    x = clip()
    features = model.forward_features(x)
    assert features.shape == (B, T, 576)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
