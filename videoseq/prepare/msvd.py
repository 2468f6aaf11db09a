"""MSVD (Microsoft Research Video Description): its CSV of clip ids, times and descriptions.

``MSR Video Description Corpus.csv`` has columns ``VideoID,Start,End,WorkerID,Source,
AnnotationTime,Language,Description``; the clip of a row is ``<VideoID>_<Start>_<End>.<ext>``
(``YouTubeClips/``). English descriptions become the captions, one manifest row each.
Splits follow the usual 1200 train / 100 val / 670 test clips in the order of
``youtube_mapping.txt`` (``<clip> vid<N>``) when that file lies beside the CSV or the
root, else in the order clips first appear in the CSV (a note says so). MSVD has no
classes: every clip gets the label ``clip``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from videoseq.manifest import Manifest, ManifestError, ManifestRow
from videoseq.prepare.common import find_annotations
from videoseq.prepare.kinetics import index_videos

MSVD_COLUMNS = ("VideoID", "Start", "End", "Language", "Description")
MSVD_SPLIT_SIZES = (("train", 1200), ("val", 100), ("test", 670))


def find_msvd_csv(root: Path, annotations: str | Path | None) -> Path:
    """The given CSV, or the one CSV near the root."""
    if annotations and Path(annotations).is_file():
        return Path(annotations)
    folder = find_annotations(root, annotations, (".", ".."), "*Description*.csv", "--splits-dir CSV")
    return sorted(folder.glob("*Description*.csv"))[0]


def read_msvd_csv(path: Path) -> dict[str, list[str]]:
    """``{clip stem: English descriptions}`` in order of first appearance."""
    clips: dict[str, list[str]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MSVD_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path} lacks column(s) {missing}; the MSVD CSV has {list(MSVD_COLUMNS)} and more")
        for record in reader:
            stem = f"{record['VideoID']}_{record['Start']}_{record['End']}"
            texts = clips.setdefault(stem, [])
            if (record["Language"] or "").strip() == "English" and (record["Description"] or "").strip():
                texts.append(record["Description"].strip())
    return clips


def clip_order(csv_path: Path, root: Path, clips: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Clips in split order (youtube_mapping.txt's vid numbers, else CSV order) and notes."""
    for folder in (csv_path.parent, root, root.parent):
        mapping = folder / "youtube_mapping.txt"
        if mapping.is_file():
            pairs = [line.split() for line in mapping.read_text().splitlines() if line.strip()]
            number = {clip: int(vid.removeprefix("vid")) for clip, vid in pairs}
            return sorted((c for c in clips if c in number), key=number.__getitem__), []
    return list(clips), ["no youtube_mapping.txt found: splits follow the CSV order of the clips"]


def manifest_from_msvd(root: str | Path, annotations: str | Path | None = None) -> Manifest:
    """One row per (clip, English description) of the MSVD clips found under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"MSVD root {root} is not a folder")
    csv_path = find_msvd_csv(root, annotations)
    clips = read_msvd_csv(csv_path)
    order, notes = clip_order(csv_path, root, clips)
    splits = [name for name, size in MSVD_SPLIT_SIZES for _ in range(size)]
    on_disk = index_videos(root)
    rows, missing = [], []
    for position, stem in enumerate(order):
        split = splits[position] if position < len(splits) else "test"
        if stem not in on_disk:
            missing.append(f"missing: {split}/{stem}")
            continue
        for caption in clips[stem] or [""]:
            rows.append(ManifestRow(on_disk[stem], "clip", split, group=stem.rsplit("_", 2)[0], caption=caption))
    if not rows:
        raise ManifestError(f"none of the {len(clips)} MSVD clips of {csv_path} was found under {root}")
    notes += [f"{len(missing)} of {len(clips)} clips not found under {root}"] if missing else []
    return Manifest(rows=rows, classes=["clip"], root=root.resolve(), notes=notes + missing)
