"""Journals: what a run over many videos has finished, on disk as soon as each video is done.

A journal part is a JSON-lines file beside the output (``BASE-R.jsonl``, one per process
of the run, ``R`` its rank): a header line with the run's settings and a digest of its
inputs, then one line per finished video with its input index, path, size and mtime, and
the data that rebuild its part of the output. Each line is written and flushed (handed to
the operating system) before the next video starts; the part is fsynced with the first
line written ``SYNC_EVERY`` seconds or more after its last fsync, and when it closes (an
fsync per line cost the model process several milliseconds a video).
Arrays (the caches' features and frames) go to a binary file beside it (``BASE-R.bin``),
fsynced before the line that points into it, so no line ever points to bytes not on disk.

A SIGKILL or crash of the process at any moment loses at most the videos in progress (the
flushed lines are the kernel's to write); a power cut or a crash of the machine may also
lose the lines written since the last fsync (about ``SYNC_EVERY`` seconds of videos), which
a resume does again. A line cut short
is ignored when reading, and cut off (with any bytes of the binary file that no line
points to) when the same process resumes its part. A part is created with its header
written under a temporary name and renamed (``outputs.atomic_output``), so it never
exists without one.

Resuming checks every part against the new run: other settings, another list of inputs
or a finished video whose file changed since is a ``JournalError`` that names the
difference; the run must be the same to continue it, so the merged output is the one an
uninterrupted run gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from videoseq.errors import UsageError
from videoseq.outputs import atomic_output

JOURNAL_FORMAT = "videoseq-journal-1"
SYNC_EVERY = 1.0  # seconds: how long a flushed journal line may wait for its fsync
_PART_NAME = re.compile(r"^(?P<base>.+)-(?P<rank>\d+)\.jsonl$")


class JournalError(UsageError):
    """A journal cannot be continued by this run; the message says what differs and what to do."""


@dataclass
class Entry:
    """One finished video of a journal."""

    index: int  # position in the run's inputs
    path: str
    data: dict  # what rebuilds the video's part of the output
    error: str = ""  # why the video failed ("" when it succeeded)
    stamp: list | None = None  # [size, mtime_ns] of the file when it was done (None: it did not exist)
    arrays: dict = field(default_factory=dict)  # name -> [offset, dtype, shape] in the part's .bin
    part: Path | None = None

    def load_arrays(self) -> dict[str, np.ndarray]:
        """The entry's arrays, memory-mapped from the part's binary file."""
        binary = _binary_path(self.part)
        return {name: np.memmap(binary, dtype=np.dtype(dtype), mode="r", offset=offset, shape=tuple(shape))
                for name, (offset, dtype, shape) in self.arrays.items()}


def inputs_digest(paths: list[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (a checkpoint: the same weights give the same rows)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: str) -> list | None:
    """``[size, mtime_ns]`` of a file or folder, None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def part_path(base: Path, rank: int) -> Path:
    return base.with_name(f"{base.name}-{rank}.jsonl")


def _binary_path(part: Path) -> Path:
    return part.with_suffix(".bin")


def part_paths(base: Path) -> list[Path]:
    """Every journal part of ``base`` on disk, by rank."""
    found = [(int(m["rank"]), p) for p in base.parent.glob(f"{base.name}-*.jsonl")
             if (m := _PART_NAME.match(p.name)) and m["base"] == base.name]
    return [p for _, p in sorted(found)]


@dataclass
class Part:
    """A journal part as read: its header (None when the header never reached the disk) and entries."""

    path: Path
    header: dict | None
    entries: list[Entry]
    good_bytes: int  # length of the part up to its last whole line


def read_part(path: Path) -> Part:
    """Read a part; a last line cut short by a kill is left out."""
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1  # bytes after the last newline: a line cut short
    lines = raw[:end].splitlines()
    if not lines:
        return Part(path, None, [], 0)
    try:
        header, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    except ValueError as err:
        raise JournalError(f"journal {path} is damaged ({err}); delete it to start that part afresh") from err
    if header.get("format") != JOURNAL_FORMAT:
        raise JournalError(f"{path} is not a videoseq journal ({JOURNAL_FORMAT}); move it away")
    entries = [Entry(**record, part=path) for record in records]
    return Part(path, header, entries, end)


