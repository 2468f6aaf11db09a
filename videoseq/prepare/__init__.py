"""Dataset preparation: every supported layout in, one manifest (CSV + class list) out.

``FORMATS`` is the one list of dataset formats: each name maps to the function
that reads that layout from a ``DataConfig`` (root, splits_dir, fold, group
pattern, split fractions) and to the example its ``videoseq prepare NAME --help``
shows. ``data.format`` accepts these names (and ``manifest``), and ``videoseq
prepare`` has one subcommand per name. This package imports no torch, so the
config and the command line can read the list cheaply.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from videoseq.errors import UsageError
from videoseq.manifest import Manifest, ManifestError, read_manifest, write_manifest
from videoseq.outputs import check_output_folder, write_text
from videoseq.prepare.folder import manifest_from_folders
from videoseq.prepare.hmdb51 import manifest_from_hmdb51
from videoseq.prepare.jester import manifest_from_jester
from videoseq.prepare.kinetics import manifest_from_kinetics
from videoseq.prepare.msrvtt import manifest_from_msrvtt
from videoseq.prepare.msvd import manifest_from_msvd
from videoseq.prepare.ucf101 import find_splits_dir, manifest_from_ucf101

if TYPE_CHECKING:
    from videoseq.config import DataConfig

__all__ = [
    "FORMATS", "DatasetFormat", "find_splits_dir", "manifest_from_folders", "manifest_from_hmdb51",
    "manifest_from_jester", "manifest_from_kinetics", "manifest_from_msrvtt", "manifest_from_msvd",
    "manifest_from_ucf101", "prepare_dataset", "resolve_manifest", "summarize",
]


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset layout: how to read it from a ``DataConfig``, and an example of ``videoseq prepare NAME``."""

    read: Callable[[DataConfig], Manifest]
    example: str  # what follows `videoseq prepare NAME` in the example of its --help (then --out data/NAME)


def _folder(data: DataConfig) -> Manifest:
    return manifest_from_folders(
        data.root, val_fraction=data.val_fraction, test_fraction=data.test_fraction, group_pattern=data.group_pattern
    )


FORMATS: dict[str, DatasetFormat] = {
    "ucf101": DatasetFormat(lambda data: manifest_from_ucf101(data.root, data.splits_dir, data.fold),
                            "UCF-101 --splits-dir ucfTrainTestlist --fold 2"),
    "hmdb51": DatasetFormat(lambda data: manifest_from_hmdb51(data.root, data.splits_dir, data.fold),
                            "hmdb51 --splits-dir testTrainMulti_7030_splits --fold 1"),
    "kinetics": DatasetFormat(lambda data: manifest_from_kinetics(data.root, data.splits_dir),
                              "kinetics400 --splits-dir kinetics400/annotations"),
    "jester": DatasetFormat(lambda data: manifest_from_jester(data.root, data.splits_dir),
                            "20bn-jester-v1 --splits-dir jester_csvs"),
    "folder": DatasetFormat(_folder, "my_clips --val-fraction 0.1 --test-fraction 0.2"),
    "msrvtt": DatasetFormat(lambda data: manifest_from_msrvtt(data.root, data.splits_dir),
                            "MSRVTT/videos --splits-dir MSRVTT/videodatainfo.json"),
    "msvd": DatasetFormat(lambda data: manifest_from_msvd(data.root, data.splits_dir),
                          "YouTubeClips --splits-dir 'MSR Video Description Corpus.csv'"),
}


MAX_MISSING_FRACTION = 0.05  # listed files not on disk: left out (and named in the notes) up to this share


