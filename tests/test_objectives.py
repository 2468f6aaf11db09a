"""The objectives: the class loss counts the clips it gets right; the caption loss draws or teaches every reference."""

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
