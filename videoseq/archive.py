"""Inference over whole archives: every video once, decoded ahead in isolated workers, journaled, sharded.

``run_archive`` is the loop of ``videoseq predict`` and ``videoseq features`` over many files:

1. The journal beside the output (``videoseq.journal``) is read. Without ``resume`` an
   existing journal is refused (``overwrite`` deletes it and starts afresh); with it,
   every part must come from the same settings and inputs, and its videos are done.
2. The videos not done yet are split between the processes of the run by position,
   under ``torchrun``: rank ``r`` of ``N`` takes the ``r``-th, ``(r+N)``-th, ... of them
   (a single process takes them all). The split is made afresh at every start, so a
   rerun with ``--resume`` after a rank died spreads its videos over every rank.
3. Each process decodes its videos ahead in worker processes (``prefetch``: a crash or a
   hang costs that video, which gets an error), runs ``job.video`` on each as its
   decoding finishes and appends the result to its own journal part before the next.
4. The processes wait for each other (``distributed.barrier``); rank 0 reads every part
   and hands the finished videos, in input order, to ``write``, which writes the output
   under a temporary name and renames it; then the journal is deleted.

Under torchrun every rank must see the output's folder (one machine, or a shared
filesystem across nodes). Ctrl-C or SIGTERM stops a process after its current video
(``ArchiveInterrupted``); the journal keeps every finished video.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from videoseq import distributed
from videoseq.errors import UsageError
from videoseq.journal import (
    Entry,
    JournalError,
    JournalWriter,
    check_parts,
    journal_header,
    part_paths,
    read_journal,
    remove_journal,
)
from videoseq.prefetch import Prefetcher, start_decoding_server
from videoseq.progress import progress_bar
from videoseq.reading import Chunk, ChunkRequest, Crop, Plan, ShortSide, read_chunk
from videoseq.runtime import StopSignals, select_device
from videoseq.video.decoder import VideoDecodeError

RANKS_WAIT = timedelta(hours=12)  # how long a finished rank waits for the others


@dataclass(frozen=True)
class ArchiveOptions:
    workers: int = 2  # decoding processes of each rank
    timeout: float = 60.0  # seconds one decoding request (a video, or a chunk of a long one) may take
    resume: bool = False  # continue the journal beside the output
    overwrite: bool = False  # without resume: delete that journal and start afresh
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1 or self.timeout <= 0:
            raise UsageError(f"--workers must be >= 1 and --timeout > 0 seconds, got {self.workers} and "
                             f"{self.timeout}")


class Job(Protocol):
    """What a run does with each video: the plan its workers decode, the record of a video or of a failure."""

    what: str  # for the progress bar and messages: "predict", "feature cache"
    plan: Plan
    prepare: Crop | ShortSide

    def video(self, path: str, chunks: Iterator[Chunk]) -> tuple[dict, dict[str, np.ndarray]]:
        """The record of a video (JSON data, arrays) from its chunks; may raise ``VideoDecodeError``."""
        ...

    def failed(self, path: str, error: str) -> dict:
        """The record of a video that could not be decoded."""
        ...


class ArchiveInterrupted(Exception):
    """A run stopped on a signal; its journal keeps what was done. ``exit_status``: 128 + the signal."""

    def __init__(self, signum: int, done: int, total: int, base: Path) -> None:
        self.exit_status = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}: {done} of {total} videos are in the journal "
                         f"{base}-*.jsonl; run the same command with --resume to go on")


@contextmanager
def archive_device(device: str) -> Iterator[torch.device]:
    """The device of this process, inside the process group when torchrun started several.

    The decoding workers' server starts first, so it imports while the caller loads its model.
    """
    start_decoding_server()
    device_, joined = distributed.setup(select_device(device), timeout=RANKS_WAIT)
    try:
        yield device_
    finally:
        distributed.teardown(joined)


def run_archive(job: Job, paths: list[str], base: Path, settings: dict, options: ArchiveOptions, *,
                write: Callable[[list[Entry]], None], restart: str,
                read: Callable[[ChunkRequest], Chunk] = read_chunk) -> int:
    """Run ``job`` on every video of ``paths``, then (rank 0) ``write`` the output; returns the failed videos.

    ``settings`` is what the output depends on (recorded in the journal); ``restart``
    tells the user how to start afresh when the journal does not fit this run;
    ``read`` does one decoding request in a worker (``reading.read_chunk``).
    """
    header = journal_header(settings, paths)
    done = _done(base, header, paths, options, restart)
    todo = [i for i in range(len(paths)) if i not in done]
    mine = todo[distributed.rank()::distributed.world_size()]
    if distributed.is_main():
        print(f"{job.what}: {len(done)} of {len(paths)} videos done before; to do {len(todo)} "
              f"({len(mine)} here, {distributed.world_size()} process(es))", file=sys.stderr)
    stopped, finished = _work(job, paths, mine, base, header, options, read) if mine else (None, 0)
    if stopped is not None:
        raise ArchiveInterrupted(stopped, len(done) + finished, len(paths), base)
    distributed.barrier()
    if not distributed.is_main():
        return 0
    entries = _collect(base, paths)
    write(entries)
    remove_journal(base)
    return sum(bool(entry.error) for entry in entries)


def _done(base: Path, header: dict, paths: list[str], options: ArchiveOptions, restart: str) -> set[int]:
    """The input indices the journal holds; an existing journal is checked, or deleted with ``overwrite``."""
    parts = read_journal(base)
    if parts and not options.resume and not options.overwrite:
        raise JournalError(f"the journal of an unfinished run lies beside the output ({parts[0].path}); add "
                           f"--resume to continue it, or {restart}")
    if options.resume:
        check_parts(parts, header, paths, restart)
    distributed.barrier()  # every rank has read the journal before it changes
    if not options.resume:
        if distributed.is_main():
            remove_journal(base)
        distributed.barrier()
        return set()
    return {entry.index for part in parts for entry in part.entries}


def _work(job: Job, paths: list[str], mine: list[int], base: Path, header: dict, options: ArchiveOptions,
          read: Callable[[ChunkRequest], Chunk]) -> tuple[int | None, int]:
    """Run ``job`` on the videos ``mine``, journaling each: the stopping signal's number (None) and the count done."""
    writer = JournalWriter(base, distributed.rank(), header)
    rank = f" (rank {distributed.rank()} of {distributed.world_size()})" if distributed.is_distributed() else ""
    bar = progress_bar(total=len(mine), desc=job.what + rank, unit="video", disable=not options.progress)
    try:
        with StopSignals(then="stopping after this video (the journal keeps the finished ones)") as stop, \
                Prefetcher([paths[i] for i in mine], job.plan, job.prepare, workers=min(options.workers, len(mine)),
                           timeout=options.timeout, ordered=False, read=read) as videos:
            for done, (position, path, chunks) in enumerate(videos, start=1):
                try:
                    data, arrays, error = *job.video(path, chunks), ""
                except VideoDecodeError as err:
                    if stop.requested:  # its worker may have died of the same signal: do it again on resume
                        return stop.signum, done - 1
                    tqdm.write(f"error: {err}", file=sys.stderr)
                    data, arrays, error = job.failed(path, str(err)), {}, str(err)
                writer.append(mine[position], path, data, error, arrays)
                bar.update()
                if stop.requested:
                    return stop.signum, done
    finally:
        bar.close()
        writer.close()
    return None, len(mine)


def _collect(base: Path, paths: list[str]) -> list[Entry]:
    """Every video's entry from every part, in input order; one missing is an error."""
    found: dict[int, Entry] = {}
    for part in read_journal(base):
        for entry in part.entries:
            found.setdefault(entry.index, entry)
    missing = [i for i in range(len(paths)) if i not in found]
    if missing:
        names = ", ".join(str(p) for p in part_paths(base)) or "none"
        raise JournalError(f"{len(missing)} of {len(paths)} videos are in no journal part ({names}), e.g. "
                           f"#{missing[0]} {paths[missing[0]]}; under torchrun every rank must write into the same "
                           "folder (a filesystem every node sees); run the same command with --resume to do them")
    return [found[i] for i in range(len(paths))]
