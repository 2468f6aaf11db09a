"""The clip Dataset, its sampler and its DataLoader.

Readers are opened inside ``__getitem__`` (so inside DataLoader workers), never
before the fork. Each sample's randomness comes from ``(seed, epoch, index)`` alone,
so a sample is the same whichever worker draws it, and a resumed run sees the same
clips as an uninterrupted one.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from videoseq.flow import MotionInput, gather_fields, shift_into_range
from videoseq.runtime import limit_worker_threads
from videoseq.sampling import ClipSampling
from videoseq.transforms import clip_to_tensor
from videoseq.video.decoder import VideoDecodeError, VideoReader

Transform = Callable[[np.ndarray, int, int], tuple[np.ndarray, int]]


class CachedFrames(Protocol):
    """Frames stored once per video (``framecache.FrameCache``, ``features.FeatureCache``)."""

    def frames(self, path: str) -> np.ndarray:
        """Every stored frame of a video, ``(N, ...)``; a ``VideoDecodeError`` when the video is not stored."""


class ClipDataset(Dataset):
    """Clips from videos: ``views`` x ``crops`` test clips per video, or one random clip in training.

    Item ``i`` is view ``i % (views * crops)`` of video ``i // (views * crops)``; view
    ``v`` is temporal clip ``v // crops`` in spatial crop ``v % crops`` (the transform
    is then called with ``crop=``, as ``ClipEvalPreset(crops=3)`` accepts). A sample is
    a dict with ``video`` (uint8 ``(T, C, H, W)``; C = 3 for RGB), ``label``, ``index`` (the video),
    ``view``, ``item`` and ``error`` (empty, or the decode error when ``on_error="skip"``; ``video``
    is then None). ``clips`` says which frames make a clip. With a ``cache``
    (``framecache.FrameCache``) the frames are read from it instead of decoded; the same
    indices and transforms apply. With a ``motion`` converter (``flow.MotionInput``) the kept
    frames are turned into flow or RGB-difference images ``(T, h, w, C)`` here, in the worker,
    from the frames they need before them.
    """

    def __init__(
        self,
        videos: list[tuple[str, int]],
        *,
        clips: ClipSampling,
        transform: Transform,
        train: bool,
        views: int = 1,
        crops: int = 1,
        seed: int = 0,
        on_error: str = "skip",
        cache: CachedFrames | None = None,
        motion: MotionInput | None = None,
    ) -> None:
        self.videos, self.clips = videos, clips
        self.transform, self.train, self.views, self.crops = transform, train, views, crops
        if crops > 1 and (train or getattr(transform, "crops", 1) != crops):
            raise ValueError(f"crops={crops} needs an eval dataset with ClipEvalPreset(crops={crops})")
        self.seed, self.on_error, self.epoch = seed, on_error, 0
        self.cache, self.motion = cache, motion
        self._known: dict[str, object] = {}  # path -> VideoReader.known, per process

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.views * self.crops

    def clip_indices(self, num_frames: int, view: int, rng: np.random.Generator) -> np.ndarray:
        """The frames of temporal clip ``view`` (a random clip in training), ``(T,)``."""
        if self.train:
            return self.clips.train_clip(num_frames, rng)
        return self.clips.views(num_frames, self.views)[view]

    def read_clip(self, path: str, view: int, rng: np.random.Generator) -> np.ndarray:
        """The frames of temporal clip ``view`` of a video: from ``cache`` when there is one, else decoded."""
        if self.cache is not None:
            frames = self.cache.frames(path)  # (N, ...) memory-mapped
            if self.motion is not None and getattr(self.cache, "holds_motion", False):  # stored fields: no flow here
                kept = shift_into_range(lambda n: self.clip_indices(n, view, rng), len(frames), self.motion.lookback)
                return gather_fields(frames, self.motion.frame_table(kept))  # (T, h, w, C)
            return self.frames_at(lambda indices: np.ascontiguousarray(frames[indices]), len(frames), view, rng)
        with VideoReader(path, known=self._known.get(path)) as reader:
            self._known[path] = reader.known  # later views and epochs skip the probing
            return self.frames_at(reader.read, reader.info.num_frames, view, rng)

    def frames_at(self, read: Callable[[np.ndarray], np.ndarray], num_frames: int, view: int,
                  rng: np.random.Generator) -> np.ndarray:
        """Clip ``view`` through ``read(indices)``: the kept frames, or their motion images."""
        if self.motion is None:
            return read(self.clip_indices(num_frames, view, rng))
        kept = shift_into_range(lambda n: self.clip_indices(n, view, rng), num_frames, self.motion.lookback)
        return self.motion.read_clip(read, kept)  # (T, h, w, C)

    def to_tensor(self, clip: np.ndarray, label: int, seed: int, crop: int) -> tuple[torch.Tensor, int]:
        """The transformed clip as uint8 ``(T, C, H, W)`` and its label (a flip may swap it)."""
        if self.crops > 1:
            clip, label = self.transform(clip, label, seed, crop=crop)
        else:
            clip, label = self.transform(clip, label, seed)
        return clip_to_tensor(clip), label

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Item ``key``, or ``(epoch, item)`` as ``ClipSampler`` yields it (the epoch rides along)."""
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        video, view = divmod(i, self.views * self.crops)
        temporal, crop = divmod(view, self.crops)
        path, label = self.videos[video]
        rng = np.random.default_rng([self.seed, epoch, i])
        try:
            clip = self.read_clip(path, temporal, rng)
        except VideoDecodeError as err:
            if self.on_error == "raise":
                raise
            return {"video": None, "label": label, "index": video, "view": view, "item": i, "error": str(err)}
        tensor, label = self.to_tensor(clip, label, int(rng.integers(2**31 - 1)), crop)
        return {"video": tensor, "label": label, "index": video, "view": view, "item": i, "error": ""}