def resolve_manifest(data: DataConfig, out_dir: str | Path | None = None) -> Manifest:
    """The manifest a ``DataConfig`` names: a manifest file, or a dataset root read by format.

    A manifest built from a root lists only files that exist (``check_listed_files``) and is
    written to ``out_dir`` when given, so a run or ``prepare`` records exactly which videos
    and splits it used.
    """
    if data.manifest:
        return read_manifest(data.manifest)
    if not data.root:
        raise UsageError(f"set data.manifest (a manifest CSV) or data.root with data.format ({' | '.join(FORMATS)})")
    if data.format not in FORMATS:
        raise UsageError(f"data.format={data.format!r} needs data.manifest; with data.root use one of {list(FORMATS)}")
    manifest = check_listed_files(FORMATS[data.format].read(data), f"data.root {data.root} ({data.format})")
    if out_dir is not None:
        write_manifest(manifest, out_dir)
    return manifest


def check_listed_files(manifest: Manifest, where: str) -> Manifest:
    """``manifest`` without the rows whose file is missing, each named in the notes; more than
    ``MAX_MISSING_FRACTION`` of the files missing is a ``ManifestError`` (a wrong root, most likely)."""
    files = list(dict.fromkeys(manifest.resolve(r.path) for r in manifest.rows))
    missing = [f for f in files if not os.path.exists(f)]
    if not missing:
        return manifest
    if len(missing) > MAX_MISSING_FRACTION * len(files):
        raise ManifestError(f"{len(missing)} of the {len(files)} files that {where} lists are not on disk, e.g. "
                            f"{missing[:3]}; point data.root (the dataset root) at the folder that holds the class "
                            "folders (ROOT/<Class>/ or ROOT/videos/<Class>/)")
    gone = set(missing)
    rows = [r for r in manifest.rows if manifest.resolve(r.path) not in gone]
    notes = [f"{len(missing)} of {len(files)} listed files are not on disk and were left out"]
    return Manifest(rows=rows, classes=manifest.classes, root=manifest.root,
                    notes=manifest.notes + notes + [f"missing: {f}" for f in missing])


def summarize(manifest: Manifest, max_notes: int = 10) -> str:
    """A few lines: classes, videos per split, per-class range, and the first notes."""
    per_split = manifest.splits()
    per_class = Counter(r.label for r in {(r.path, r.label): r for r in manifest.rows}.values())
    counts = [per_class.get(c, 0) for c in manifest.classes]
    lines = [
        f"classes: {len(manifest.classes)} ({', '.join(manifest.classes[:5])}{', ...' if len(counts) > 5 else ''})",
        "videos per split: " + ", ".join(f"{s}={n}" for s, n in sorted(per_split.items())),
        f"videos per class: min {min(counts)}, max {max(counts)}",
    ]
    empty = [c for c, n in zip(manifest.classes, counts) if n == 0]
    if empty:
        lines.append(f"classes without videos: {empty[:10]}")
    if manifest.notes:
        lines.append(f"notes ({len(manifest.notes)}):")
        lines += [f"  {note}" for note in manifest.notes[:max_notes]]
        if len(manifest.notes) > max_notes:
            lines.append(f"  ... {len(manifest.notes) - max_notes} more in notes.txt")
    return "\n".join(lines)


PREPARE_FILES = ("manifest.csv", "classes.txt", "summary.txt", "notes.txt")


def prepare_dataset(data: DataConfig, out_dir: str | Path, overwrite: bool = False) -> tuple[Manifest, str]:
    """Build the manifest of ``data.root``; write manifest.csv, classes.txt, summary.txt, notes.txt.

    Files of an earlier manifest in ``out_dir`` need ``overwrite``; nothing is written when the
    layout cannot be read or too many of its files are missing (``check_listed_files``).
    """
    out_dir = check_output_folder(out_dir, PREPARE_FILES, flag="--out", overwrite=overwrite)
    manifest = resolve_manifest(data, out_dir)
    summary = f"{data.format} {data.root}\n" + summarize(manifest)
    write_text(out_dir / "summary.txt", summary + "\n")
    write_text(out_dir / "notes.txt", "".join(f"{note}\n" for note in manifest.notes))
    return manifest, summary
