"""Decoding ahead: the next videos decoded in worker processes while the model works on this one.

``Prefetcher(paths, plan, prepare)`` keeps up to ``ahead`` decoding requests
(``reading.ChunkRequest``: one video, or one chunk of a long one) submitted to an
``IsolatedPool`` or finished and waiting, and hands the videos out each as an iterator
over its chunks in order: in the order given, or (``ordered=False``, what a journaled
run uses) in the order their first chunks come back, so that one slow file does not
hold up the model while the other workers go on. Requests are submitted in the order
of the videos (a video's later chunks as soon as its first tells how many there are),
and topped up to ``ahead`` each time a chunk is handed out, so the workers decode while
the caller works; what waits in memory is at most ``ahead + 1`` chunks, however long the
run or the videos.

Workers fork from a server process that imported ``reading`` once
(``start_decoding_server``; it starts with the first ``Prefetcher`` if not before), so a
worker that replaces a crashed one is ready in milliseconds.

A chunk whose worker crashed, overran ``timeout`` or raised makes its video's iterator
raise ``VideoDecodeError`` naming the file; the rest of that video is dropped and the
other videos go on.

>>> with Prefetcher(paths, VideoViews(clips, 2), Crop(112), workers=2) as videos:  # doctest: +SKIP
...     for index, path, chunks in videos:
...         for chunk in chunks:          # reading.Chunk: uint8 frames (U, T, 112, 112, 3)
...             model(chunk.frames)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from types import TracebackType

from videoseq.reading import Chunk, ChunkRequest, Crop, Plan, ShortSide, read_chunk
from videoseq.video.decoder import VideoDecodeError
from videoseq.video.isolated import IsolatedPool, Outcome, start_fork_server

_CRASH_HINT = "the file crashes or hangs the decoder; re-encode it or leave it out"


def start_decoding_server() -> None:
    """Start the process the decoding workers fork from, importing what they need, while the model loads."""
    start_fork_server(["videoseq.reading"])


class Prefetcher:
    """The videos of ``paths`` decoded ahead by ``workers`` processes (see the module docstring)."""

    def __init__(self, paths: list[str], plan: Plan, prepare: Crop | ShortSide, *, workers: int = 2,
                 timeout: float = 60.0, ahead: int | None = None, ordered: bool = True,
                 read: Callable[[ChunkRequest], Chunk] = read_chunk) -> None:
        self.paths, self.plan, self.prepare, self.ordered = paths, plan, prepare, ordered
        self.ahead = ahead or 2 * workers
        start_decoding_server()
        self.pool = IsolatedPool(read, workers=workers, timeout=timeout, start="forkserver")
        self.keys: dict[int, tuple[int, int]] = {}  # pool item -> (video, chunk), while submitted
        self.items = itertools.count()
        self.results: dict[tuple[int, int], Outcome] = {}
        self.chunks: dict[int, int] = {}  # video -> its number of chunks, once known
        self.submitted: set[tuple[int, int]] = set()
        self.open: set[int] = set()  # videos submitted and not finished
        self.arrived: list[int] = []  # videos whose first chunk came back and that are not handed out yet
        self.next_video = 0  # the first video whose first chunk is not submitted yet

    def __iter__(self) -> Iterator[tuple[int, str, Iterator[Chunk]]]:
        """``(position in paths, path, its chunks)`` for every video; a video's chunks are dropped once the next is
        asked. In the order given, or with ``ordered=False`` in the order their first chunks come back."""
        for handed in range(len(self.paths)):
            video = self._next_video(handed)
            yield video, self.paths[video], self._video(video)
            self._finish(video)

    def _next_video(self, handed: int) -> int:
        if self.ordered:
            if handed in self.arrived:
                self.arrived.remove(handed)
            return handed
        while not self.arrived:
            self._submit(needed=None)
            self._collect()
        return self.arrived.pop(0)

    def _video(self, video: int) -> Iterator[Chunk]:
        number = 0
        while number == 0 or number < self.chunks[video]:
            outcome = self._get(video, number)
            if outcome.error:
                self.chunks[video] = number  # nothing more of it is submitted
                err = outcome.exception
                if isinstance(err, VideoDecodeError):
                    raise err
                raise VideoDecodeError(self.paths[video], f"decoding failed: {outcome.error}",
                                       _CRASH_HINT if err is None else "see the error; leave the file out if it stays")
            self._top_up()  # the workers decode the next requests while the caller works on this chunk
            yield outcome.value
            number += 1

    def _get(self, video: int, number: int) -> Outcome:
        """The outcome of chunk ``number`` of ``video``, submitting and waiting as needed."""
        key = (video, number)
        while key not in self.results:
            self._submit(needed=key)
            self._collect()
        return self.results.pop(key)

    def _top_up(self) -> None:
        """Without waiting: keep what has finished, and submit up to ``ahead`` requests."""
        self._collect(block=False)
        self._submit(needed=None)

    def _collect(self, block: bool = True) -> None:
        """Wait for at least one request to finish (``block=False``: take what has); keep what belongs to a video
        still open."""
        for outcome in self.pool.wait(block):
            video, number = self.keys.pop(outcome.index)
            if video not in self.open:
                continue  # a video given up on
            self.results[video, number] = outcome
            if number == 0:
                self.arrived.append(video)
                if not outcome.error:
                    self.chunks[video] = outcome.value.chunks

    def _submit(self, needed: tuple[int, int] | None) -> None:
        """Submit requests in the order of the videos, up to ``ahead`` waiting (``needed`` always)."""
        while True:
            key = self._next_request()
            if key is None or (key != needed and self.pool.busy + len(self.results) >= self.ahead):
                return
            item = next(self.items)
            self.keys[item] = key
            self.submitted.add(key)
            self.pool.submit(item, ChunkRequest(self.paths[key[0]], self.plan, self.prepare, key[1]))
            if key[1] == 0:
                self.open.add(key[0])
                self.next_video = key[0] + 1

    def _next_request(self) -> tuple[int, int] | None:
        for video in sorted(self.open):
            for number in range(1, self.chunks.get(video, 1)):
                if (video, number) not in self.submitted:
                    return video, number
        return (self.next_video, 0) if self.next_video < len(self.paths) else None

    def _finish(self, video: int) -> None:
        """Drop what is left of a video handed out (a failed or abandoned video's later chunks)."""
        self.open.discard(video)
        self.chunks.pop(video, None)
        self.results = {key: value for key, value in self.results.items() if key[0] != video}
        self.submitted = {key for key in self.submitted if key[0] != video}

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
