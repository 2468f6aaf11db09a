"""UCF101's official split files: ``classInd.txt``, ``trainlistNN.txt``, ``testlistNN.txt``.

Class ids follow ``classInd.txt`` (1-based there, 0-based in the manifest), not the
sorted folder names. ``trainlistNN.txt`` lines are ``Class/v_Class_g08_c01.avi 1``;
``testlistNN.txt`` lines carry no label, which is taken from the folder name. A video's
group is its source video, ``<Class>_<NN>`` from the ``_gNN_`` of its name (``prepare.common.group_of``).
"""

from __future__ import annotations

import re
from pathlib import Path

from videoseq.manifest import Manifest, ManifestError, ManifestRow
from videoseq.prepare.common import (
    UCF_GROUP_PATTERN,
    check_class_name,
    find_annotations,
    group_of,
    video_root,
)

GROUP_PATTERN = re.compile(UCF_GROUP_PATTERN)


def find_splits_dir(root: str | Path, splits_dir: str | Path | None = None) -> Path:
    """The folder holding classInd.txt: the given one, or a usual place near the videos."""
    return find_annotations(Path(root), splits_dir, ("ucfTrainTestlist", "splits"), "classInd.txt", "--splits-dir")


def read_class_index(path: Path) -> list[str]:
    """``1 ApplyEyeMakeup`` lines -> class names ordered by their id."""
    by_id: dict[int, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ManifestError(f"{path} line {n}: expected '<id> <ClassName>', got {line!r}")
        by_id[int(parts[0])] = check_class_name(parts[1], f"{path} line {n}")
    ids = sorted(by_id)
    if ids != list(range(1, len(ids) + 1)):
        raise ManifestError(f"{path}: class ids must run 1..N without gaps, got {ids[:5]}...")
    return [by_id[i] for i in ids]


def read_split_list(path: Path, classes: list[str], split: str) -> list[ManifestRow]:
    if not path.is_file():
        raise ManifestError(f"split file {path} does not exist; check data.fold / --fold")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        rel = parts[0].replace("\\", "/")
        label = rel.split("/")[0]
        if label not in classes:
            raise ManifestError(f"{path} line {n}: folder {label!r} is not a class in classInd.txt")
        if len(parts) > 1 and classes[int(parts[1]) - 1] != label:
            raise ManifestError(f"{path} line {n}: id {parts[1]} is {classes[int(parts[1]) - 1]!r}, "
                                f"folder says {label!r}")
        group = group_of(Path(rel).name, label, GROUP_PATTERN)
        rows.append(ManifestRow(path=rel, label=label, split=split, group=group))
    return rows


def manifest_from_ucf101(root: str | Path, splits_dir: str | Path | None = None, fold: int = 1) -> Manifest:
    """Read a UCF101-style tree (``root/<Class>/<video>``, or ``root/videos/<Class>/<video>`` beside
    ``root/splits/``) with its official split files."""
    folder = find_splits_dir(root, splits_dir)
    classes = read_class_index(folder / "classInd.txt")
    rows = read_split_list(folder / f"trainlist{fold:02d}.txt", classes, "train")
    rows += read_split_list(folder / f"testlist{fold:02d}.txt", classes, "test")
    return Manifest(rows=rows, classes=classes, root=video_root(Path(root), classes).resolve())
