"""``videoseq predict`` over files: sources, the rows of each video, the CSV, timelines.

SOURCE is a file, a folder (searched recursively), a glob or a manifest CSV. One row
per video (``path,label_1,score_1,...,error``; a ``caption`` column for caption models)
or, with ``--window``, one row per window (``path,start_s,end_s,label_1,...``).

``predict_to_csv`` runs over any number of files with ``archive.run_archive``: videos
are decoded ahead in worker processes, every finished video is journaled beside the
CSV (``--resume`` continues a run that was stopped or killed), the CSV appears whole
when the last video is done, and under torchrun the processes share the videos. A file
that cannot be read (or that crashes or hangs the decoder) gets a CSV row with its
error and a message on stderr; the other files are still processed. With ``--window``
and ``--timeline`` the windows of each video are merged into segments
(``videoseq.timeline``).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videoseq import distributed
from videoseq.archive import ArchiveOptions, archive_device, run_archive
from videoseq.errors import UsageError
from videoseq.events import EventDetector, EventOptions
from videoseq.journal import Entry, file_digest, part_paths
from videoseq.manifest import ManifestError, resolve_path
from videoseq.outputs import check_output, remove_partial_outputs
from videoseq.predict import Predictor, topk
from videoseq.prefetch import Prefetcher
from videoseq.reading import Chunk, ChunkRequest, read_chunk
from videoseq.runtime import set_threads
from videoseq.tables import read_csv, safe_row, write_csv
from videoseq.timeline import timeline_names, video_segments, write_segment_tables, write_video_timeline
from videoseq.video.decoder import VideoDecodeError, find_videos, is_frame_folder


def expand_sources(sources: list[str]) -> list[str]:
    """Files as given, folders searched recursively for videos, globs expanded, sorted per source.

    A ``.csv`` file is a manifest: its ``path`` column, relative to its folder, in its
    order (each video once). A source that matches nothing is kept so it gets an error row.
    """
    found: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir() and not is_frame_folder(path):
            found += [str(p) for p in find_videos(path)] or [source]  # an empty folder gets its error row
        elif path.is_file() and path.suffix.lower() == ".csv":
            found += manifest_videos(path)
        elif not path.exists() and glob.has_magic(source):
            found += sorted(glob.glob(source, recursive=True)) or [source]
        else:
            found.append(source)
    return found


def manifest_videos(path: Path) -> list[str]:
    """The videos a manifest CSV lists (its ``path`` column; the other columns are not needed), each once."""
    header, rows = read_csv(path, strip=True)
    if "path" not in header:
        raise ManifestError(f"{path} has no 'path' column; a manifest source lists one video per row under 'path' "
                            "(relative to the CSV's folder)")
    return list(dict.fromkeys(resolve_path(path.parent.resolve(), row["path"]) for row in rows if row["path"]))


@dataclass(frozen=True)
class PredictOptions:
    """What ``predict`` writes: top-k columns, windows, captions, timelines; where it runs."""

    topk: int = 5
    window: float | None = None  # seconds: one row per window
    stride: float | None = None  # seconds between windows (default: window)
    beam: int | None = None  # caption models: beam size (default: the config's)
    device: str = "auto"
    threads: int | str = "auto"  # CPU threads of torch and OpenCV (runtime.thread_policy)
    timeline: Path | None = None  # with window: segments, subtitles and figures in this folder
    events: EventOptions = EventOptions()  # how windows merge into segments
    archive: ArchiveOptions = ArchiveOptions()

    def __post_init__(self) -> None:
        if self.stride and not self.window:
            raise UsageError("--stride needs --window (both in seconds)")
        if self.timeline and not self.window:
            raise UsageError("--timeline merges windows into segments: add --window (and --stride) in seconds")
        if (self.window is not None and self.window <= 0) or (self.stride is not None and self.stride <= 0):
            raise UsageError(f"--window and --stride must be positive seconds, got {self.window} and {self.stride}")


class PredictJob:
    """The rows of one video (one, or one per window) from its decoded chunks, and its timeline files."""

    what = "predict"

    def __init__(self, predictor: Predictor, options: PredictOptions, paths: list[str]) -> None:
        self.predictor, self.options = predictor, options
        self.k = min(options.topk, len(predictor.classes)) if predictor.classifies else 0
        self.plan = predictor.plan(options.window, options.stride)
        self.prepare = predictor.reader_prepare()
        self.header = ["path"] + (["start_s", "end_s"] if options.window else [])
        self.header += [c for i in range(1, self.k + 1) for c in (f"label_{i}", f"score_{i}")]
        self.header += (["caption"] if predictor.captions else []) + ["error"]
        self.names = timeline_names(paths) if options.timeline else {}
        if options.timeline and not predictor.classifies:
            raise UsageError("--timeline merges class scores into segments; this checkpoint only captions")
        if options.timeline:
            EventDetector(predictor.classes, options.events)  # a background class must be a class

    def video(self, path: str, chunks: Iterator[Chunk]) -> tuple[dict, dict]:
        rows, probs, spans = [], [], []
        for chunk in chunks:
            x = self.predictor.to_input(chunk.frames)  # (U, T, 3, S, S)
            p = self.predictor.input_probs(x) if self.k or self.options.timeline else None  # (U, C)
            if not self.options.window:
                rows.append([path] + self.cells(p.mean(0) if self.k else None, x[:1]) + [""])
                continue
            for unit, (start, end) in enumerate(chunk.spans):
                cells = self.cells(p[unit] if self.k else None, x[unit:unit + 1])
                rows.append([path, round(float(start), 3), round(float(end), 3)] + cells + [""])
            probs.append(p)
            spans.append(chunk.spans)
        data = {"rows": rows}
        if self.options.timeline:
            data["segments"] = self.timeline(path, np.concatenate(probs), np.concatenate(spans))
        return data, {}

    def cells(self, scores: np.ndarray | None, first: torch.Tensor) -> list:
        """Top-k label/score cells of ``scores`` ``(C,)``, and the caption of the clip ``first`` ``(1, T, 3, S, S)``."""
        cells: list = []
        if self.k:
            top = topk(scores, self.predictor.classes, self.k)
            cells += [v for label, score in top for v in (label, round(score, 6))]
        if self.predictor.captions:
            cells.append(self.predictor.caption_input(first, self.options.beam))
        return cells

    def timeline(self, path: str, probs: np.ndarray, spans: np.ndarray) -> list[dict]:
        """The video's segments; its .srt, .vtt and .png are written now."""
        events = self.options.events
        segments = video_segments(self.predictor.classes, events, probs, spans)
        write_video_timeline(self.options.timeline / self.names[path], segments, spans, probs,
                             self.predictor.classes, events.threshold)
        return segments

    def failed(self, path: str, error: str) -> dict:
        return {"rows": [[path] + [""] * (len(self.header) - 2) + [error]], "segments": []}

    def settings(self, checkpoint: str | Path) -> dict:
        """What the outputs depend on: the checkpoint's bytes and every option that changes a cell or a segment."""
        o = self.options
        return {"command": "predict", "checkpoint_sha256": file_digest(checkpoint), "header": self.header,
                "beam": o.beam, "device": self.predictor.device.type, **self.timeline_settings()}

    def timeline_settings(self) -> dict:
        o = self.options
        timeline = {"timeline": str(o.timeline.resolve()), "events": dataclasses.asdict(o.events)} if o.timeline else {}
        return {"window": o.window, "stride": o.stride if o.window else None, **timeline}


