"""Plain class folders with no split files: ``root/<Class>/<video>``.

Classes are the sorted folder names. The split is stratified by class and
group-aware: files whose names share a group (UCF's ``_gNN_`` by default) always
land in the same split, so one source video never spans train and test.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from videoseq.manifest import Manifest, ManifestError, ManifestRow
from videoseq.prepare.common import UCF_GROUP_PATTERN, check_class_name, group_of
from videoseq.progress import progress_bar
from videoseq.video.decoder import VIDEO_EXTENSIONS, is_frame_folder


def list_class_videos(root: Path) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """``(classes, [(relative path, class)], skipped)``; hidden and empty folders are skipped."""
    if not root.is_dir():
        raise ManifestError(f"dataset root {root} is not a folder of class folders")
    classes, items, skipped = [], [], []
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    for folder in progress_bar(folders, desc=f"listing {root}", unit="class"):
        if folder.name.startswith("."):
            skipped.append(f"{folder.name}: hidden folder")
            continue
        check_class_name(folder.name, f"class folder {folder}")
        videos = sorted(
            p for p in folder.iterdir()
            if not p.name.startswith(".") and (p.suffix.lower() in VIDEO_EXTENSIONS or is_frame_folder(p))
        )
        if not videos:
            skipped.append(f"{folder.name}: no videos")
            continue
        classes.append(folder.name)
        items += [(f"{folder.name}/{v.name}", folder.name) for v in videos]
    if not classes:
        raise ManifestError(f"no class folders with videos under {root}")
    return classes, items, skipped


def _folder_root(root: Path) -> Path:
    """``ROOT/videos`` when the class folders are there (``ROOT/videos/<Class>/`` beside ``ROOT/splits/``),
    else ROOT."""
    try:
        list_class_videos(root)
        return root
    except ManifestError:
        return root / "videos"


def split_groups(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of about ``fraction`` of the items, whole groups, stratified by label."""
    from sklearn.model_selection import (
        StratifiedGroupKFold,  # imported here: the format list stays cheap to import
    )

    n_splits = max(2, int(round(1 / fraction)))
    largest = max(np.unique(labels, return_counts=True)[1])
    if largest < n_splits:
        raise ManifestError(
            f"holding out {fraction:.0%} of each class (1 in {n_splits}) needs a class with at least {n_splits} "
            f"videos; the largest has {largest}. Add videos, or raise the fraction (data.val_fraction / "
            "data.test_fraction, --val-fraction / --test-fraction), or set it to 0 for no such split"
        )
    if len(set(groups)) < n_splits:
        raise ManifestError(
            f"a {fraction:g} split holds out 1 of {n_splits} folds, and {len(set(groups))} groups (source videos) "
            f"with at most {largest} videos per class cannot fill {n_splits} folds; lower --val-fraction / "
            "--test-fraction (data.val_fraction / data.test_fraction), add videos, or check data.group_pattern"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    try:
        _, held = next(splitter.split(np.zeros(len(labels)), labels, groups))
    except ValueError as err:  # scikit-learn's own checks of the counts
        raise ManifestError(f"the folder format cannot make a {fraction:g} split of these videos ({err}); lower "
                            "--val-fraction / --test-fraction or add videos") from None
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def manifest_from_folders(
    root: str | Path,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    group_pattern: str = UCF_GROUP_PATTERN,
    seed: int = 0,
) -> Manifest:
    """Stratified, group-aware train/val/test split of plain class folders."""
    root = Path(root)
    if (root / "videos").is_dir():
        root = _folder_root(root)
    classes, items, skipped = list_class_videos(root)
    pattern = re.compile(group_pattern)
    labels = np.array([label for _, label in items])
    groups = np.array([group_of(Path(p).name, label, pattern) for p, label in items])
    split = np.full(len(items), "train", dtype=object)
    if test_fraction > 0:
        split[split_groups(labels, groups, test_fraction, seed)] = "test"
    rest = np.flatnonzero(split == "train")
    if val_fraction > 0:
        val = split_groups(labels[rest], groups[rest], val_fraction / (1 - test_fraction), seed + 1)
        split[rest[val]] = "val"
    rows = [
        ManifestRow(path=p, label=label, split=str(s), group=str(g))
        for (p, label), s, g in zip(items, split, groups)
    ]
    return Manifest(rows=rows, classes=classes, root=root.resolve(), notes=skipped)
