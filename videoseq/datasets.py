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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

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
    values = {k: (record.get(k) or "").strip() for k in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    for key in REQUIRED_COLUMNS:
        if not values[key]:
            raise ManifestError(f"manifest {csv_path} line {line}: empty {key!r}")
    return ManifestRow(**values)


def safe_cell(value: object) -> object:
    """Neutralise spreadsheet formulas in text cells; numbers pass untouched."""
    if isinstance(value, str) and value.startswith(CSV_INJECTION_PREFIXES):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def write_csv(path: str | Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> Path:
    """The one CSV writer: formula-safe cells, written to a temporary name then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(header))
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


class ClipDataset(Dataset):
    """Clips from videos: ``views`` test clips per video, or one random clip in training.

    Item ``i`` is view ``i % views`` of video ``i // views``. A sample is a dict with
    ``video`` (uint8 ``(T, 3, H, W)``), ``label``, ``index`` (the video) and ``error``
    (empty, or the decode error when ``on_error="skip"``; ``video`` is then None).
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
        seed: int = 0,
        on_error: str = "skip",
    ) -> None:
        self.videos = videos
        self.clip_len, self.sampling, self.stride, self.short = clip_len, sampling, stride, short
        self.transform, self.train, self.views = transform, train, views
        self.seed, self.on_error, self.epoch = seed, on_error, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.views

    def clip_indices(self, num_frames: int, view: int, rng: np.random.Generator) -> np.ndarray:
        if self.train:
            return sample_indices(
                self.sampling, num_frames, self.clip_len, stride=self.stride, train=True, rng=rng, short=self.short
            )
        views = multi_view_indices(
            num_frames, self.clip_len, self.views, method=self.sampling, stride=self.stride, short=self.short
        )
        return views[view]

    def __getitem__(self, i: int) -> dict:
        video, view = divmod(i, self.views)
        path, label = self.videos[video]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        try:
            with VideoReader(path) as reader:
                clip = reader.read(self.clip_indices(reader.info.num_frames, view, rng))
        except VideoDecodeError as err:
            if self.on_error == "raise":
                raise
            return {"video": None, "label": label, "index": video, "error": str(err)}
        clip, label = self.transform(clip, label, int(rng.integers(2**31 - 1)))
        return {"video": clip_to_tensor(clip), "label": label, "index": video, "error": ""}


def collate_clips(samples: list[dict]) -> dict:
    """Stack the clips that decoded; report the others in ``errors`` as (index, message)."""
    good = [s for s in samples if not s["error"]]
    errors = [(s["index"], s["error"]) for s in samples if s["error"]]
    video = torch.stack([s["video"] for s in good]) if good else torch.empty(0, dtype=torch.uint8)
    return {
        "video": video,  # (B, T, 3, H, W) uint8
        "label": torch.tensor([s["label"] for s in good], dtype=torch.long),
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "errors": errors,
    }


def make_loader(
    dataset: ClipDataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    timeout: float = 0.0,
    seed: int = 0,
    epoch: int = 0,
    sampler: torch.utils.data.Sampler | None = None,
) -> DataLoader:
    """A DataLoader whose shuffle order depends only on ``(seed, epoch)``."""
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_clips,
        generator=generator,
        timeout=timeout if num_workers > 0 else 0.0,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
    )
