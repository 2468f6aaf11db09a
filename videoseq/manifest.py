"""Manifests: the CSV of videos (``path,label,split[,group,caption]``) and the class list beside it.

A manifest is ``manifest.csv`` with columns ``path,label,split`` and optional
``group`` and ``caption`` (several rows per video give several reference captions),
plus ``classes.txt`` beside it: one class name per line, line order = class id.
Relative paths are relative to the manifest's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from videoseq.errors import InputError
from videoseq.outputs import write_text
from videoseq.tables import read_csv, write_csv

REQUIRED_COLUMNS = ("path", "label", "split")
OPTIONAL_COLUMNS = ("group", "caption")


class ManifestError(InputError, ValueError):
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
        return resolve_path(self.root, path)

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
        for _path, split in {(r.path, r.split) for r in self.rows}:
            counts[split] = counts.get(split, 0) + 1
        return counts


def resolve_path(root: Path, path: str) -> str:
    """A manifest's path: as written when absolute, else under the manifest's folder ``root``."""
    return path if os.path.isabs(path) else os.path.normpath(root / path)


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
    header, records = read_csv(csv_path, strip=True)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"manifest {csv_path} lacks column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    return [_row(record, csv_path, n) for n, record in enumerate(records, start=2)]


def _row(record: dict, csv_path: Path, line: int) -> ManifestRow:
    values = {k: record.get(k, "") for k in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    for key in REQUIRED_COLUMNS:
        if not values[key]:
            raise ManifestError(f"manifest {csv_path} line {line}: empty {key!r}")
    return ManifestRow(**values)



def write_manifest(manifest: Manifest, out_dir: str | Path, csv_name: str = "manifest.csv") -> Path:
    """Write ``csv_name`` (paths relative to ``out_dir``) and ``classes.txt`` beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS)
    rows = [
        [os.path.relpath(manifest.resolve(r.path), out_dir.resolve()), r.label, r.split, r.group, r.caption]
        for r in manifest.rows
    ]
    write_text(out_dir / "classes.txt", "".join(f"{c}\n" for c in manifest.classes))
    return write_csv(out_dir / csv_name, header, rows)
