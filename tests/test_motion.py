import pytest
import torch
from torchvision import models as tvm

from videoseq.models.backbones import FrameBackbone, reset_batchnorm_momentum
from videoseq.models.heads import get_head_class
from videoseq.models.motion import (
    TemporalShift,
    adapt_input,
    first_conv,
    insert_temporal_shift,
    shift_clip,
    shift_modules,
    step_frames,
)

BACKBONES = [("resnet18", "layer2"), ("mobilenet_v3_small", "stride16")]


def calibrated(backbone: FrameBackbone, channels: int, frames: int = 5, size: int = 48) -> FrameBackbone:
    """Eval mode with BatchNorm statistics from data, so outputs depend on the input."""
    reset_batchnorm_momentum(backbone, None)
    with torch.no_grad():
        for _ in range(2):
            backbone(torch.randn(3, frames, channels, size, size))
    return backbone.eval()


@pytest.mark.parametrize("name,stage", BACKBONES)
def test_imagenet_filters_are_averaged_over_rgb_for_flow_channels(name, stage, tmp_path):
    weights = tmp_path / f"{name}.pth"
    torch.manual_seed(1)
    torch.save(getattr(tvm, name)().state_dict(), weights)  # a local torchvision state dict, as a user would pass
    rgb = FrameBackbone(name, pretrained=str(weights), stage=stage)
    old = first_conv(rgb.trunk)[1].weight.detach().clone()  # (out, 3, k, k)
    flow = adapt_input(FrameBackbone(name, pretrained=str(weights), stage=stage), 4, (0.5,) * 4, (0.2,) * 4,
                       pretrained=True)
    new = first_conv(flow.trunk)[1].weight
    assert new.shape == (old.shape[0], 4, *old.shape[2:])
    for c in range(4):
        assert torch.allclose(new[:, c], old.mean(dim=1))
    assert flow.mean == (0.5,) * 4 and flow.std == (0.2,) * 4
    out = flow(torch.randn(2, 3, 4, 48, 48))
    assert out.shape == (2, 3, flow.feature_dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,stage", BACKBONES)
def test_from_scratch_flow_filters_are_fresh_and_train(name, stage):
    backbone = adapt_input(FrameBackbone(name, stage=stage), 2, (0.5,) * 2, (0.2,) * 2, pretrained=False)
    weight = first_conv(backbone.trunk)[1].weight
    assert weight.shape[1] == 2 and not torch.allclose(weight[:, 0], weight[:, 1])
    backbone(torch.randn(2, 3, 2, 48, 48)).sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_mismatched_statistics_are_refused():
    with pytest.raises(ValueError, match="one mean and std per input channel"):
        adapt_input(FrameBackbone("resnet18", stage="layer1"), 2, (0.5,) * 3, (0.2,) * 3, pretrained=False)


def reference_shift(x: torch.Tensor, t: int, fold: int, mode: str) -> torch.Tensor:
    """The shift written frame by frame."""
    clips = x.view(-1, t, *x.shape[1:])
    out = clips.clone()
    for i in range(t):
        out[:, i, :fold] = clips[:, i - 1, :fold] if i > 0 else 0
        if mode == "bidirectional":
            out[:, i, fold:2 * fold] = clips[:, i + 1, fold:2 * fold] if i < t - 1 else 0
    return out.view_as(x)


@pytest.mark.parametrize("mode", ["bidirectional", "online"])
def test_shift_clip_matches_a_frame_by_frame_reference(mode):
    x = torch.randn(2 * 5, 16, 3, 3)
    assert torch.equal(shift_clip(x, 5, 2, mode), reference_shift(x, 5, 2, mode))


@pytest.mark.parametrize("name,stage,placement,count", [
    ("resnet18", "layer2", "residual", 4), ("resnet18", "layer2", "inplace", 4),
    ("mobilenet_v3_small", "stride16", "residual", 4), ("mobilenet_v3_small", "stride16", "inplace", 8),
])
def test_shifts_go_into_every_residual_block(name, stage, placement, count):
    backbone = insert_temporal_shift(FrameBackbone(name, stage=stage), placement=placement)
    shifts = shift_modules(backbone)
    assert len(shifts) == count and all(s.fold >= 1 for s in shifts)
    if name == "resnet18":  # residual: inside the block, before conv1; inplace: around the block
        assert all(isinstance(b.conv1 if placement == "residual" else b, TemporalShift)
                   for layer in (backbone.trunk.layer1, backbone.trunk.layer2) for b in layer)


@pytest.mark.parametrize("mode", ["bidirectional", "online"])
def test_shift_mixes_neighbouring_frames_online_only_from_the_past(mode):
    backbone = calibrated(insert_temporal_shift(FrameBackbone("resnet18", stage="layer2"), mode=mode), 3)
    plain = calibrated(FrameBackbone("resnet18", stage="layer2"), 3)
    clip = torch.randn(1, 5, 3, 48, 48)
    changed = clip.clone()
    changed[:, 3] += 1.0  # perturb frame 3 only
    with torch.no_grad():
        delta = (backbone(changed) - backbone(clip)).abs().amax(dim=2)[0]  # (T,)
        plain_delta = (plain(changed) - plain(clip)).abs().amax(dim=2)[0]
    assert plain_delta[[0, 1, 2, 4]].max() == 0  # no shift: frames independent
    assert delta[4] > 1e-3  # the next frame sees frame 3 in both modes
    if mode == "online":
        assert delta[:3].max() == 0  # causal: earlier frames never see it
    else:
        assert delta[2] > 1e-3  # the previous frame sees it too


@pytest.mark.parametrize("name,stage", BACKBONES)
def test_online_steps_with_the_cache_equal_the_clip_forward(name, stage):
    torch.manual_seed(0)
    backbone = adapt_input(FrameBackbone(name, stage=stage), 2, (0.5,) * 2, (0.2,) * 2, pretrained=False)
    backbone = calibrated(insert_temporal_shift(backbone, mode="online"), 2)
    head = get_head_class("gru")(backbone.feature_dim, 4, hidden=16).eval()
    clip = torch.randn(2, 6, 2, 48, 48)
    with torch.no_grad():
        features = backbone(clip)  # (B, T, D)
        logits = head(features)
        cache, state, steps = None, head.init_state(2, "cpu"), []
        for t in range(clip.shape[1]):
            feature_t, cache = step_frames(backbone, clip[:, t], cache)
            steps.append(feature_t)
            step_logits, state = head.step(feature_t, state)
    assert (torch.stack(steps, 1) - features).abs().max() <= 1e-4
    assert (step_logits - logits).abs().max() <= 1e-4
    assert len(cache) == len(shift_modules(backbone)) and all(s.cache is None for s in shift_modules(backbone))


def test_bidirectional_shift_cannot_step():
    backbone = insert_temporal_shift(FrameBackbone("resnet18", stage="layer1")).eval()
    with pytest.raises(ValueError, match="temporal_shift=online"):
        step_frames(backbone, torch.randn(1, 3, 32, 32), None)
