"""The clip dataset: sampled frames, views and crops, seeded training clips, skipped bad videos, its loader."""


import pytest
import torch

from videoseq.datasets import ClipDataset, LoaderOptions, collate_clips, make_loader
from videoseq.sampling import ClipSampling
from videoseq.transforms import ClipEvalPreset, ClipTrainPreset

from conftest import brightness_frames, write_video


@pytest.fixture
def two_videos(tmp_path):
    a = write_video(tmp_path / "a.avi", brightness_frames(20))
    b = write_video(tmp_path / "b.avi", brightness_frames(6))
    return [(str(a), 0), (str(b), 1)]


def decoded_levels(video: torch.Tensor) -> list[int]:
    return [int(round((float(f.float().mean()) - 10) / 8)) for f in video]


def test_eval_dataset_returns_uint8_clips_at_the_sampled_frames(two_videos):
    ds = ClipDataset(two_videos, clips=ClipSampling(frames=4, method="uniform"),
                     transform=ClipEvalPreset(size=16), train=False)
    sample = ds[0]
    assert sample["video"].shape == (4, 3, 16, 16) and sample["video"].dtype == torch.uint8
    assert decoded_levels(sample["video"]) == [0, 6, 13, 19]
    short = ds[1]  # 6 frames, 4 samples uniform
    assert decoded_levels(short["video"]) == [0, 2, 3, 5]


def test_views_expand_the_dataset(two_videos):
    ds = ClipDataset(two_videos, clips=ClipSampling(frames=4, method="dense", stride=2),
                     transform=ClipEvalPreset(size=16), train=False, views=3)
    assert len(ds) == 6
    starts = [decoded_levels(ds[i]["video"])[0] for i in range(3)]
    assert starts == [0, 6, 13] and {ds[i]["index"] for i in range(3)} == {0}


def test_views_times_crops_order_clips_then_crops(two_videos):
    ds = ClipDataset(two_videos, clips=ClipSampling(frames=4, method="dense", stride=2),
                     transform=ClipEvalPreset(size=16, crops=3), train=False, views=2, crops=3)
    assert len(ds) == 12
    items = [ds[i] for i in range(6)]
    assert [s["view"] for s in items] == list(range(6)) and {s["index"] for s in items} == {0}
    starts = [decoded_levels(s["video"])[0] for s in items]
    assert starts[:3] == [0, 0, 0] and starts[3] == starts[4] == starts[5] > 0  # crop varies fastest
    assert ds[6]["index"] == 1 and ds[6]["view"] == 0
    with pytest.raises(ValueError, match="crops=3"):
        ClipDataset(two_videos, clips=ClipSampling(frames=4), transform=ClipEvalPreset(size=16), train=False, crops=3)


def test_training_samples_depend_only_on_seed_epoch_and_index(two_videos):
    make = lambda: ClipDataset(two_videos, clips=ClipSampling(frames=4),
                               transform=ClipTrainPreset(size=16), train=True, seed=3)
    a, b = make(), make()
    assert torch.equal(a[0]["video"], b[0]["video"])
    b.set_epoch(1)
    different = any(not torch.equal(a[0]["video"], b[0]["video"]) for _ in range(1))
    assert different


def test_bad_video_is_reported_not_raised_when_skipping(tmp_path, two_videos):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    videos = two_videos + [(str(broken), 0)]
    ds = ClipDataset(videos, clips=ClipSampling(frames=4), transform=ClipEvalPreset(size=16), train=False)
    sample = ds[2]
    assert sample["video"] is None and "broken.avi" in sample["error"]
    batch = collate_clips([ds[0], ds[2], ds[1]])
    assert batch["video"].shape[0] == 2 and batch["label"].tolist() == [0, 1]
    assert batch["errors"][0][0] == 2
    strict = ClipDataset(videos, clips=ClipSampling(frames=4),
                         transform=ClipEvalPreset(size=16), train=False, on_error="raise")
    from videoseq.video.decoder import VideoDecodeError
    with pytest.raises(VideoDecodeError, match="broken.avi"):
        strict[2]


def test_loader_with_workers_gives_the_same_batches_as_without(two_videos):
    ds = ClipDataset(two_videos * 3, clips=ClipSampling(frames=4),
                     transform=ClipTrainPreset(size=16), train=True, seed=1)
    serial, parallel = ([b["video"] for b in make_loader(ds, LoaderOptions(batch_size=2, num_workers=n, seed=1),
                                                         shuffle=True, epoch=2)] for n in (0, 2))
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel)) and len(serial) == 3


def test_clip_sampler_shards_pad_for_training_and_cover_each_item_once_for_evaluation():
    from videoseq.datasets import ClipSampler

    padded = [list(ClipSampler(5, shuffle=False, rank=r, world=2)) for r in range(2)]
    assert padded == [[(0, 0), (0, 2), (0, 4)], [(0, 1), (0, 3), (0, 0)]]
    exact = [[i for _, i in ClipSampler(5, shuffle=False, rank=r, world=2, pad=False)] for r in range(2)]
    assert exact == [[0, 2, 4], [1, 3]] and [len(ClipSampler(5, shuffle=False, rank=1, world=2, pad=False))] == [2]
    for size, world in ((7, 3), (2, 4), (12, 4)):
        shards = [ClipSampler(size, shuffle=True, seed=3, epoch=1, rank=r, world=world, pad=False)
                  for r in range(world)]
        items = sorted(i for s in shards for _, i in s)
        assert items == list(range(size)) and all(len(list(s)) == len(s) for s in shards)
        padded = [ClipSampler(size, shuffle=True, seed=3, epoch=1, rank=r, world=world) for r in range(world)]
        assert len({len(list(s)) for s in padded}) == 1 and {i for s in padded for _, i in s} == set(range(size))


