"""Run a function over many items in worker processes that may hang or crash.

Decoders can hang (decord busy-waits on files whose header promises more frames
than they hold) or die in C code. ``run_isolated`` gives each item to one of
``workers`` spawned processes and watches it: an item that takes longer than
``timeout`` seconds gets its worker killed and replaced, a worker that dies takes
only its item with it, and the main process goes on with the rest.

Workers are started with ``spawn`` (a clean interpreter, no inherited decoder
threads), so ``func`` must be a module-level function of a light module: keep
torch out of its imports, or each worker pays seconds to start.

``IsolatedPool`` is the pool itself, for callers that submit items as they go (and so
bound how far ahead the workers decode); ``Worker.call`` is the same watch for one
caller and one item at a time;
``IsolatedDecoder`` is built on it: probes and reads of one long-lived process in a
child of its own.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any

import numpy as np

from videoseq.video.decoder import VideoDecodeError, VideoInfo, read_frames
from videoseq.video.probe import probe_video


@dataclass(frozen=True)
class Outcome:
    """What became of item ``index``: its ``value``, or ``error`` (empty when it succeeded).

    ``exception`` is the exception ``func`` raised (None when the worker overran or died,
    which ``error`` then says: "took longer than N s and was stopped", "the worker process
    died (SIGSEGV)").
    """

    index: int
    value: Any = None
    error: str = ""
    exception: BaseException | None = None


def _serve(conn: Connection, func: Callable[[Any], Any]) -> None:
    """Worker loop: say ready, then answer ``(index, item)`` requests until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller, which stops its workers
    faulthandler.disable()  # a crash is reported by the caller, naming the item
    conn.send("ready")
    while True:
        request = conn.recv()
        if request is None:
            return
        index, item = request
        try:
            reply = (index, func(item), None)
        except Exception as err:  # reported as this item's failure; the worker carries on
            reply = (index, None, err)
        try:
            conn.send(reply)
        except Exception as err:  # an exception (or value) that does not pickle
            conn.send((index, None, RuntimeError(f"{type(reply[2]).__name__}: {reply[2]} ({err})")))


class Worker:
    """One process, its pipe, and the item it works on (``None`` while idle or starting).

    ``context`` is a multiprocessing context: ``spawn`` for pools of unknown files
    (``run_isolated``), ``fork`` where ``func`` is not importable by a fresh interpreter.
    """

    def __init__(self, context: Any, func: Callable[[Any], Any]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, func), daemon=True)
        self.process.start()
        child.close()
        self.ready = self.closed = False
        self.index: int | None = None
        self.started = 0.0

    def give(self, index: int, item: Any) -> None:
        self.conn.send((index, item))
        self.index, self.started = index, time.monotonic()

    def call(self, item: Any, timeout: float) -> Outcome:
        """Run ``func(item)`` in this worker; after an overrun or a death the worker is closed."""
        while not self.ready and not self.closed:  # start-up does not count against the timeout
            wait([self.conn, self.process.sentinel])
            if _check(self, timeout) is None and self.closed:
                return Outcome(0, error=f"died while starting (exit code {self.process.exitcode})")
        self.give(0, item)
        outcome = None
        while outcome is None:
            wait([self.conn, self.process.sentinel], max(0.0, self.started + timeout - time.monotonic()))
            outcome = _check(self, timeout)
        return outcome

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                self.process.kill()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.closed = True


