"""Output files: checked before any work starts, written under a temporary name, renamed when complete.

Every file videoseq writes for a user (CSV, JSON, HTML, PNG, checkpoints, exports, cache
indexes) follows the same two rules, so that a user's work is never lost:

- ``check_output`` (one file) and ``check_output_folder`` (the files a command writes
  into a folder) run before the command does its work, before it opens its inputs: an
  output that is a folder, that lies under a file, that is one of the command's
  inputs, or that exists already (without ``overwrite``) is refused with an
  ``OutputError`` naming the path and the flag (exit status 2);
- ``atomic_output`` writes to a hidden temporary name beside the target
  (``.NAME.tmp-PID``), fsyncs it and renames it over the target only when the write
  finished, so a crash or SIGKILL at any moment leaves either the old file or the new
  one under the real name, never a partial one. ``remove_partial_outputs`` deletes the
  temporary files of processes that were killed while writing. ``write_text``,
  ``write_bytes`` and ``save_figure`` are ``atomic_output`` for text, bytes and
  matplotlib figures.

A command writes its outputs only after its inputs opened (a checkpoint loaded, a
source decoding), so a failed input leaves every existing file as it was.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from videoseq.errors import UsageError

_PARTIAL_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(\.\w+)?$")


class OutputError(UsageError):
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
    _refuse_under_a_file(path, where)
    if any(_same_file(path, source) for source in inputs):
        raise OutputError(f"{where} is one of the inputs of this command; writing it would destroy that input; "
                          "choose another output path")
    if path.exists() and not overwrite:
        raise OutputError(f"{where} exists already; add --overwrite to replace it, or choose another path")
    return path


def check_output_folder(folder: str | os.PathLike, names: Iterable[str], *, flag: str, overwrite: bool = False,
                        inputs: Iterable[str | os.PathLike] = (),
                        hint: str = "add --overwrite to replace them, or choose another folder") -> Path:
    """``folder`` as a ``Path``, once it is a safe place for the output files ``names``.

    Refused: a folder that is a file or lies under one, an output that is one of
    ``inputs``, and outputs that exist already unless ``overwrite`` (``hint`` says what to do).
    """
    folder = Path(folder)
    where = f"{flag} {folder}"
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{where} is a file, not a folder; choose a folder for the outputs")
    _refuse_under_a_file(folder, where)
    inputs = list(inputs)
    paths = [folder / name for name in names]
    destroyed = [p.name for p in paths if any(_same_file(p, source) for source in inputs)]
    if destroyed:
        raise OutputError(f"{where}: writing {destroyed} there would destroy inputs of this command; "
                          "choose another output folder")
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{where} already holds {existing}; {hint}")
    return folder


def _refuse_under_a_file(path: Path, where: str) -> None:
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise OutputError(f"{where}: {blocking} is a file, not a folder; choose another output path")


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    b = Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def partial_path(path: str | os.PathLike, *, keep_suffix: bool = False) -> Path:
    """The temporary name ``atomic_output`` writes ``path`` under: ``.NAME.tmp-PID`` beside it.

    ``keep_suffix`` ends it with the suffix of ``path`` (``.NAME.tmp-PID.mp4``), for writers
    that choose the format by the file name (OpenCV's ``VideoWriter``).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix if keep_suffix else ''}")


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Put the finished temporary file ``tmp`` in place as ``path``: fsync, rename, fsync the folder."""
    tmp, path = Path(tmp), Path(path)
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_file(path.parent)
    return path


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
        commit(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) to ``path`` through ``atomic_output``: the old file or the new one, never half of one."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` to ``path`` through ``atomic_output``."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_figure(figure, path: str | os.PathLike, **savefig_args) -> Path:
    """A matplotlib figure as PNG through ``atomic_output`` (the temporary name has no suffix to guess from)."""
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", **savefig_args)
    return Path(path)


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
