"""Temporal heads: each declares the features it needs, takes them, and refuses the other kind."""

import pytest
import torch

from videoseq.models.heads import HEADS, check_head_args, head_arg_names

B, T, D, CLASSES = 2, 5, 12, 4


@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_declares_the_features_it_needs_and_takes_them(name):
    head_class = HEADS[name]
    assert isinstance(head_class.spatial, bool), f"{name}: declare spatial = True or False"
    head = head_class(D, CLASSES).eval()
    wanted = (B, T, D, 3, 3) if head_class.spatial else (B, T, D)  # maps (B, T, D, h, w) or pooled (B, T, D)
    logits = head(torch.randn(wanted))
    assert logits.shape == (B, CLASSES) and torch.isfinite(logits).all()
    other = (B, T, D) if head_class.spatial else (B, T, D, 3, 3)
    with pytest.raises(ValueError, match=name):
        head(torch.randn(other))


def test_only_the_convlstm_reads_spatial_maps():
    assert sorted(name for name, cls in HEADS.items() if cls.spatial) == ["convlstm"]


def test_head_arguments_are_checked_by_name():
    assert head_arg_names("gru") == ["hidden", "layers", "bidirectional", "dropout"]
    check_head_args("gru", {"hidden": 8})
    with pytest.raises(ValueError, match=r"head_args: unknown key 'hiden' for head 'gru'; valid keys: \['hidden'"):
        check_head_args("gru", {"hiden": 8})
    with pytest.raises(ValueError, match="valid heads"):
        check_head_args("transformer", {})
