"""HMDB51's official splits: ``testTrainMulti_7030_splits/<class>_test_split<N>.txt``.

Each line is ``<video file> <marker>``: 1 train, 2 test, 0 not used in that split
(left out of the manifest and counted in its notes). Videos live in
``root/<class>/<video file>``. Classes are the sorted class names of the split
files, the order MMAction2 and torchvision use.

HMDB51 file names start with the source film and then the class
(``April_09_brush_hair_u_nm_np1_ba_goo_0.avi``): the part before ``_<class>_`` is
the group, so clips cut from one film share a group.
"""

from __future__ import annotations

import re
from pathlib import Path

from videoseq.manifest import Manifest, ManifestError, ManifestRow
from videoseq.prepare.common import check_class_name, find_annotations, video_root

SPLIT_MARKERS = {"1": "train", "2": "test", "0": None}


def find_hmdb51_splits(root: str | Path, splits_dir: str | Path | None = None) -> Path:
    """The folder of ``<class>_test_split1.txt`` files: the given one or a usual place."""
    names = ("testTrainMulti_7030_splits", "splits")
    return find_annotations(Path(root), splits_dir, names, "*_test_split1.txt", "--splits-dir")


def hmdb51_group(file_name: str, label: str) -> str:
    """The source film of an HMDB51 clip: the name before ``_<class>_``, else the clip itself."""
    stem = Path(file_name).stem
    head, found, _ = stem.partition(f"_{label}_")
    return f"{label}/{head}" if found and head else f"{label}/{stem}"


def read_hmdb51_split(path: Path, label: str) -> tuple[list[ManifestRow], int]:
    """Rows of one class split file and the number of lines marked 0 (unused)."""
    rows, unused = [], 0
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in SPLIT_MARKERS:
            raise ManifestError(f"{path} line {n}: expected '<video file> <0|1|2>', got {line!r}")
        split = SPLIT_MARKERS[parts[1]]
        if split is None:
            unused += 1
            continue
        rows.append(ManifestRow(path=f"{label}/{parts[0]}", label=label, split=split,
                                group=hmdb51_group(parts[0], label)))
    return rows, unused


def manifest_from_hmdb51(root: str | Path, splits_dir: str | Path | None = None, fold: int = 1) -> Manifest:
    """Read an HMDB51-style tree (``root/<class>/<video>``) with its official split files."""
    folder = find_hmdb51_splits(root, splits_dir)
    pattern = re.compile(rf"^(.+)_test_split{fold}\.txt$")
    files = sorted((m.group(1), p) for p in folder.iterdir() if (m := pattern.match(p.name)))
    if not files:
        raise ManifestError(f"no <class>_test_split{fold}.txt files in {folder}; check --fold (1, 2 or 3)")
    rows, notes = [], []
    for label, path in files:
        class_rows, unused = read_hmdb51_split(path, check_class_name(label, str(path)))
        rows += class_rows
        if unused:
            notes.append(f"{label}: {unused} videos marked 0 (unused) in split {fold}")
    classes = [label for label, _ in files]
    return Manifest(rows=rows, classes=classes, root=video_root(Path(root), classes).resolve(), notes=notes)
