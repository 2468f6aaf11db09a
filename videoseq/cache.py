"""Shard caches: arrays made once per video of a manifest, kept in memory-mapped ``.npy`` shards.

The feature cache (``videoseq.features``) and the frame cache (``videoseq.framecache``)
are both filled here, by ``archive.run_archive``: every video is decoded once at a
fixed frame rate (``reading.FramesAt``) in worker processes, a decoder crash or hang
costing only that video; an extract step turns its frames into named arrays, which go
to a journal in the folder as soon as the video is done; at the end of the run every
``shard_videos`` videos the arrays of each name are joined into one shard::

    DIR/index.json          format, settings, shards, and per video: shard, first row, frame count, ...
    DIR/<name>_00000.npy    the rows of the shard's videos, one video after the other
    DIR/failed.csv          videos that could not be decoded (also under "failed" in the index)
    DIR/journal-R.jsonl     while a run is on (or after it was killed): its finished videos,
    DIR/journal-R.bin       and their arrays (one pair per torchrun rank)

Filling is resumable: the same command run again continues the journal (skipping the
finished videos), and then starts with the first video not in the index; shards and
the index are written to a temporary name and renamed. The arrays do not depend on how
the work was split into runs, and while a run is on its journal holds the new videos'
arrays: the folder needs room for them twice when they are joined into shards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from videoseq import distributed
from videoseq.archive import ArchiveOptions, run_archive
from videoseq.errors import InputError
from videoseq.journal import Entry
from videoseq.manifest import read_manifest
from videoseq.outputs import OutputError, atomic_output, check_output_folder
from videoseq.reading import Chunk, Crop, FramesAt, ShortSide
from videoseq.tables import write_csv
from videoseq.transcode import output_fps, resampled_indices
from videoseq.video.decoder import VideoDecodeError, VideoInfo
from videoseq.video.isolated import IsolatedDecoder


class CacheError(InputError, ValueError):
    """A cache is missing, was made with other settings, or does not fit the config."""


class Extract(Protocol):
    """What a cache stores per video: named arrays of each chunk of its frames, and facts for the index.

    The decoding workers hand over frames already through ``prepare`` (the eval crop for
    features, a short-side resize for frames), ``chunk`` frames at a time.
    """

    what: str  # "feature cache", "frame cache"
    unit: str  # how a frame is stored, for the size estimate: "float16 (512 values per frame)"
    prepare: Crop | ShortSide
    chunk: int

    def __call__(self, frames: np.ndarray) -> tuple[dict[str, np.ndarray], dict]: ...

    def frame_bytes(self, info: VideoInfo) -> int: ...


def estimate_bytes(videos: list[str], fps: float | None, frame_bytes: Callable[[VideoInfo], int],
                   sample: int = 50) -> tuple[int, int]:
    """``(frames, bytes)`` of a cache, from up to ``sample`` videos spread evenly over the list.

    The videos are probed in a child process: one that crashes the decoder only drops out of the sample.
    """
    count = min(sample, len(videos))
    picks = sorted({round(i * (len(videos) - 1) / max(count - 1, 1)) for i in range(count)})
    counts, sizes = [], []
    with IsolatedDecoder(timeout=60) as decoder:
        for i in picks:
            try:
                info = decoder.probe(videos[i], frames=1)
            except VideoDecodeError:
                continue
            counts.append(len(resampled_indices(info.num_frames, info.fps, fps)))
            sizes.append(counts[-1] * frame_bytes(info))
    if not counts:
        return 0, 0
    return int(np.mean(counts) * len(videos)), int(np.mean(sizes) * len(videos))


class CacheJob:
    """One video's arrays and index entry from its chunks of frames (see ``archive.Job``)."""

    def __init__(self, extract: Extract, fps: float | None) -> None:
        self.extract, self.fps = extract, fps
        self.what, self.prepare = extract.what, extract.prepare
        self.plan = FramesAt(fps, chunk=extract.chunk)

    def video(self, path: str, chunks: Iterator[Chunk]) -> tuple[dict, dict[str, np.ndarray]]:
        parts: list[dict[str, np.ndarray]] = []
        frames = 0
        if hasattr(self.extract, "new_video"):  # an extract that carries frames from chunk to chunk
            self.extract.new_video()
        for chunk in chunks:
            arrays, facts = self.extract(chunk.frames)
            parts.append(arrays)
            frames += len(chunk.frames)
        info = chunk.info
        entry = {"frames": frames, "source_frames": info.num_frames, "source_fps": info.fps,
                 "fps": output_fps(info.fps, self.fps), **facts}
        return entry, {name: np.concatenate([a[name] for a in parts]) for name in parts[0]}

    def failed(self, path: str, error: str) -> dict:
        return {}


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary name beside ``path``, then rename it: never a half-written ``path``."""
    with atomic_output(path) as tmp:
        write(tmp)


def write_shard(path: Path, parts: list[np.ndarray]) -> None:
    """Join ``parts`` along their first axis into one ``.npy`` (written through a memory map, then renamed)."""
    rows = sum(len(p) for p in parts)

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=parts[0].dtype, shape=(rows,) + parts[0].shape[1:])
        start = 0
        for part in parts:
            out[start:start + len(part)] = part
            start += len(part)
        out.flush()
        del out

    write_atomic(Path(path), write)


def write_index(out: Path, index: dict) -> None:
    write_atomic(out / "index.json", lambda tmp: tmp.write_text(json.dumps(index, indent=1)))


CACHE_FILE = re.compile(r"^(index\.json|failed\.csv|backbone\.pt|[a-z]+_\d{5}\.npy|journal-\d+\.(jsonl|bin))$")
# ^ what a cache holds


def check_cache_folder(out: str | Path, what: str, *, overwrite: bool, inputs: list[str | Path]) -> Path:
    """``--out`` of a cache: a new or empty folder, or a cache to resume; a folder of other files needs ``overwrite``.

    Checked before the inputs are opened; nothing is written here.
    """
    out = check_output_folder(out, ("index.json", "failed.csv", "backbone.pt"), flag="--out", overwrite=True,
                              inputs=inputs)
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    resumable = (out / "index.json").is_file() or any(out.glob("journal-*.jsonl"))
    if others and not resumable and not overwrite:
        raise OutputError(f"--out {out} holds {others[:5]} but no {what}; choose a new or empty folder, or add "
                          "--overwrite to write the cache beside them")
    return out


def remove_cache_files(out: Path) -> None:
    """Delete the files of a cache in ``out`` (``--overwrite``: start the cache afresh)."""
    for path in out.iterdir() if out.is_dir() else ():
        if CACHE_FILE.match(path.name) and path.is_file():
            path.unlink()


def open_index(out: Path, cache_format: str, settings: dict, *, fresh: bool = False) -> dict:
    """The cache's index (a fresh one for an empty folder, or with ``fresh`` after removing the old cache);
    another format or other settings are an error."""
    path = out / "index.json"
    if fresh:  # one rank deletes, every rank waits for it before its journal is opened
        if distributed.is_main():
            remove_cache_files(out)
        distributed.barrier()
    if not path.is_file():
        return {"format": cache_format, **settings, "shards": [], "videos": {}, "failed": {}}
    index = json.loads(path.read_text())
    if index.get("format") != cache_format:
        raise CacheError(f"{out} holds a {index.get('format')} cache, not {cache_format}; use another --out")
    differ = [f"{k}: cache {index.get(k)!r} vs now {v!r}" for k, v in settings.items() if index.get(k) != v]
    if differ:
        raise CacheError(f"{out} holds a cache made with other settings ({'; '.join(differ)}); "
                         "use another --out, or delete it to start afresh")
    index.setdefault("failed", {})
    return index


def manifest_paths(manifest: str | Path) -> list[str]:
    """Every video of a manifest once, as absolute paths (the cache's keys), in manifest order."""
    rows = read_manifest(manifest)
    return list(dict.fromkeys(rows.resolve(r.path) for r in rows.rows))


def fill_cache(extract: Extract, paths: list[str], out: Path, index: dict, *, fps: float | None,
               shard_videos: int, max_videos: int | None = None, workers: int = 2) -> dict:
    """Extract every video of ``paths`` not yet in ``index`` (at most ``max_videos``); returns the index.

    Videos are decoded in ``workers`` processes and journaled as they finish
    (``archive.run_archive``: a rerun goes on from the last finished video; under torchrun
    the ranks share them), then joined into shards in the order of ``paths``. Prints a
    size estimate first and a summary last; failures go to ``failed.csv``.
    """
    todo = [p for p in paths if p not in index["videos"]]
    if distributed.is_main():
        frames, size = estimate_bytes(todo, fps, extract.frame_bytes)
        print(f"{extract.what} {out}: {len(paths) - len(todo)} of {len(paths)} videos done; to do {len(todo)} videos, "
              f"about {frames} frames at {fps or 'source'} fps -> about {size / 1e6:,.1f} MB {extract.unit}")
    settings = {k: v for k, v in index.items() if k not in ("shards", "videos", "failed")}
    run_archive(CacheJob(extract, fps), todo[:max_videos], out / "journal", settings,
                ArchiveOptions(workers=workers, resume=True),
                write=lambda entries: _write_shards(entries, index, out, shard_videos),
                restart=f"delete {out}/journal-* to drop its unfinished videos, or use another --out")
    if not distributed.is_main():
        return index
    failed = out / "failed.csv"
    if index["failed"]:
        write_csv(failed, ("path", "error"), sorted(index["failed"].items()))
        print(f"{len(index['failed'])} video(s) failed to decode: listed in {failed}")
    elif failed.exists():
        failed.unlink()  # every earlier failure has been extracted since
    print(f"{len(index['videos'])} of {len(paths)} videos in the {extract.what}")
    return index


def _write_shards(entries: list[Entry], index: dict, out: Path, shard_videos: int) -> None:
    """Shards of ``shard_videos`` extracted videos each, in the order of ``entries``, then the index."""
    pending: list[Entry] = []
    for position, entry in enumerate(entries):
        if entry.error:
            index["failed"][entry.path] = entry.error
        else:
            pending.append(entry)
        if pending and (len(pending) == shard_videos or position == len(entries) - 1):
            _flush(pending, index, out)
            pending = []
    write_index(out, index)


def _flush(pending: list[Entry], index: dict, out: Path) -> None:
    """Write one shard per array name (``<name>_NNNNN.npy``), then the index that points into them."""
    number = len(index["shards"])
    name = f"{number:05d}.npy"
    arrays = [entry.load_arrays() for entry in pending]
    for kind in arrays[0]:
        write_shard(out / f"{kind}_{name}", [a[kind] for a in arrays])
    start = 0
    for entry, a in zip(pending, arrays):
        index["videos"][entry.path] = {**entry.data, "shard": number, "start": start}
        index["failed"].pop(entry.path, None)
        start += len(next(iter(a.values())))
    index["shards"].append({"name": name, "rows": start})
    write_index(out, index)


class ShardCache:
    """A cache folder opened for reading; shards are memory-mapped on first use in each process.

    Subclasses name their ``format``, the config ``key`` that points at them and the
    ``command`` that makes one (``{folder}`` is filled in).
    """

    format = ""
    key = ""
    what = ""
    command = ""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / "index.json"
        make = self.command.format(folder=self.folder)
        if not path.is_file():
            raise CacheError(f"{self.key}: {self.folder} is not a {self.what} (no index.json); make one with `{make}`")
        self.index = json.loads(path.read_text())
        if self.index.get("format") != self.format:
            raise CacheError(f"{self.key}: {self.folder} holds a {self.index.get('format')} cache, not a {self.what} "
                             f"({self.format}); make one with `{make}`")
        self._maps: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}  # workers map the shards themselves

    def entry(self, path: str) -> dict:
        """The index entry of one video; a video not in the cache is a ``VideoDecodeError``."""
        entry = self.index["videos"].get(path)
        if entry is None:
            failed = self.index.get("failed", {}).get(path)
            reason = f"its extraction failed ({failed})" if failed else f"it is not in the {self.what}"
            make = self.command.format(folder=self.folder)
            raise VideoDecodeError(path, f"{reason} {self.folder}", f"see {self.folder / 'failed.csv'}; rerun `{make}`")
        return entry

    def shard(self, kind: str, entry: dict) -> np.ndarray:
        """The whole memory-mapped ``<kind>_NNNNN.npy`` shard that holds ``entry``."""
        name = f"{kind}_{self.index['shards'][entry['shard']]['name']}"
        if name not in self._maps:
            self._maps[name] = np.load(self.folder / name, mmap_mode="r")
        return self._maps[name]
