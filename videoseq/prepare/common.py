"""Helpers every dataset format shares: safe class names, finding annotation files, groups."""

from __future__ import annotations

import re
from pathlib import Path

from videoseq.manifest import ManifestError

# A class name becomes a folder name, a line of classes.txt and a CSV cell: letters,
# digits, spaces and a few marks (Kinetics has "massaging person's head"), no path
# separators, no leading dot or dash, no ";" (Jester's CSV separator).
SAFE_CLASS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.,'&+()-]*$")
UCF_GROUP_PATTERN = r"_g(\d+)_"  # UCF's v_<Class>_g08_c01.avi: clips of one source video share g08


def check_class_name(name: str, where: str) -> str:
    """``name`` when it is a safe path component, else a ``ManifestError`` naming ``where``."""
    if not SAFE_CLASS.match(name) or name.endswith((" ", ".")):
        raise ManifestError(
            f"class name {name!r} in {where} is not a safe path component (letters, digits, spaces and "
            "_ . , ' & + ( ) - only, starting with a letter or digit); rename it"
        )
    return name


def find_annotations(root: Path, given: str | Path | None, names: tuple[str, ...], marker: str, flag: str) -> Path:
    """The folder that holds ``marker`` (a glob): ``given``, or ``root/<name>`` / ``root/../<name>``."""
    candidates = [Path(given)] if given else [base / name for base in (root, root.parent) for name in names]
    for folder in candidates:
        if folder.is_dir() and next(folder.glob(marker), None) is not None:
            return folder
    raise ManifestError(
        f"no {marker} in {[str(c) for c in candidates]}; pass the folder of the annotation files ({flag})"
    )


def video_root(root: Path, classes: list[str]) -> Path:
    """Where the class folders are: ``ROOT/<Class>/``, or ``ROOT/videos/<Class>/`` beside ``ROOT/splits/``
    (the layout ``videoseq synth`` writes)."""
    inside = root / "videos"
    if not any((root / c).is_dir() for c in classes) and any((inside / c).is_dir() for c in classes):
        return inside
    return root


def group_of(name: str, label: str, pattern: re.Pattern) -> str:
    """The source a file came from: ``<label>_<first pattern group>``, else the file itself.

    ``group_of("v_Run_g08_c01.avi", "Run", re.compile(UCF_GROUP_PATTERN))`` is ``"Run_08"``;
    a name the pattern does not match is its own group, ``"Run/<stem>"``.
    """
    match = pattern.search(name)
    return f"{label}_{match.group(1)}" if match else f"{label}/{Path(name).stem}"
