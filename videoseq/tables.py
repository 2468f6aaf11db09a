"""Tables: the one CSV writer, formula-safe cells, and reading them back.

Every CSV videoseq writes (manifests, predictions, metrics, reports, bad-video lists)
goes through ``write_csv``: cells that a spreadsheet would run as a formula get a
leading ``'`` (``safe_cell``), and ``read_cell`` undoes it when videoseq reads its
own files back.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from pathlib import Path

CSV_INJECTION_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def safe_cell(value: object) -> object:
    """Neutralise spreadsheet formulas: text starting with ``= + - @``, tab or CR gets a leading ``'``.

    Numbers pass untouched, and so does text that is a plain negative number
    (``"-1.5"``); ``"+1"``, ``"-x"`` or ``"=HYPERLINK(...)"`` become ``"'+1"`` etc.
    ``read_cell`` undoes it when videoseq reads its own files back.
    """
    if isinstance(value, str) and value.startswith(CSV_INJECTION_PREFIXES) and not _NEGATIVE_NUMBER.match(value):
        return "'" + value
    return value


def read_cell(value: str) -> str:
    """A cell as it was before ``safe_cell`` (for manifests written by ``write_manifest``)."""
    if value.startswith("'") and value[1:].startswith(CSV_INJECTION_PREFIXES):
        return value[1:]
    return value


def write_csv(path: str | Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> Path:
    """The one CSV writer: formula-safe cells, written to a temporary name then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([safe_cell(v) for v in header])  # headers may hold class names (confusion.csv)
        writer.writerows([safe_cell(v) for v in row] for row in rows)
    os.replace(tmp, path)
    return path