def predict_to_csv(checkpoint: str | Path, sources: list[str], csv_path: str | Path | None,
                   options: PredictOptions = PredictOptions(), *,
                   read: Callable[[ChunkRequest], Chunk] = read_chunk) -> int:
    """Predict every source and write the CSV (or print it); returns the number of failed inputs.

    With a CSV, every finished video is journaled beside it (``archive``) and the CSV
    appears, whole, when the last one is done; under torchrun the ranks share the videos.
    ``read`` is what a decoding worker does with one request (``reading.read_chunk``).
    """
    set_threads(options.threads)
    paths = expand_sources(sources)
    if csv_path is None:
        if distributed.world_from_env().size > 1:
            raise UsageError("under torchrun give --csv: the ranks' parts are merged into that file")
        return _print_rows(Predictor.from_checkpoint(checkpoint, device=options.device), paths, options, read)
    csv_path = Path(csv_path)
    journal = csv_path.with_name(csv_path.name + ".journal")
    # a journal beside the output: a run to resume (its outputs may exist if it was killed while writing them)
    replace = options.archive.overwrite or (options.archive.resume and bool(part_paths(journal)))
    check_output(csv_path, flag="--csv", overwrite=replace, inputs=[checkpoint, *paths])
    for name in ("segments.csv", "segments.json") if options.timeline else ():
        check_output(options.timeline / name, flag="--timeline", overwrite=replace, inputs=paths)
    remove_partial_outputs(csv_path.parent)
    with archive_device(options.device) as device:
        job = PredictJob(Predictor.from_checkpoint(checkpoint, device=str(device)), options, paths)
        failures = run_archive(job, paths, journal, job.settings(checkpoint), options.archive,
                               write=lambda entries: _write_outputs(job, csv_path, entries),
                               restart="add --overwrite to start afresh", read=read)
    if failures:
        print(f"{failures} input(s) failed", file=sys.stderr)
    return failures


def _write_outputs(job: PredictJob, csv_path: Path, entries: list[Entry]) -> None:
    rows = [row for entry in entries for row in entry.data["rows"]]
    write_csv(csv_path, job.header, rows)
    print(f"wrote {len(rows)} rows to {csv_path}")
    if job.options.timeline:
        write_segment_tables(job.options.timeline, [(e.path, e.data["segments"]) for e in entries],
                             job.timeline_settings())
        print(f"wrote the timelines of {len(entries)} video(s) to {job.options.timeline}")


def _print_rows(predictor: Predictor, paths: list[str], options: PredictOptions,
                read: Callable[[ChunkRequest], Chunk]) -> int:
    """No CSV: the rows go to stdout as each video is done (no journal), in input order."""
    job = PredictJob(predictor, options, paths)
    writer = csv.writer(sys.stdout)
    writer.writerow(safe_row(job.header))
    failures, timelines = 0, []
    with Prefetcher(paths, job.plan, job.prepare, workers=min(options.archive.workers, max(len(paths), 1)),
                    timeout=options.archive.timeout, read=read) as videos:
        for _, path, chunks in videos:
            try:
                data = job.video(path, chunks)[0]
            except VideoDecodeError as err:
                print(f"error: {err}", file=sys.stderr)
                data, failures = job.failed(path, str(err)), failures + 1
            writer.writerows(safe_row(row) for row in data["rows"])
            sys.stdout.flush()
            timelines.append((path, data.get("segments", [])))
    if options.timeline:
        write_segment_tables(options.timeline, timelines, job.timeline_settings())
    return failures