def collate_clips(samples: list[dict]) -> dict:
    """Stack the clips that decoded; report the others in ``errors`` as (index, message)."""
    good = [s for s in samples if not s["error"]]
    errors = [(s["index"], s["error"]) for s in samples if s["error"]]
    video = torch.stack([s["video"] for s in good]) if good else torch.empty(0, dtype=torch.uint8)
    return {
        "video": video,  # (B, T, 3, H, W) uint8
        "label": torch.tensor([s["label"] for s in good], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "view": torch.tensor([s.get("view", 0) for s in good], dtype=torch.long),
        "item": torch.tensor([s.get("item", -1) for s in good], dtype=torch.long),  # dataset item of each clip
        "errors": errors,
    }


def epoch_order(size: int, *, shuffle: bool, seed: int, epoch: int) -> list[int]:
    """The order in which an epoch visits ``size`` items: a permutation fixed by ``(seed, epoch)``.

    Being a pure function of its arguments is what lets a resumed run skip exactly
    the batches an interrupted run had already trained on.
    """
    if not shuffle:
        return list(range(size))
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(size, generator=generator).tolist()


def weighted_order(weights: torch.Tensor, *, seed: int, epoch: int) -> list[int]:
    """``len(weights)`` items drawn with replacement, item ``i`` with probability ``weights[i] / sum``:
    like ``epoch_order``, a pure function of ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.multinomial(weights, len(weights), replacement=True, generator=generator).tolist()


def class_balanced_weights(dataset: Dataset) -> torch.Tensor:
    """One weight per item of a clip dataset, ``1 / (videos of its class)``: every class is drawn as often."""
    labels = np.array([label for _, label in dataset.videos], dtype=np.int64)
    counts = np.bincount(labels)
    per_video = 1.0 / counts[labels]
    return torch.from_numpy(np.repeat(per_video, len(dataset) // max(len(labels), 1)))  # (items,)


def ignore_stop_signals(worker_id: int) -> None:
    """In a DataLoader worker: leave Ctrl-C and SIGTERM to the main process.

    A terminal's Ctrl-C reaches the whole process group; the main process stops
    after the current step and saves, then shuts its workers down itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def start_worker(worker_id: int) -> None:
    """A DataLoader worker's set-up: stop signals left to the main process, one compute thread."""
    ignore_stop_signals(worker_id)
    limit_worker_threads()


class ClipSampler(Sampler):
    """The items of one epoch as ``(epoch, item)`` pairs, optionally one rank's shard of them.

    The order is ``epoch_order(size, shuffle, seed, epoch)``. With ``world > 1`` this
    rank takes every ``world``-th item from ``rank`` on (DistributedSampler's split);
    ``pad`` repeats the first items so every rank gets as many (training: DDP needs the
    same number of steps everywhere); without it every item lies in exactly one shard
    and the shards may differ by one (evaluation: nothing is counted twice).
    Example, 5 items, 2 ranks, no shuffle: padded ``[0, 2, 4]`` / ``[1, 3, 0]``, unpadded
    ``[0, 2, 4]`` / ``[1, 3]``. ``skip`` leaves out the first items of this rank's share
    (a resumed run starting mid-epoch; ``set_epoch`` resets it). The epoch travels with
    every item, so workers that live across epochs (``persistent_workers``) still draw
    that epoch's random clips. With ``weights`` (one per item) the epoch is instead
    ``size`` items drawn with replacement in proportion to them (``weighted_order``,
    from ``(seed, epoch)`` too), then split and skipped the same way.
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, rank: int = 0, world: int = 1,
                 pad: bool = True, skip: int = 0, weights: torch.Tensor | None = None) -> None:
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} does not fit a world of {world} processes")
        if weights is not None and len(weights) != size:
            raise ValueError(f"{len(weights)} sampling weights for {size} items")
        self.size, self.shuffle, self.seed, self.weights = size, shuffle, seed, weights
        self.rank, self.world, self.pad = rank, world, pad
        self.set_epoch(epoch, skip=skip)

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def order(self) -> list[int]:
        """The items of this rank for the current epoch, in the order they are read."""
        if self.weights is not None and self.size:
            items = weighted_order(self.weights, seed=self.seed, epoch=self.epoch)
        else:
            items = epoch_order(self.size, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch)
        if self.pad and self.world > 1 and items:
            total = -(-len(items) // self.world) * self.world
            items += (items * (total // len(items) + 1))[: total - len(items)]
        return items[self.rank::self.world][self.skip:]

    def __iter__(self):
        epoch = self.epoch
        return iter([(epoch, i) for i in self.order()])

    def __len__(self) -> int:
        if self.pad and self.world > 1:
            share = -(-self.size // self.world)
        else:
            share = len(range(self.rank, self.size, self.world))
        return max(share - self.skip, 0)


@dataclass(frozen=True)
class LoaderOptions:
    """How a loader reads its dataset: the same for every loader of a run."""

    batch_size: int
    num_workers: int = 0  # worker processes (0: load in this process)
    timeout: float = 0.0  # seconds a worker may take for one batch (0: no limit)
    seed: int = 0  # the epoch order and the workers' seeds come from (seed, epoch)
    shard: tuple[int, int] = (0, 1)  # (rank, world): this rank's share under torchrun
    persistent_workers: bool = False  # keep the workers alive across epochs
    prefetch_factor: int | None = None  # batches each worker loads ahead (PyTorch's default: 2)
    one_thread_per_worker: bool = True  # one torch and one OpenCV thread in each worker (the thread policy)
    sampler: str = "random"  # shuffled loaders: random (a permutation) | balanced (classes drawn equally often)


def make_loader(dataset: Dataset, options: LoaderOptions, *, shuffle: bool, pad: bool = True,
                epoch: int = 0) -> DataLoader:
    """A DataLoader whose order and clips depend only on ``(options.seed, epoch)``.

    ``options.shard = (rank, world)`` reads one rank's share (see ``ClipSampler``,
    ``pad``). Reuse the loader for later epochs with ``loader.sampler.set_epoch(epoch)``
    (a resumed run starting mid-epoch passes ``skip=`` there): with
    ``persistent_workers`` its workers then stay alive. Worker processes are seeded
    from the same ``(seed, epoch)``; samples draw their randomness from ``(seed, epoch,
    item)``, so which worker decodes a sample never matters. Batches are page-locked
    when CUDA is available, so they copy to the GPU asynchronously. ``options.sampler``
    ``balanced`` draws a shuffled loader's items with class-balanced weights
    (``class_balanced_weights``): as many items an epoch, with replacement.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    o = options
    generator = torch.Generator().manual_seed(o.seed * 100_003 + epoch)
    rank, world = o.shard
    weights = class_balanced_weights(dataset) if shuffle and o.sampler == "balanced" else None
    sampler = ClipSampler(len(dataset), shuffle=shuffle, seed=o.seed, epoch=epoch, rank=rank, world=world, pad=pad,
                          weights=weights)
    workers = dict(timeout=o.timeout, persistent_workers=o.persistent_workers, prefetch_factor=o.prefetch_factor)
    return DataLoader(
        dataset,
        batch_size=o.batch_size,
        sampler=sampler,
        num_workers=o.num_workers,
        collate_fn=collate_clips,
        generator=generator,
        worker_init_fn=start_worker if o.one_thread_per_worker else ignore_stop_signals,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        **(workers if o.num_workers > 0 else {}),
    )