class IsolatedPool:
    """``workers`` processes running ``func`` on submitted items, each item watched.

    ``submit`` queues an item and hands it to an idle worker at once; ``wait`` blocks until
    at least one item is done (``block=False``: looks without waiting), hands the queued
    items to the workers it freed, and returns the ``Outcome`` of each finished one. An item
    that takes longer than ``timeout`` seconds gets its worker killed and replaced; a
    worker that dies takes only its item with it. The caller decides how far ahead it
    submits, which bounds what waits in memory (``prefetch`` reads ahead this way).

    ``start`` is how workers start: ``spawn`` (a fresh interpreter each), or ``forkserver``
    after ``start_fork_server``, which imports the worker's modules once in a clean server
    process that then forks each worker, a replacement too, in milliseconds.

    >>> with IsolatedPool(probe_video, workers=2, timeout=30) as pool:   # doctest: +SKIP
    ...     pool.submit(0, "a.mp4"); pool.submit(1, "b.mp4")
    ...     while pool.busy:
    ...         for outcome in pool.wait():
    ...             print(outcome.index, outcome.error or outcome.value)
    """

    def __init__(self, func: Callable[[Any], Any], *, workers: int = 2, timeout: float = 60.0,
                 start: str = "spawn") -> None:
        if workers < 1 or timeout <= 0:
            raise ValueError(f"need workers >= 1 and timeout > 0, got workers={workers}, timeout={timeout}")
        self.func, self.timeout = func, timeout
        self.context = multiprocessing.get_context(start)
        self.queue: deque[tuple[int, Any]] = deque()
        self.workers = [Worker(self.context, func) for _ in range(workers)]

    @property
    def busy(self) -> int:
        """Items submitted and not yet reported (queued or being worked on)."""
        return len(self.queue) + sum(w.index is not None for w in self.workers)

    def submit(self, index: int, item: Any) -> None:
        self.queue.append((index, item))
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand queued items to the idle workers that are ready."""
        for worker in self.workers:
            if worker.ready and worker.index is None and self.queue:
                item = self.queue.popleft()
                try:
                    worker.give(*item)
                except OSError:  # it died while idle (killed from outside): replaced at the next check
                    self.queue.appendleft(item)

    def wait(self, block: bool = True) -> list[Outcome]:
        """The outcomes of the items that finished: at least one when any item is busy, or (``block=False``)
        those finished by now, maybe none."""
        outcomes: list[Outcome] = []
        while self.busy and not outcomes:
            self._dispatch()
            busy = [w for w in self.workers if w.index is not None]
            deadline = min((w.started + self.timeout for w in busy), default=time.monotonic() + 1.0)
            wait([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers],
                 max(0.0, deadline - time.monotonic()) if block else 0.0)
            outcomes += self._check_workers()
            if not block:
                break
        self._dispatch()  # the workers just freed take the next items now, not at the next call
        return outcomes

    def _check_workers(self) -> list[Outcome]:
        """The outcomes the workers have sent; a worker that overran or died is replaced."""
        outcomes = []
        for slot, worker in enumerate(self.workers):
            outcome = _check(worker, self.timeout)
            if worker.closed:  # killed for overrunning, or died
                if not worker.ready:
                    raise RuntimeError(
                        f"a worker process exited while starting (exit code {worker.process.exitcode}); "
                        "its error is printed above"
                    )
                self.workers[slot] = Worker(self.context, self.func)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def close(self) -> None:
        """Stop every worker (killing those still at work)."""
        for worker in self.workers:
            if not worker.closed:
                worker.stop(kill=worker.index is not None)

    def __enter__(self) -> IsolatedPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def start_fork_server(modules: list[str]) -> None:
    """Start the fork server now, importing ``modules`` in it once (while this process goes on).

    Pools made with ``start="forkserver"`` afterwards fork their workers from it: a
    single-threaded process that has never opened a video or run a model.
    """
    multiprocessing.set_forkserver_preload(modules)
    forkserver.ensure_running()


def run_isolated(
    func: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    workers: int = 2,
    timeout: float = 60.0,
) -> Iterator[Outcome]:
    """Yield an ``Outcome`` per item, in completion order; a hang or crash fails only its item.

    Callers show progress by wrapping the iterator (``progress.progress_bar(..., total=len(items))``).
    """
    if workers < 1 or timeout <= 0:
        raise ValueError(f"need workers >= 1 and timeout > 0, got workers={workers}, timeout={timeout}")
    if not items:
        return
    with IsolatedPool(func, workers=min(workers, len(items)), timeout=timeout) as pool:
        for index, item in enumerate(items):
            pool.submit(index, item)
        while pool.busy:
            yield from pool.wait()


def _check(worker: Worker, timeout: float) -> Outcome | None:
    """The finished item of ``worker``, if any; kills it when it overran or reports its death."""
    if worker.conn.poll():
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            message = None
        if message == "ready":
            worker.ready = True
            return None
        if message is not None:
            index, value, err = message
            worker.index = None
            return Outcome(index, value, f"{type(err).__name__}: {err}" if err else "", err)
    if worker.process.is_alive():
        if worker.index is not None and time.monotonic() - worker.started > timeout:
            index, worker.index = worker.index, None
            worker.stop(kill=True)
            return Outcome(index, error=f"took longer than {timeout:g} s and was stopped")
        return None
    index, worker.index = worker.index, None
    code = worker.process.exitcode
    worker.stop(kill=True)
    how = signal.Signals(-code).name if code is not None and code < 0 else f"exit status {code}"
    return None if index is None else Outcome(index, error=f"the worker process died ({how})")


_ISOLATED_OPERATIONS = {"probe": probe_video, "read": read_frames}


def _isolated_operation(request: tuple[str, str, object]) -> object:
    operation, path, argument = request
    return _ISOLATED_OPERATIONS[operation](path, argument)


class IsolatedDecoder:
    """Decoding in a child process: a decoder crash or hang becomes a ``VideoDecodeError``.

    One long-lived ``Worker``, forked like a DataLoader worker (``spawn`` would
    re-run the caller's main script), serves the requests; if it dies (a segfault in
    FFmpeg or decord) or takes longer than ``timeout`` seconds, this process raises
    ``VideoDecodeError`` for the file it was reading, and the next request starts a
    fresh child.

    >>> with IsolatedDecoder(timeout=30) as decoder:         # doctest: +SKIP
    ...     info = decoder.probe("suspect.mp4")              # VideoInfo, or VideoDecodeError
    ...     frames = decoder.read("suspect.mp4", [0, 5, 9])  # (3, H, W, 3) uint8
    """

    def __init__(self, timeout: float = 60.0) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._worker: Worker | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before the first request)."""
        return self._worker.process.pid if self._worker is not None else None

    def probe(self, path: str | os.PathLike, frames: int = 3) -> VideoInfo:
        """``probe_video`` in the child."""
        return self._call("probe", path, frames)

    def read(self, path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
        """``read_frames`` in the child: uint8 RGB ``(T, H, W, 3)``."""
        return self._call("read", path, [int(i) for i in indices])

    def _call(self, operation: str, path: str | os.PathLike, argument: object):
        if self._worker is None or self._worker.closed:
            self._worker = Worker(multiprocessing.get_context("fork"), _isolated_operation)
        outcome = self._worker.call((operation, str(path), argument), self.timeout)
        if outcome.exception is not None:
            raise outcome.exception
        if outcome.error:  # the child overran or died
            raise VideoDecodeError(path, f"decoding failed: {outcome.error}",
                                   "the file crashes or hangs the decoder; re-encode it or drop it from the manifest")
        return outcome.value

    def close(self) -> None:
        """Stop the child (if any); a later request starts a new one."""
        if self._worker is not None and not self._worker.closed:
            self._worker.stop(kill=True)
        self._worker = None

    def __enter__(self) -> IsolatedDecoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
