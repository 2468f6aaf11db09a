"""The runtime of a process: device, CPU cores and threads, mixed precision, seeding, and stop signals.

What every command that runs a model sets up before it starts: which device
(``select_device``) and how many CPU cores it may use (``available_workers``), how
many threads it computes with (``set_threads``, below), which autocast dtype on the
device (``amp_dtype``, ``autocast_for``), the seeds of python, numpy and torch
(``seed_everything``), and Ctrl-C / SIGTERM turned into a request to stop after the
current step (``StopSignals``).

Threads. Left alone, torch's intra-op pool takes every core, OpenCV's takes every
core again in the main process and in each DataLoader worker, and the workers decode
at the same time: more runnable threads than cores. What hurts most is how the
OpenMP pool waits: a thread that finishes its share of a parallel region spins
until the others are done, and when another process (or a DataLoader worker) holds a
core, the thread it descheduled holds up the region while its partners burn their
time spinning (``videoseq bench threads`` measures it, idle and beside a competing
load). The policy
(``thread_policy``), used by train, eval, predict and streaming alike:

- OpenMP waits sleep: ``OMP_WAIT_POLICY=PASSIVE``, set by ``import videoseq``
  before torch loads (a value already set is kept; from Python, import videoseq
  before torch, or set it yourself);
- ``auto`` (the default): ``$OMP_NUM_THREADS`` when it is set, else the cores of
  this process's share of the machine, ``cores / ranks`` (``ranks``: the processes
  torchrun starts on this machine, ``$LOCAL_WORLD_SIZE``, else 1), for torch's
  intra-op pool and OpenCV in the main process; one inter-op thread. The workers
  decode beside them: a waiting pool thread sleeps and leaves them its core;
- a number: that many;
- every DataLoader worker computes with one torch and one OpenCV thread
  (``limit_worker_threads``, from the loader's ``worker_init_fn``), and decord
  decodes with one thread per reader (``video.decoder.VideoReader``'s default).

Forks. A process forked while OpenCV's thread pool has threads inherits the pool
without them, and its first ``cv2.setNumThreads`` can wait for them forever (a
DataLoader worker hung in about 1 fork of 3 after the parent had resized frames with 2
threads). Importing this module registers a fork handler (``os.register_at_fork``) that
drops the parent's pool to one thread for the moment of the fork and restores its count
afterwards in both processes: the child builds a pool of its own instead of inheriting
a broken one.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from contextlib import nullcontext
from types import FrameType, TracebackType
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from videoseq.errors import UsageError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"train.device={name!r} but CUDA is not available; use auto or cpu")
    return torch.device(name)


def available_workers() -> int:
    """CPU cores this process may use (DataLoader workers for evaluation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


THREADS_AUTO = "auto"


def thread_policy(threads: int | str = THREADS_AUTO) -> int:
    """Threads of this process's torch intra-op pool and OpenCV: ``threads``, or for ``auto``
    ``$OMP_NUM_THREADS`` when set, else ``max(1, cores / local ranks)`` (see the module's notes)."""
    if threads != THREADS_AUTO:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UsageError(f"threads: {threads!r} is neither 'auto' nor a number of threads >= 1")
        return threads
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    ranks = os.environ.get("LOCAL_WORLD_SIZE", "1")
    return max(1, available_workers() // max(int(ranks) if ranks.isdigit() else 1, 1))


def openmp_waits() -> str:
    """How torch's OpenMP threads wait for work: ``passive`` (sleep), ``active`` or ``spin`` (libgomp's default)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().lower() or "spin"


def set_threads(threads: int | str = THREADS_AUTO) -> int:
    """Apply ``thread_policy`` to this process (torch intra-op and inter-op, OpenCV); returns the count."""
    count = thread_policy(threads)
    torch.set_num_threads(count)
    cv2.setNumThreads(count)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only possible before the first inter-op work of the process
            pass
    return count


_FORK_SAVED: list[int] = [1]  # the parent's OpenCV threads while it forks


def _before_fork() -> None:
    _FORK_SAVED[0] = cv2.getNumThreads()
    if _FORK_SAVED[0] > 1:
        cv2.setNumThreads(1)


def _after_fork() -> None:
    if _FORK_SAVED[0] > 1:
        cv2.setNumThreads(_FORK_SAVED[0])


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


def limit_worker_threads() -> None:
    """In a DataLoader worker: one torch thread and one OpenCV thread (the workers share the cores)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` asks for on ``device``: None off CUDA or when off.

    ``true`` is bf16 where the GPU supports it, else fp16; ``bf16`` / ``fp16`` force one.
    """
    if device.type != "cuda" or amp is False:
        return None
    if amp == "fp16" or (amp is True and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast_for(device: torch.device, amp: bool | str):
    """Autocast to ``amp_dtype`` on CUDA; a no-op on CPU or when off."""
    dtype = amp_dtype(device, amp)
    return nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step.

    The training loop polls ``requested``; a second signal raises
    ``KeyboardInterrupt`` at once. Handlers are installed only in the main thread
    (Python allows no other) and the previous ones come back on exit.

    >>> with StopSignals() as stop:                          # doctest: +SKIP
    ...     for batch in loader:
    ...         train_step(batch)
    ...         if stop.requested:
    ...             save_and_quit(stop.signum)
    """

    def __init__(self, then: str = "saving a resumable checkpoint after this step") -> None:
        self.signum: int | None = None
        self.then = then  # what happens next, for the message
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: quitting without saving")
        self.signum = signum
        tqdm.write(f"{signal.Signals(signum).name}: {self.then} (press Ctrl-C again to quit at once)")

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
