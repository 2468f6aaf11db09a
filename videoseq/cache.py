"""Shard caches: arrays made once per video of a manifest, kept in memory-mapped ``.npy`` shards.

The feature cache (``videoseq.features``) and the frame cache (``videoseq.framecache``)
are both filled here. Every video is decoded once at a fixed frame rate
(``frame_plan``); an extract step turns its frames into named arrays; every
``shard_videos`` videos the arrays of each name are joined into one shard::

    DIR/index.json          format, settings, shards, and per video: shard, first row, frame count, ...
    DIR/<name>_00000.npy    the rows of the shard's videos, one video after the other
    DIR/failed.csv          videos that could not be decoded (also under "failed" in the index)

Filling is resumable: a shard and then the index are written to a temporary name
and renamed, so a run killed at any moment leaves only whole shards, and the next
run starts with the first video not in the index. The arrays do not depend on how
the work was split into runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from videoseq.manifest import read_manifest
from videoseq.outputs import atomic_output
from videoseq.progress import progress_bar
from videoseq.tables import write_csv
from videoseq.transcode import output_fps, resampled_indices
from videoseq.video.decoder import VideoDecodeError, VideoReader


class CacheError(ValueError):
    """A cache is missing, was made with other settings, or does not fit the config."""


class Extract(Protocol):
    """What a cache stores per video: ``__call__`` gives named arrays and facts for the index."""

    what: str  # "feature cache", "frame cache"
    unit: str  # how a frame is stored, for the size estimate: "float16 (512 values per frame)"

    def __call__(self, reader: VideoReader, indices: np.ndarray) -> tuple[dict[str, np.ndarray], dict]: ...

    def frame_bytes(self, reader: VideoReader) -> int: ...


def frame_plan(reader: VideoReader, fps: float | None) -> np.ndarray:
    """Frames of the video kept at ``fps`` (None: every frame)."""
    return resampled_indices(reader.info.num_frames, reader.info.fps, fps)


def estimate_bytes(videos: list[str], fps: float | None, frame_bytes: Callable[[VideoReader], int],
                   sample: int = 50) -> tuple[int, int]:
    """``(frames, bytes)`` of a cache, from up to ``sample`` videos spread evenly over the list."""
    count = min(sample, len(videos))
    picks = sorted({round(i * (len(videos) - 1) / max(count - 1, 1)) for i in range(count)})
    counts, sizes = [], []
    for i in picks:
        try:
            with VideoReader(videos[i]) as reader:
                counts.append(len(frame_plan(reader, fps)))
                sizes.append(counts[-1] * frame_bytes(reader))
        except VideoDecodeError:
            continue
    if not counts:
        return 0, 0
    return int(np.mean(counts) * len(videos)), int(np.mean(sizes) * len(videos))


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


def open_index(out: Path, cache_format: str, settings: dict) -> dict:
    """The cache's index (a fresh one for an empty folder); another format or other settings are an error."""
    path = out / "index.json"
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
               shard_videos: int, max_videos: int | None = None) -> dict:
    """Extract every video of ``paths`` not yet in ``index`` (at most ``max_videos``); returns the index.

    Prints a size estimate first and a summary last; failures go to ``failed.csv``.
    """
    todo = [p for p in paths if p not in index["videos"]]
    frames, size = estimate_bytes(todo, fps, extract.frame_bytes)
    print(f"{extract.what} {out}: {len(paths) - len(todo)} of {len(paths)} videos done; to do {len(todo)} videos, "
          f"about {frames} frames at {fps or 'source'} fps -> about {size / 1e6:,.1f} MB {extract.unit}")
    _extract_videos(extract, todo[:max_videos], index, out, fps, shard_videos)
    write_index(out, index)
    failed = out / "failed.csv"
    if index["failed"]:
        write_csv(failed, ("path", "error"), sorted(index["failed"].items()))
        print(f"{len(index['failed'])} video(s) failed to decode: listed in {failed}")
    elif failed.exists():
        failed.unlink()  # every earlier failure has been extracted since
    print(f"{len(index['videos'])} of {len(paths)} videos in the {extract.what}")
    return index


def _extract_videos(extract: Extract, todo: list[str], index: dict, out: Path, fps: float | None,
                    shard_videos: int) -> None:
    """Fill shards of ``shard_videos`` videos; after each, the shard and the index are on disk."""
    pending: list[tuple[str, dict, dict[str, np.ndarray]]] = []
    for position, path in enumerate(progress_bar(todo, desc=extract.what, unit="video")):
        try:
            with VideoReader(path) as reader:
                indices = frame_plan(reader, fps)
                arrays, facts = extract(reader, indices)
                entry = {"frames": len(indices), "source_frames": reader.info.num_frames,
                         "source_fps": reader.info.fps, "fps": output_fps(reader.info.fps, fps), **facts}
            pending.append((path, entry, arrays))
        except VideoDecodeError as err:
            tqdm.write(f"skipping {path}: {err}")
            index["failed"][path] = str(err)
        if pending and (len(pending) == shard_videos or position == len(todo) - 1):
            _flush(pending, index, out)
            pending = []


def _flush(pending: list[tuple[str, dict, dict[str, np.ndarray]]], index: dict, out: Path) -> None:
    """Write one shard per array name (``<name>_NNNNN.npy``), then the index that points into them."""
    number = len(index["shards"])
    name = f"{number:05d}.npy"
    for kind in pending[0][2]:
        write_shard(out / f"{kind}_{name}", [arrays[kind] for _, _, arrays in pending])
    start = 0
    for path, entry, arrays in pending:
        index["videos"][path] = {**entry, "shard": number, "start": start}
        index["failed"].pop(path, None)
        start += len(next(iter(arrays.values())))
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
