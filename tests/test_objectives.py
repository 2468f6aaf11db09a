"""The objectives: the class loss counts the clips it gets right; the caption loss draws or teaches every reference."""

import pytest
import torch
from torch import nn

from videoseq.engine.objectives import CaptionObjective, ClassifyObjective


def test_classify_objective_is_cross_entropy_and_counts_the_right_clips():
    class Fixed(nn.Module):
        def forward(self, clips):
            return torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])

    batch = {"label": torch.tensor([0, 0, 0])}
    loss, right, count = ClassifyObjective(nn.CrossEntropyLoss())(Fixed(), torch.zeros(3, 1), batch)
    expected = nn.functional.cross_entropy(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), batch["label"])
    assert torch.isclose(loss, expected) and int(right) == 2 and count == 3


def test_caption_objective_teaches_one_drawn_or_every_reference():
    refs = [[[1, 5, 2], [1, 6, 7, 2]], [[1, 8, 2]], [[1, 9, 2], [1, 4, 2], [1, 10, 2]]]
    videos, items = torch.tensor([2, 0]), torch.tensor([0, 1])
    one = CaptionObjective(refs, label_smoothing=0.0, scheduled_sampling=0.0)
    ids, rows = one.targets(videos, items)
    assert rows is None and ids.shape[0] == 2
    assert ids[0, :3].tolist() in refs[2] and ids[1][ids[1] != 0].tolist() in refs[0]
    every = CaptionObjective(refs, label_smoothing=0.0, scheduled_sampling=0.0, all_references=True)
    ids, rows = every.targets(videos, items)
    assert rows.tolist() == [0, 0, 0, 1, 1]
    assert [r[r != 0].tolist() for r in ids] == refs[2] + refs[0]


def weights_config(tmp_path, counts: dict[str, int], class_weights: str):
    """A config over a manifest of ``counts[c]`` training videos per class (and one test video each)."""
    from videoseq.config import load_config
    from videoseq.manifest import Manifest, ManifestRow, write_manifest

    rows = [ManifestRow(path=f"{c}/{i}.avi", label=c, split="train") for c, n in counts.items() for i in range(n)]
    rows += [ManifestRow(path=f"{c}/t.avi", label=c, split="test") for c in counts]
    manifest = Manifest(rows=rows, classes=list(counts), root=tmp_path)
    write_manifest(manifest, tmp_path)
    return load_config(None, [f"data.manifest={tmp_path / 'manifest.csv'}", f"train.class_weights={class_weights}"])


def test_balanced_class_weights_are_scikit_learns(tmp_path):
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    from videoseq.engine.objectives import class_weights
    from videoseq.prepare import resolve_manifest

    config = weights_config(tmp_path, {"Common": 30, "Some": 8, "Rare": 2}, "balanced")
    weights = class_weights(config, resolve_manifest(config.data))
    labels = np.array([0] * 30 + [1] * 8 + [2] * 2)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)  # n / (k * n_c)
    assert weights.tolist() == pytest.approx(expected.tolist()) and weights.tolist() == pytest.approx(
        [40 / 90, 40 / 24, 40 / 6])


def test_a_mapping_of_class_weights_sets_the_named_classes_and_unknown_names_are_errors(tmp_path):
    from videoseq.engine.objectives import class_weights
    from videoseq.prepare import resolve_manifest

    config = weights_config(tmp_path, {"Common": 3, "Rare": 1}, "{Rare: 4.0}")
    assert class_weights(config, resolve_manifest(config.data)).tolist() == [1.0, 4.0]
    wrong = weights_config(tmp_path, {"Common": 3, "Rare": 1}, "{Rarest: 4.0}")
    with pytest.raises(ValueError, match=r"train.class_weights names \['Rarest'\].*Common"):
        class_weights(wrong, resolve_manifest(wrong.data))
    assert class_weights(weights_config(tmp_path, {"A": 1}, "none"), resolve_manifest(config.data)) is None


def test_the_weighted_class_loss_is_the_weighted_mean_of_the_clips_losses(tmp_path):
    from videoseq.engine.objectives import build_objective, class_weights
    from videoseq.prepare import resolve_manifest

    config = weights_config(tmp_path, {"Common": 6, "Rare": 2}, "balanced")
    manifest = resolve_manifest(config.data)
    weights = class_weights(config, manifest)  # 8 / (2 * 6), 8 / (2 * 2)
    objective = build_objective(config, manifest, None, weights)
    logits = torch.tensor([[2.0, 0.0], [0.5, 0.0], [0.0, 1.0]])

    class Fixed(nn.Module):
        def forward(self, clips):
            return logits

    labels = torch.tensor([0, 1, 1])
    loss, _, _ = objective(Fixed(), torch.zeros(3, 1), {"label": labels})
    per_clip = -logits.log_softmax(1)[torch.arange(3), labels]  # the clips' cross-entropies
    w = torch.tensor([8 / 12, 8 / 4, 8 / 4])
    assert loss.item() == pytest.approx(float((w * per_clip).sum() / w.sum()))
    unweighted, _, _ = build_objective(config, manifest, None)(Fixed(), torch.zeros(3, 1), {"label": labels})
    assert unweighted.item() == pytest.approx(float(per_clip.mean())) and loss.item() > unweighted.item()