def test_clip_sampler_order_depends_on_seed_and_epoch_and_carries_the_epoch():
    from videoseq.datasets import ClipSampler

    sampler = ClipSampler(20, shuffle=True, seed=1, epoch=0)
    first = list(sampler)
    assert first == list(ClipSampler(20, shuffle=True, seed=1, epoch=0))
    sampler.set_epoch(1)
    second = list(sampler)
    assert {e for e, _ in second} == {1} and [i for _, i in second] != [i for _, i in first]
    assert sorted(i for _, i in second) == list(range(20))


def test_a_reused_loader_with_persistent_workers_draws_each_epochs_clips(tmp_path):
    videos = [(str(write_video(tmp_path / f"v{i}.avi", brightness_frames(20))), 0) for i in range(2)]
    ds = ClipDataset(videos, clips=ClipSampling(frames=3), transform=lambda c, y, s: (c, y), train=True, seed=5)
    options = LoaderOptions(batch_size=2, num_workers=1, persistent_workers=True, prefetch_factor=2)
    loader = make_loader(ds, options, shuffle=False)
    fresh = [make_loader(ds, LoaderOptions(batch_size=2, num_workers=0), shuffle=False, epoch=e) for e in (0, 1)]
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        assert torch.equal(next(iter(loader))["video"], next(iter(fresh[epoch]))["video"])
    assert not torch.equal(next(iter(fresh[0]))["video"], next(iter(fresh[1]))["video"])


class Labelled(torch.utils.data.Dataset):
    """A stand-in clip dataset of ``counts[c]`` videos of class ``c`` (the sampler reads labels only)."""

    def __init__(self, counts: list[int], views: int = 1) -> None:
        self.videos = [(f"v{c}_{i}", c) for c, n in enumerate(counts) for i in range(n)]
        self.views = views

    def __len__(self) -> int:
        return len(self.videos) * self.views


def class_shares(items: list[int], dataset: Labelled) -> list[float]:
    labels = [dataset.videos[i // dataset.views][1] for i in items]
    return [labels.count(c) / len(labels) for c in range(3)]


def test_balanced_sampler_draws_every_class_equally_often_and_random_keeps_the_shares():
    from videoseq.datasets import ClipSampler, class_balanced_weights

    data = Labelled([40, 8, 2])
    weights = class_balanced_weights(data)
    assert torch.allclose(weights, torch.tensor([1 / 40] * 40 + [1 / 8] * 8 + [1 / 2] * 2, dtype=weights.dtype))
    balanced = ClipSampler(len(data), shuffle=True, seed=0, weights=weights)
    drawn = []
    for epoch in range(200):
        balanced.set_epoch(epoch)
        order = [i for _, i in balanced]
        assert len(order) == len(data)  # an epoch is as many clips, drawn with replacement
        drawn += order
    assert class_shares(drawn, data) == pytest.approx([1 / 3] * 3, abs=0.02)  # 10,000 draws: sd 0.005
    shuffled = [i for _, i in ClipSampler(len(data), shuffle=True, seed=0)]
    assert class_shares(shuffled, data) == pytest.approx([0.8, 0.16, 0.04])  # a permutation: the shares as they are


def test_balanced_sampler_order_is_fixed_by_seed_and_epoch_and_shards_like_the_random_one():
    from videoseq.datasets import ClipSampler, class_balanced_weights, weighted_order

    data = Labelled([9, 3, 1], views=2)  # views: both items of a video share its weight
    weights = class_balanced_weights(data)
    assert weights[0] == weights[1] == 1 / 9 and weights[-1] == 1.0
    full = weighted_order(weights, seed=4, epoch=2)
    assert full == weighted_order(weights, seed=4, epoch=2) != weighted_order(weights, seed=4, epoch=3)
    world = 3
    shards = [[i for _, i in ClipSampler(len(data), shuffle=True, seed=4, epoch=2, rank=r, world=world,
                                         weights=weights)] for r in range(world)]
    padded = full + full[: -len(full) % world]
    assert shards == [padded[r::world] for r in range(world)]
    resumed = ClipSampler(len(data), shuffle=True, seed=4, epoch=2, rank=1, world=world, weights=weights, skip=3)
    assert [i for _, i in resumed] == shards[1][3:]


def test_make_loader_balances_only_a_shuffled_loader_with_sampler_balanced():
    data = Labelled([6, 2])
    balanced = make_loader(data, LoaderOptions(batch_size=2, sampler="balanced"), shuffle=True)
    assert balanced.sampler.weights is not None
    assert make_loader(data, LoaderOptions(batch_size=2, sampler="balanced"), shuffle=False).sampler.weights is None
    assert make_loader(data, LoaderOptions(batch_size=2), shuffle=True).sampler.weights is None
