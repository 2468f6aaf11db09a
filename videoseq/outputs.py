"""Output files: checked before any work starts, written under a temporary name, renamed when complete.

Every file videoseq writes for a user (CSV, JSON, HTML, PNG, checkpoints, exports, cache
indexes) follows the same two rules, so that a user's work is never lost:

- ``check_output`` runs before the command does its work: an output that is a folder,
  that lies under a file, that is one of the command's inputs, or that exists already
  (without ``overwrite``) is refused with an ``OutputError`` naming the path and the flag;
- ``atomic_output`` writes to a hidden temporary name beside the target
  (``.NAME.tmp-PID``), fsyncs it and renames it over the target only when the write
  finished, so a crash or SIGKILL at any moment leaves either the old file or the new
  one under the real name, never a partial one. ``remove_partial_outputs`` deletes the
  temporary files of processes that were killed while writing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_PARTIAL_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


class OutputError(ValueError):
    """An output path cannot be used; the message names it, the flag and what to do."""


def check_output(path: str | os.PathLike, *, flag: str, overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` as a ``Path``, once it is known to be a safe place for a new output file.

    Refused: a folder, a path under a file, one of ``inputs`` (a video, checkpoint,
    manifest or config the command reads), and an existing file unless ``overwrite``.
    """
    path = Path(path)
    where = f"{flag} {path}"
    if path.is_dir():
        raise OutputError(f"{where} is a folder; give a file name inside it, e.g. {path / 'out.csv'}")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise OutputError(f"{where}: {blocking} is a file, not a folder; choose another output path")
    if any(_same_file(path, source) for source in inputs):
        raise OutputError(f"{where} is one of the inputs of this command; writing it would destroy that input; "
                          "choose another output path")
    if path.exists() and not overwrite:
        raise OutputError(f"{where} exists already; add --overwrite to replace it, or choose another path")
    return path


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    b = Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name ``atomic_output`` writes ``path`` under: ``.NAME.tmp-PID`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``path``.

    >>> with atomic_output("out.csv") as tmp:         # doctest: +SKIP
    ...     tmp.write_text("a,b\\n")                    # out.csv appears only now, whole

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_file(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_file(path: Path) -> None:
    """fsync a file or a folder (so that a rename survives a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_outputs(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed processes left in ``folder``; returns them.

    Only names of the form ``.NAME.tmp-PID`` whose process is gone are removed (a live
    process may still be writing its own).
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for tmp in folder.iterdir():
        match = _PARTIAL_NAME.match(tmp.name)
        if match and tmp.is_file() and not _process_alive(int(match["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
