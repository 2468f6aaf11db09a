"""Tables: the one CSV writer, formula-safe cells, and reading them back.

Every CSV videoseq writes (manifests, predictions, metrics, reports, bad-video lists,
live step logs) goes through here: cells that a spreadsheet would run as a formula
get a leading ``'`` (``safe_cell``), and ``read_csv`` (``read_cell``) undoes it when
videoseq reads its own files back, so every cell reads back as it was written.

The escaping is unambiguous: a cell gets one extra leading ``'`` when it starts with
``= + - @``, a tab or a CR (a plain negative number such as ``-1.5`` excepted), or with
a ``'`` followed by one of those or by another ``'``; reading removes one leading ``'``
exactly when it is followed by one of those characters or by another ``'``. So
``=SUM(A1)`` is written ``'=SUM(A1)``, a genuine ``'=x`` is written ``''=x``, and
``'quoted`` (a quote before anything else) is written and read as it is.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from videoseq.outputs import atomic_output

CSV_INJECTION_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"
_ESCAPED_AFTER = (*CSV_INJECTION_PREFIXES, ESCAPE)  # what a removable leading quote stands before
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def safe_cell(value: object) -> object:
    """Neutralise spreadsheet formulas: text starting with ``= + - @``, tab or CR gets a leading ``'``.

    Numbers pass untouched, and so does text that is a plain negative number
    (``"-1.5"``); ``"+1"``, ``"-x"`` or ``"=HYPERLINK(...)"`` become ``"'+1"`` etc. Text that
    starts with a quote before one of those or before another quote gets one more quote,
    so ``read_cell`` can tell the two apart (see the module's docstring).
    """
    if not isinstance(value, str):
        return value
    formula = value.startswith(CSV_INJECTION_PREFIXES) and not _NEGATIVE_NUMBER.match(value)
    if formula or (value.startswith(ESCAPE) and value[1:].startswith(_ESCAPED_AFTER)):
        return ESCAPE + value
    return value


def read_cell(value: str) -> str:
    """A cell as it was before ``safe_cell``: one leading quote removed where ``safe_cell`` adds one."""
    if value.startswith(ESCAPE) and value[1:].startswith(_ESCAPED_AFTER):
        return value[1:]
    return value


def safe_row(row: Iterable[object]) -> list[object]:
    """Every cell of a row through ``safe_cell``."""
    return [safe_cell(v) for v in row]


def write_rows(f: IO[str], header: Iterable[str], rows: Iterable[Iterable[object]]) -> None:
    """Formula-safe header and rows to an open text file (a file being written, or stdout)."""
    writer = csv.writer(f)
    writer.writerow(safe_row(header))  # headers may hold class names (confusion.csv)
    writer.writerows(safe_row(row) for row in rows)


def write_csv(path: str | Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> Path:
    """The one CSV writer: formula-safe cells, written to a temporary name then renamed."""
    path = Path(path)
    with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
        write_rows(f, header, rows)
    return path


def read_csv(path: str | Path, *, strip: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (dicts by column) of a CSV, each cell as it was before ``safe_cell``.

    A row shorter than the header gets ``""`` for the missing cells; ``strip`` trims
    white space around every cell first.
    """
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        header = [read_cell(name) for name in reader.fieldnames or []]
        rows = [{read_cell(key): read_cell((value or "").strip() if strip else value or "")
                 for key, value in record.items() if key is not None} for record in reader]
    return header, rows