def read_journal(base: Path) -> list[Part]:
    return [read_part(path) for path in part_paths(base)]


def check_parts(parts: list[Part], header: dict, paths: list[str], restart: str) -> None:
    """Every part was written by a run with this ``header`` over these ``paths``, whose done files are unchanged.

    ``restart`` says how to start afresh instead (a flag, or files to delete).
    """
    for part in parts:
        if part.header is None:
            continue
        theirs, ours = part.header["settings"], header["settings"]
        differ = [f"{key}: journal {theirs.get(key)!r} vs now {value!r}" for key, value in ours.items()
                  if theirs.get(key) != value]
        if differ:
            raise JournalError(f"journal {part.path} was written by a run with other settings ({'; '.join(differ)});"
                               f" rerun with the same options to continue it, or {restart}")
        if part.header["inputs_sha256"] != header["inputs_sha256"]:
            raise JournalError(f"journal {part.path} was written for other inputs ({_first_difference(part, paths)});"
                               f" rerun with the same inputs to continue it, or {restart}")
        for entry in part.entries:
            if entry.stamp != file_stamp(entry.path):
                raise JournalError(f"{entry.path} changed since journal {part.path} recorded it (size or "
                                   f"modification time); {restart}")


def _first_difference(part: Part, paths: list[str]) -> str:
    then = part.header["inputs"]
    for entry in part.entries:
        if entry.index >= len(paths) or paths[entry.index] != entry.path:
            now = paths[entry.index] if entry.index < len(paths) else "nothing"
            return f"{len(paths)} now, {then} then; input #{entry.index} was {entry.path}, is now {now}"
    return f"{len(paths)} now, {then} then"


def journal_header(settings: dict, paths: list[str]) -> dict:
    return {"format": JOURNAL_FORMAT, "settings": settings, "inputs": len(paths), "inputs_sha256": inputs_digest(paths)}


class JournalWriter:
    """This process's part, open for appending: a new one, or the one it left (``resume``), cut to its whole lines."""

    def __init__(self, base: Path, rank: int, header: dict) -> None:
        self.path = part_path(base, rank)
        self.binary = _binary_path(self.path)
        old = read_part(self.path) if self.path.exists() else None
        if old is None or old.header is None:
            with atomic_output(self.path) as tmp:
                tmp.write_text(json.dumps(header) + "\n")
            self.binary.unlink(missing_ok=True)
            old = read_part(self.path)
        ends = [offset + np.dtype(dtype).itemsize * int(np.prod(shape))
                for entry in old.entries for offset, dtype, shape in entry.arrays.values()]
        self.binary_size = max(ends, default=0)
        self.file = open(self.path, "r+b")
        self.file.truncate(old.good_bytes)
        self.file.seek(old.good_bytes)
        self.bin = None  # opened with the first arrays
        self.synced = time.monotonic()
        if self.binary.exists():
            os.truncate(self.binary, self.binary_size)

    def append(self, index: int, path: str, data: dict, error: str = "",
               arrays: dict[str, np.ndarray] | None = None) -> None:
        """One finished video: flushed when this returns; fsynced too when the last fsync is ``SYNC_EVERY`` s old."""
        refs = {}
        if arrays and self.bin is None:
            self.bin = open(self.binary, "ab")
        for name, array in (arrays or {}).items():
            array = np.ascontiguousarray(array)
            refs[name] = [self.binary_size, array.dtype.str, list(array.shape)]
            self.bin.write(array.data)
            self.binary_size += array.nbytes
        if refs:
            self.bin.flush()
            os.fsync(self.bin.fileno())
        record = {"index": index, "path": path, "data": data, "error": error, "stamp": file_stamp(path),
                  "arrays": refs}
        self.file.write((json.dumps(record, separators=(",", ":")) + "\n").encode())
        self.file.flush()
        if time.monotonic() - self.synced >= SYNC_EVERY:
            self.sync()

    def sync(self) -> None:
        """Every line written so far, on disk."""
        os.fsync(self.file.fileno())
        self.synced = time.monotonic()

    def close(self) -> None:
        self.sync()
        self.file.close()
        if self.bin is not None:
            self.bin.close()


def remove_journal(base: Path) -> None:
    """Delete every part of ``base`` and its binary file."""
    for path in part_paths(base):
        _binary_path(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
