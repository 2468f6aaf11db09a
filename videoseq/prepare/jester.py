"""Jester-style frame folders: ``root/<id>/00001.jpg ...`` with ``;``-separated label CSVs.

The 20BN files are ``jester-v1-labels.csv`` (one class a line, in id order),
``jester-v1-train.csv`` and ``jester-v1-validation.csv`` (``34870;Drumming Fingers``)
and ``jester-v1-test.csv`` (ids only: left out, counted in the notes). Any CSV
whose name holds ``train`` / ``valid`` / ``test`` / ``labels`` is read the same
way. Class ids follow the labels file when there is one, else the sorted labels.
Each manifest path is a frame folder, which ``video.decoder.VideoReader`` reads like a
video, so these clips go through the same samplers and transforms as files.
"""

from __future__ import annotations

from pathlib import Path

from videoseq.manifest import Manifest, ManifestError, ManifestRow
from videoseq.prepare.common import check_class_name, find_annotations
from videoseq.video.decoder import is_frame_folder

SPLIT_FILES = (("train", "train"), ("valid", "val"), ("test", "test"))  # name part -> split


def read_jester_list(path: Path) -> list[tuple[str, str]]:
    """``(id, label)`` pairs of one ``id;label`` CSV; the label is empty on test lines."""
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        video_id, _, label = line.partition(";")
        video_id, label = video_id.strip(), label.strip()
        if not video_id or "/" in video_id or "\\" in video_id or video_id.startswith("."):
            raise ManifestError(f"{path} line {n}: expected '<id>;<label>' with a plain folder name, got {line!r}")
        pairs.append((video_id, check_class_name(label, f"{path} line {n}") if label else ""))
    return pairs


def jester_files(folder: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The labels file (or None) and ``(split file, split)`` pairs in ``folder``."""
    csvs = sorted(folder.glob("*.csv"))
    labels = next((p for p in csvs if "label" in p.stem.lower()), None)
    splits = [(p, split) for p in csvs if p != labels
              for part, split in SPLIT_FILES if part in p.stem.lower()]
    return labels, splits


def manifest_from_jester(root: str | Path, annotations: str | Path | None = None) -> Manifest:
    """A manifest of frame folders ``root/<id>`` from the Jester label CSVs."""
    root = Path(root)
    folder = find_annotations(root, annotations, (".", "annotations"), "*train*.csv", "--splits-dir")
    labels_file, split_files = jester_files(folder)
    rows, notes, missing = [], [], []
    for path, split in split_files:
        pairs = read_jester_list(path)
        unlabelled = sum(1 for _, label in pairs if not label)
        if unlabelled:
            notes.append(f"{path.name}: {unlabelled} lines without a label left out")
        for video_id, label in pairs:
            if not label:
                continue
            if is_frame_folder(root / video_id):
                rows.append(ManifestRow(path=video_id, label=label, split=split, group=video_id))
            else:
                missing.append(f"missing or empty frame folder: {video_id} ({path.name})")
    if labels_file is not None:
        lines = labels_file.read_text().splitlines()
        classes = [check_class_name(c.strip(), str(labels_file)) for c in lines if c.strip()]
        unknown = sorted({r.label for r in rows} - set(classes))
        if unknown:
            raise ManifestError(f"labels {unknown[:10]} are not in {labels_file}; add them or fix the split CSVs")
    else:
        classes = sorted({r.label for r in rows})
    if not rows:
        raise ManifestError(f"no labelled frame folder of the CSVs in {folder} exists under {root}")
    if missing:
        notes.append(f"{len(missing)} listed frame folders missing or empty under {root}")
    return Manifest(rows=rows, classes=classes, root=root.resolve(), notes=notes + missing)
