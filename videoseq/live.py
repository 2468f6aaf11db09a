"""Live recognition: a frame source through ``Predictor.step`` to a window, a video, CSV / JSONL and events.

``run_stream`` reads a file, camera or URL with ``video.cameras.FrameSource``, keeps
one frame per model interval, and writes one row per inference step (time,
frame index, top-k) plus gesture events (``events.EventDetector``). Rows are
flushed as they are written; Ctrl-C (or a failing camera) ends the loop and every
output is closed, so nothing already written is lost.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from videoseq.errors import UsageError
from videoseq.events import EventDetector, EventOptions, GestureEvent
from videoseq.outputs import check_output, commit, partial_path
from videoseq.predict import Predictor, topk
from videoseq.progress import progress_bar
from videoseq.runtime import StopSignals, set_threads
from videoseq.tables import safe_row
from videoseq.video.cameras import (
    Capture,
    Frame,
    FrameSource,
    SourceOptions,
    is_live,
    open_capture,
)

WINDOW_TITLE = "videoseq"
SYSTEM_FONTS = "/usr/share/fonts/truetype/dejavu"


@dataclass
class StreamOptions:
    """What ``run_stream`` writes and shows."""

    topk: int = 5
    show: bool = False
    save_video: str | None = None
    csv: str | None = None
    jsonl: str | None = None
    events: EventOptions | None = None
    max_frames: int | None = None  # stop after this many frames (None: until the source ends)
    source: SourceOptions = field(default_factory=SourceOptions)
    overwrite: bool = False  # replace existing --csv / --jsonl / --save-video files


@dataclass
class StreamSummary:
    frames: int = 0  # frames processed (kept or skipped by the clock)
    steps: int = 0  # predictions made
    dropped: int = 0  # frames the reader dropped because inference fell behind
    events: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    error: str | None = None

    def line(self) -> str:
        fps = self.frames / self.seconds if self.seconds else 0.0
        text = (f"{self.frames} frames, {self.steps} steps, {self.events} events, {self.dropped} dropped, "
                f"{fps:.1f} frames/s")
        return text + (", interrupted" if self.interrupted else "")


class StepLog:
    """CSV and/or JSON-lines rows, one per step and one per event, flushed as written.

    CSV columns: ``kind`` (step | event), ``time_s``, ``frame``, ``end_s``,
    ``end_frame`` (events only), ``label_i``/``score_i`` (an event: its label and
    peak score in ``label_1``/``score_1``). The rows go to a temporary name beside each
    file (``outputs.partial_path``), renamed to the file's own name when the stream ends
    (``close(keep=True)``); a stream that read no frame leaves any existing file as it was.
    """

    def __init__(self, csv_path: str | None, jsonl_path: str | None, k: int) -> None:
        self.k = k
        self.files: list[tuple[IO[str], Path, Path]] = []  # (open handle, temporary name, final name)
        self.csv = self.jsonl = None
        if csv_path:
            self.csv_file = self._open(csv_path)
            self.csv = csv.writer(self.csv_file)
            self.csv.writerow(safe_row(["kind", "time_s", "frame", "end_s", "end_frame"]
                                       + [c for i in range(1, k + 1) for c in (f"label_{i}", f"score_{i}")]))
        if jsonl_path:
            self.jsonl = self._open(jsonl_path)

    def _open(self, path: str) -> IO[str]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(path)
        handle = open(tmp, "w", newline="")
        self.files.append((handle, tmp, Path(path)))
        return handle

    def step(self, time_s: float, frame: int, top: list[tuple[str, float]]) -> None:
        if self.csv:
            cells = [v for label, score in top for v in (label, round(score, 6))]
            self._csv_row(["step", round(time_s, 3), frame, "", ""] + cells)
        if self.jsonl:
            self._json({"kind": "step", "time_s": round(time_s, 3), "frame": frame, "topk": topk_records(top)})

    def event(self, event: GestureEvent) -> None:
        if self.csv:
            self._csv_row(["event", round(event.start_s, 3), event.start_frame, round(event.end_s, 3),
                           event.end_frame, event.label, round(event.peak, 6)] + ["", ""] * (self.k - 1))
        if self.jsonl:
            self._json({"kind": "event", **event_record(event)})

    def _csv_row(self, row: list) -> None:
        self.csv.writerow(safe_row(row))
        self.csv_file.flush()

    def _json(self, record: dict) -> None:
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def close(self, keep: bool = True) -> None:
        """Close every file; ``keep``: put each in place under its name, else delete what was written."""
        for handle, tmp, path in self.files:
            handle.close()
            finish(tmp, path, keep)
        self.files = []


def finish(tmp: Path, path: Path, keep: bool) -> None:
    """A stream output written under ``tmp``: in place as ``path`` (``keep``), or deleted."""
    if keep:
        commit(tmp, path)
    else:
        tmp.unlink(missing_ok=True)


def topk_records(top: list[tuple[str, float]]) -> list[dict]:
    """``[{"label": ..., "score": ...}]`` as JSON lines and the WebSocket stream write them."""
    return [{"label": label, "score": round(score, 6)} for label, score in top]


def event_record(event: GestureEvent) -> dict:
    """One gesture event as JSON lines and the WebSocket stream write it."""
    return {"label": event.label, "start_s": round(event.start_s, 3), "end_s": round(event.end_s, 3),
            "start_frame": event.start_frame, "end_frame": event.end_frame, "peak": round(event.peak, 6)}


def annotate(image: np.ndarray, top: list[tuple[str, float]], fps: float) -> np.ndarray:
    """A BGR copy of the RGB frame with the top labels, their scores and the fps drawn top left."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    scale = max(0.4, bgr.shape[0] / 480)
    lines = [f"{label} {score:.2f}" for label, score in top[:3]] or ["..."]
    lines.append(f"{fps:.1f} fps")
    height = int(22 * scale)
    width = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, 1)[0][0] for text in lines)
    cv2.rectangle(bgr, (0, 0), (width + 12, height * len(lines) + 8), (0, 0, 0), thickness=-1)
    for i, text in enumerate(lines):
        color = (0, 255, 0) if i == 0 else (255, 255, 255)
        cv2.putText(bgr, text, (6, height * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, color, 1, cv2.LINE_AA)
    return bgr


class Viewer:
    """The ``--show`` window and the ``--save-video`` file; both optional."""

    def __init__(self, show: bool, save_video: str | None) -> None:
        self.show, self.save_video = show, save_video
        fonts = os.environ.get("QT_QPA_FONTDIR", "")  # OpenCV points Qt to a font folder it does not ship
        if show and not Path(fonts).is_dir() and Path(SYSTEM_FONTS).is_dir():
            os.environ["QT_QPA_FONTDIR"] = SYSTEM_FONTS
        self.writer: cv2.VideoWriter | None = None
        self.partial = Path()  # the temporary name of the video being written

    @property
    def active(self) -> bool:
        return self.show or bool(self.save_video)

    def frame(self, bgr: np.ndarray, fps: float | None) -> bool:
        """Show and/or write one annotated frame; False when the user closed the window (q / Esc)."""
        if self.save_video:
            if self.writer is None:
                self.writer = self._open_writer(bgr.shape[1], bgr.shape[0], fps or 25.0)
            self.writer.write(bgr)
        if self.show:
            cv2.imshow(WINDOW_TITLE, bgr)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                return False
        return True

    def _open_writer(self, width: int, height: int, fps: float) -> cv2.VideoWriter:
        Path(self.save_video).parent.mkdir(parents=True, exist_ok=True)
        self.partial = partial_path(self.save_video, keep_suffix=True)  # OpenCV picks the format by the suffix
        writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise UsageError(f"--save-video {self.save_video}: OpenCV cannot write it; use an .mp4 or .avi name")
        return writer

    def close(self, keep: bool = True) -> None:
        """Close the window; finish the video file (``keep``) or delete it."""
        if self.writer is not None:
            self.writer.release()
            finish(self.partial, Path(self.save_video), keep)
            self.writer = None
        if self.show:
            cv2.destroyAllWindows()


class RateMeter:
    """Frames per second over the last ``window`` frames."""

    def __init__(self, window: int = 30) -> None:
        self.times: list[float] = []
        self.window = window

    def tick(self) -> float:
        self.times = (self.times + [time.perf_counter()])[-self.window :]
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


def run_stream(
    predictor: Predictor, source: str | int, options: StreamOptions,
    *, opener: Callable[[str | int], Capture] = open_capture,
) -> StreamSummary:
    """Recognise ``source`` frame by frame until it ends, fails, the window closes or Ctrl-C."""
    k = min(options.topk, len(predictor.classes))
    detector = EventDetector(predictor.classes, options.events) if options.events else None
    log = StepLog(options.csv, options.jsonl, k)
    viewer = Viewer(options.show, options.save_video)
    src = FrameSource(source, options.source, opener=opener)
    summary, meter, top = StreamSummary(), RateMeter(), []
    bar = progress_bar(desc=f"stream {source}", total=options.max_frames, unit="frame")
    start = time.perf_counter()
    # Ctrl-C sets a flag checked after every frame: a KeyboardInterrupt raised inside a
    # finaliser (a decoder or tensor being freed) would be swallowed and the stream run on.
    with StopSignals(then="closing the outputs after this frame") as stop:
        try:
            for frame in src:
                if summary.frames == 0:
                    predictor.reset_stream(source_fps=frame.source_fps)
                top = _step(predictor, frame, k, log, detector, summary) or top
                summary.frames += 1
                bar.update(1)
                fps = meter.tick()
                if viewer.active and not viewer.frame(annotate(frame.image, top, fps), frame.source_fps):
                    break
                if stop.requested or (options.max_frames and summary.frames >= options.max_frames):
                    break
        except KeyboardInterrupt:  # a second Ctrl-C
            pass
        finally:
            summary.interrupted = stop.requested
            bar.close()
            _close_stream(src, detector, log, viewer, summary, start)
    return summary


def _close_stream(src: FrameSource, detector: EventDetector | None, log: StepLog, viewer: Viewer,
                  summary: StreamSummary, start: float) -> None:
    """Flush the open event and close every output (also after Ctrl-C or a failed source)."""
    src.close()
    for event in detector.flush() if detector else []:
        log.event(event)
        summary.events += 1
    log.close(keep=summary.frames > 0)
    viewer.close(keep=summary.frames > 0)
    summary.seconds = time.perf_counter() - start
    summary.dropped, summary.error = src.dropped, src.error


def _step(predictor: Predictor, frame: Frame, k: int, log: StepLog, detector: EventDetector | None,
          summary: StreamSummary) -> list[tuple[str, float]] | None:
    """One frame through the model; logs the step and any closed event. The top-k, or None."""
    top, events = step_frame(predictor, frame.image, frame.time_s, frame.index, k, detector)
    if top is None:
        return None
    summary.steps += 1
    log.step(frame.time_s, frame.index, top)
    for event in events:
        log.event(event)
        summary.events += 1
    return top


def step_frame(predictor: Predictor, image: np.ndarray, time_s: float | None, index: int, k: int,
               detector: EventDetector | None) -> tuple[list[tuple[str, float]] | None, list[GestureEvent]]:
    """One uint8 RGB frame ``(H, W, 3)`` through ``Predictor.step``: its top-k (None: no prediction
    yet, or the clock skipped the frame) and the events it closed. ``predict --stream`` and the
    WebSocket stream of ``videoseq serve`` both run their frames through here.
    """
    probs = predictor.step(image, time_s)
    if probs is None:
        return None, []
    events = detector.update(time_s, index, probs) if detector else []
    return topk(probs, predictor.classes, k), events


def check_stream(checkpoint: str, source: str, options: StreamOptions) -> None:
    """What ``predict --stream`` checks before it loads the model: a display for ``--show``, outputs that
    replace nothing unasked, a source that is not a folder."""
    if options.show and sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                                   or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError("--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set (a remote shell "
                         "or a container?); run without --show (--csv, --jsonl and --save-video OUT.mp4 keep the "
                         "results), or on a virtual display: xvfb-run videoseq predict ...")
    for flag, path in (("--csv", options.csv), ("--jsonl", options.jsonl), ("--save-video", options.save_video)):
        if path:
            check_output(path, flag=flag, overwrite=options.overwrite, inputs=[checkpoint, source])
    if Path(str(source)).is_dir():
        raise UsageError(f"SOURCE {source} is a folder; --stream reads one file, camera index or URL "
                         "(predict without --stream reads every video of a folder)")


def stream_to_outputs(checkpoint: str, source: str, options: StreamOptions, device: str = "auto",
                      threads: int | str = "auto") -> int:
    """The ``predict --stream`` command: run, print the summary; exit status 0, 1 (source failed) or 130.

    Outputs are written only when the stream read at least one frame (``StepLog``). ``threads``: CPU
    threads of torch and OpenCV (``runtime.thread_policy``, as for ``predict``).
    """
    check_stream(checkpoint, source, options)
    set_threads(threads)
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    predictor.check_streamable()
    if not is_live(source):  # a file batch predict refuses fails here too, with batch predict's message
        predictor.read_views(source)
    summary = run_stream(predictor, source, options)
    print(summary.line())
    for path in (options.csv, options.jsonl, options.save_video):
        if path and summary.frames:
            print(f"wrote {path}")
    if summary.error:
        print(f"error: {summary.error}", file=sys.stderr)
        return 1
    return 130 if summary.interrupted else 0
