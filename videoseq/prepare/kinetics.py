"""Kinetics: the annotation CSVs (``label,youtube_id,time_start,time_end,split``).

Each row names a 10-second cut of a YouTube video; the usual trimmed file name is
``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>`` (ActivityNet's downloader,
CVDF's archives, MMAction2). Files are found anywhere under the root, by that stem
and any video extension, so ``train/<label>/...``, ``videos_train/...`` and flat
layouts all work. Rows whose file is absent are left out and listed in the notes:
a Kinetics copy always misses some videos that left YouTube. Rows without a label
(the unlabelled test CSV) are left out too. Classes are the sorted labels of
all annotated rows, found or not, so class ids match the official list; the
group is the YouTube id, so two cuts of one upload never span train and test.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from videoseq.manifest import Manifest, ManifestError, ManifestRow
from videoseq.prepare.common import check_class_name, find_annotations
from videoseq.video.decoder import find_videos

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validate": "val", "validation": "val",
               "test": "test", "testing": "test"}


def kinetics_stem(youtube_id: str, time_start: str, time_end: str) -> str:
    """``abc_000010_000020`` for the cut of ``abc`` from second 10 to 20."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def find_kinetics_csvs(root: Path, annotations: str | Path | None) -> list[Path]:
    """The annotation CSVs: the given file, the CSVs of the given folder, or those near the root."""
    if annotations and Path(annotations).is_file():
        return [Path(annotations)]
    folder = find_annotations(root, annotations, (".", "annotations"), "*.csv", "--splits-dir CSV_OR_FOLDER")
    return sorted(folder.glob("*.csv"))


def index_videos(root: Path) -> dict[str, str]:
    """``{file stem: path relative to root}`` of every video file under ``root`` (hidden ones skipped)."""
    found: dict[str, str] = {}
    for path in find_videos(root):
        found.setdefault(path.stem, os.path.relpath(path, root))
    return found


def read_kinetics_csv(path: Path) -> list[dict]:
    """Rows of one annotation CSV as dicts with the Kinetics columns (label may be empty)."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in KINETICS_COLUMNS[1:] if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path} lacks column(s) {missing}; a Kinetics CSV has {list(KINETICS_COLUMNS)}")
        rows = []
        for n, record in enumerate(reader, start=2):
            split = SPLIT_NAMES.get((record["split"] or "").strip().lower())
            if split is None:
                raise ManifestError(f"{path} line {n}: split {record['split']!r} is not one of {sorted(SPLIT_NAMES)}")
            values = {k: (record.get(k) or "").strip() for k in KINETICS_COLUMNS}
            rows.append({**values, "split": split, "csv": path.name, "line": n})
        return rows


def manifest_from_kinetics(root: str | Path, annotations: str | Path | None = None) -> Manifest:
    """Map Kinetics annotation rows to the trimmed files under ``root``; report what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"Kinetics root {root} is not a folder")
    records = [r for path in find_kinetics_csvs(root, annotations) for r in read_kinetics_csv(path)]
    on_disk = index_videos(root)
    classes = sorted({check_class_name(r["label"], f"{r['csv']} line {r['line']}") for r in records if r["label"]})
    rows, missing, unlabelled = [], [], 0
    for record in records:
        if not record["label"]:
            unlabelled += 1
            continue
        stem = kinetics_stem(record["youtube_id"], record["time_start"], record["time_end"])
        if stem not in on_disk:
            missing.append(f"missing: {record['split']}/{record['label']}/{stem}")
            continue
        rows.append(ManifestRow(on_disk[stem], record["label"], record["split"], group=record["youtube_id"]))
    if not rows:
        raise ManifestError(f"none of the {len(records)} annotated Kinetics clips was found under {root}")
    notes = ([f"{unlabelled} rows without a label (unlabelled test set) left out"] if unlabelled else [])
    notes += [f"{len(missing)} of {len(records)} annotated clips not found under {root}"] if missing else []
    return Manifest(rows=rows, classes=classes, root=root.resolve(), notes=notes + missing)
