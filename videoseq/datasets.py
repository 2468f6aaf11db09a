"""Manifests (CSV + class list) and the clip Dataset.

A manifest is ``manifest.csv`` with columns ``path,label,split`` and optional
``group`` and ``caption`` (several rows per video give several reference captions),
plus ``classes.txt`` beside it: one class name per line, line order = class id.
Relative paths are relative to the manifest's folder.

Readers are opened inside ``__getitem__`` (so inside DataLoader workers), never
before the fork. Each sample's randomness comes from ``(seed, epoch, index)`` alone,
so a sample is the same whichever worker draws it, and a resumed run sees the same
clips as an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
import re
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from videoseq.sampling import multi_view_indices, sample_indices
from videoseq.transforms import clip_to_tensor
from videoseq.video import VideoDecodeError, VideoReader

REQUIRED_COLUMNS = ("path", "label", "split")
OPTIONAL_COLUMNS = ("group", "caption")
CSV_INJECTION_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ManifestError(ValueError):
    """A manifest or class list is malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class ManifestRow:
    path: str
    label: str
    split: str
    group: str = ""
    caption: str = ""


@dataclass
class Manifest:
    rows: list[ManifestRow]
    classes: list[str]
    root: Path  # relative paths in rows are relative to this folder
    notes: list[str] = field(default_factory=list)  # what building it skipped or could not find

    def resolve(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(self.root / path)

    def videos(self, split: str) -> list[tuple[str, int]]:
        """Unique ``(absolute path, class id)`` pairs of one split, in manifest order."""
        index = {name: i for i, name in enumerate(self.classes)}
        seen: dict[str, int] = {}
        for row in self.rows:
            if row.split == split and row.path not in seen:
                seen[row.path] = index[row.label]
        return [(self.resolve(p), label) for p, label in seen.items()]

    def captions(self, split: str) -> list[list[str]]:
        """The reference captions of each video of ``videos(split)``, in the same order (may be empty)."""
        found: dict[str, list[str]] = {}
        for row in self.rows:
            if row.split == split:
                found.setdefault(row.path, [])
                if row.caption:
                    found[row.path].append(row.caption)
        return list(found.values())

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for path, split in {(r.path, r.split) for r in self.rows}:
            counts[split] = counts.get(split, 0) + 1
        return counts


def read_classes(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"class list {path} does not exist; write one class name per line")
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not classes:
        raise ManifestError(f"class list {path} is empty")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise ManifestError(f"class list {path} names {dupes} more than once")
    return classes


def read_manifest(csv_path: str | Path, classes_path: str | Path | None = None) -> Manifest:
    """Read and check a manifest; ``classes.txt`` beside it unless given."""
    csv_path = Path(csv_path)
    rows = read_manifest_rows(csv_path)
    classes = read_classes(classes_path or csv_path.parent / "classes.txt")
    unknown = sorted({r.label for r in rows} - set(classes))
    if unknown:
        raise ManifestError(
            f"manifest {csv_path} has labels not in the class list: {unknown[:10]}; add them to classes.txt"
        )
    return Manifest(rows=rows, classes=classes, root=csv_path.parent.resolve())


def read_manifest_rows(csv_path: str | Path) -> list[ManifestRow]:
    """The rows of a manifest CSV, columns checked, labels not yet checked against a class list."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ManifestError(f"manifest {csv_path} does not exist; create one with `videoseq prepare`")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"manifest {csv_path} lacks column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
        return [_row(record, csv_path, n) for n, record in enumerate(reader, start=2)]


def _row(record: dict, csv_path: Path, line: int) -> ManifestRow:
    values = {k: read_cell((record.get(k) or "").strip()) for k in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    for key in REQUIRED_COLUMNS:
        if not values[key]:
            raise ManifestError(f"manifest {csv_path} line {line}: empty {key!r}")
    return ManifestRow(**values)


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def safe_cell(value: object) -> object:
    """Neutralise spreadsheet formulas: text starting with ``= + - @``, tab or CR gets a leading ``'``.

    Numbers pass untouched, and so does text that is a plain negative number
    (``"-1.5"``); ``"+1"``, ``"-x"`` or ``"=HYPERLINK(...)"`` become ``"'+1"`` etc.
    ``read_cell`` undoes it when videoseq reads its own files back.
    """
    if isinstance(value, str) and value.startswith(CSV_INJECTION_PREFIXES) and not _NEGATIVE_NUMBER.match(value):
        return "'" + value
    return value


def read_cell(value: str) -> str:
    """A cell as it was before ``safe_cell`` (for manifests written by ``write_manifest``)."""
    if value.startswith("'") and value[1:].startswith(CSV_INJECTION_PREFIXES):
        return value[1:]
    return value


def write_csv(path: str | Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> Path:
    """The one CSV writer: formula-safe cells, written to a temporary name then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([safe_cell(v) for v in header])  # headers may hold class names (confusion.csv)
        writer.writerows([safe_cell(v) for v in row] for row in rows)
    os.replace(tmp, path)
    return path


def write_manifest(manifest: Manifest, out_dir: str | Path, csv_name: str = "manifest.csv") -> Path:
    """Write ``csv_name`` (paths relative to ``out_dir``) and ``classes.txt`` beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS)
    rows = [
        [os.path.relpath(manifest.resolve(r.path), out_dir.resolve()), r.label, r.split, r.group, r.caption]
        for r in manifest.rows
    ]
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in manifest.classes))
    return write_csv(out_dir / csv_name, header, rows)


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
    a dict with ``video`` (uint8 ``(T, 3, H, W)``), ``label``, ``index`` (the video),
    ``view``, ``item`` and ``error`` (empty, or the decode error when ``on_error="skip"``; ``video``
    is then None). With a ``cache`` (``framecache.FrameCache``) the frames are read from it
    instead of decoded; the same indices and transforms apply.
    """

    def __init__(
        self,
        videos: list[tuple[str, int]],
        *,
        clip_len: int,
        transform: Transform,
        train: bool,
        sampling: str = "segment",
        stride: int = 1,
        short: str = "loop",
        views: int = 1,
        crops: int = 1,
        seed: int = 0,
        on_error: str = "skip",
        cache: CachedFrames | None = None,
    ) -> None:
        self.videos = videos
        self.clip_len, self.sampling, self.stride, self.short = clip_len, sampling, stride, short
        self.transform, self.train, self.views, self.crops = transform, train, views, crops
        if crops > 1 and (train or getattr(transform, "crops", 1) != crops):
            raise ValueError(f"crops={crops} needs an eval dataset with ClipEvalPreset(crops={crops})")
        self.seed, self.on_error, self.epoch = seed, on_error, 0
        self.cache = cache
        self._known: dict[str, object] = {}  # path -> VideoReader.known, per process

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.views * self.crops

    def clip_indices(self, num_frames: int, view: int, rng: np.random.Generator) -> np.ndarray:
        if self.train:
            return sample_indices(
                self.sampling, num_frames, self.clip_len, stride=self.stride, train=True, rng=rng, short=self.short
            )
        views = multi_view_indices(
            num_frames, self.clip_len, self.views, method=self.sampling, stride=self.stride, short=self.short
        )
        return views[view]

    def read_clip(self, path: str, view: int, rng: np.random.Generator) -> np.ndarray:
        """The frames of temporal clip ``view`` of a video: from ``cache`` when there is one, else decoded."""
        if self.cache is not None:
            frames = self.cache.frames(path)  # (N, ...) memory-mapped
            return np.ascontiguousarray(frames[self.clip_indices(len(frames), view, rng)])
        with VideoReader(path, known=self._known.get(path)) as reader:
            self._known[path] = reader.known  # later views and epochs skip the probing
            return reader.read(self.clip_indices(reader.info.num_frames, view, rng))

    def to_tensor(self, clip: np.ndarray, label: int, seed: int, crop: int) -> tuple[torch.Tensor, int]:
        """The transformed clip as uint8 ``(T, 3, H, W)`` and its label (a flip may swap it)."""
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


def ignore_stop_signals(worker_id: int) -> None:
    """In a DataLoader worker: leave Ctrl-C and SIGTERM to the main process.

    A terminal's Ctrl-C reaches the whole process group; the main process stops
    after the current step and saves, then shuts its workers down itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
    that epoch's random clips.
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0, rank: int = 0, world: int = 1,
                 pad: bool = True, skip: int = 0) -> None:
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} does not fit a world of {world} processes")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world, self.pad = rank, world, pad
        self.set_epoch(epoch, skip=skip)

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def order(self) -> list[int]:
        """The items of this rank for the current epoch, in the order they are read."""
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


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    timeout: float = 0.0,
    seed: int = 0,
    epoch: int = 0,
    sampler: torch.utils.data.Sampler | None = None,
    start_batch: int = 0,
    shard: tuple[int, int] = (0, 1),
    pad: bool = True,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader whose order and clips depend only on ``(seed, epoch)``, from batch ``start_batch`` on.

    ``start_batch`` skips the first batches of the epoch without decoding them (a
    resumed run picks up where the interrupted one stopped). ``shard=(rank, world)``
    reads one rank's share (see ``ClipSampler``, ``pad``). Reuse the loader for later
    epochs with ``loader.sampler.set_epoch(epoch)``: with ``persistent_workers`` its
    workers then stay alive. Worker processes are seeded from the same ``(seed, epoch)``;
    samples draw their randomness from ``(seed, epoch, item)``, so which worker decodes
    a sample never matters. ``pin_memory`` defaults to whether CUDA is available
    (page-locked batches copy to the GPU asynchronously).
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if sampler is None:
        sampler = ClipSampler(len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, rank=shard[0], world=shard[1],
                              pad=pad, skip=start_batch * batch_size)
    elif start_batch:
        raise ValueError("start_batch needs the loader's own order; it cannot skip into a custom sampler")
    workers = dict(timeout=timeout, persistent_workers=persistent_workers, prefetch_factor=prefetch_factor)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_clips,
        generator=generator,
        worker_init_fn=ignore_stop_signals,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=False,
        **(workers if num_workers > 0 else {}),
    )
