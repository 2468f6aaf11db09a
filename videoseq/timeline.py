"""Timelines of long videos: sliding windows merged into labelled segments, as tables, subtitles and a figure.

``predict VIDEO --window 2 --stride 1 --timeline DIR`` classifies overlapping windows,
then merges them with the gesture-event logic (``events.detect_events``: smoothing over
``--smooth`` windows, ``--threshold``, ``--min-duration``, an optional ``--background``
class that is never a segment). A segment runs from the start of its first window to
the end of its last, with its peak and mean smoothed score. Written:

    DIR/segments.csv        path,label,start_s,end_s,peak,mean (every video, in input order)
    DIR/segments.json       the same per video, with the settings
    DIR/<name>.srt          per video: SubRip subtitles, one cue per segment ("Label (0.93)")
    DIR/<name>.vtt          per video: WebVTT, the same cues (what an HTML5 <track> loads)
    DIR/<name>.png          per video: the label bands over time above the top-1 score of every window

``<name>`` is the video's path relative to the folder all inputs share, without its
suffix (``/archive/cam1/day1.mp4`` -> ``DIR/cam1/day1.srt`` beside other cameras'). A player
shows the labels as subtitles when the ``.srt`` has the video's name beside it
(``mpv --sub-file=DIR/day1.srt day1.mp4``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from videoseq.events import EventOptions, detect_events, span_steps
from videoseq.outputs import atomic_output
from videoseq.tables import write_csv

SEGMENT_COLUMNS = ("path", "label", "start_s", "end_s", "peak", "mean")


def video_segments(classes: list[str], options: EventOptions, probs: np.ndarray, spans: np.ndarray) -> list[dict]:
    """Segments of one video from its windows' probabilities ``(W, C)`` and ``(W, 2)`` seconds, rounded as written."""
    return [{"label": e.label, "start_s": round(e.start_s, 3), "end_s": round(e.end_s, 3), "peak": round(e.peak, 6),
             "mean": round(e.mean, 6)} for e in detect_events(classes, span_steps(probs, spans), options)]


def timeline_names(paths: list[str]) -> dict[str, Path]:
    """Each video's name under the timeline folder: its path below the inputs' common folder, no suffix."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    root = os.path.commonpath(folders) if folders else ""
    return {p: Path(os.path.relpath(os.path.abspath(p), root)).with_suffix("") for p in paths}


def clock(seconds: float, separator: str) -> str:
    """``HH:MM:SS,mmm`` (SRT, ``separator=","``) or ``HH:MM:SS.mmm`` (WebVTT)."""
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    return f"{hours:02d}:{minutes:02d}:{ms // 1000:02d}{separator}{ms % 1000:03d}"


def cue_text(segment: dict) -> str:
    return f"{segment['label']} ({segment['peak']:.2f})"


def srt_text(segments: list[dict]) -> str:
    return "".join(f"{n}\n{clock(s['start_s'], ',')} --> {clock(s['end_s'], ',')}\n{cue_text(s)}\n\n"
                   for n, s in enumerate(segments, start=1))


def webvtt_text(segments: list[dict]) -> str:
    return "WEBVTT\n\n" + "".join(f"{clock(s['start_s'], '.')} --> {clock(s['end_s'], '.')}\n{cue_text(s)}\n\n"
                                  for s in segments)


def write_video_timeline(base: Path, segments: list[dict], spans: np.ndarray, probs: np.ndarray,
                         classes: list[str], threshold: float) -> None:
    """``base``.srt, .vtt and .png of one video, each written whole under a temporary name, then renamed."""
    for suffix, text in ((".srt", srt_text(segments)), (".vtt", webvtt_text(segments))):
        with atomic_output(base.with_name(base.name + suffix)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    with atomic_output(base.with_name(base.name + ".png")) as tmp:
        plot_timeline(tmp, segments, spans, probs, classes, threshold, title=base.name)


def plot_timeline(path: Path, segments: list[dict], spans: np.ndarray, probs: np.ndarray, classes: list[str],
                  threshold: float, title: str) -> None:
    """Label bands (one colour per class) above the top-1 score of every window, over the video's time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab20")
    fig, (bands, scores) = plt.subplots(2, 1, figsize=(10, 3.2), sharex=True, height_ratios=(1, 2))
    for segment in segments:
        colour = colours(classes.index(segment["label"]) % 20)
        bands.axvspan(segment["start_s"], segment["end_s"], color=colour, alpha=0.8)
        bands.text((segment["start_s"] + segment["end_s"]) / 2, 0.5, segment["label"], ha="center", va="center",
                   fontsize=8, clip_on=True)
    bands.set_yticks([])
    bands.set_title(title, fontsize=9)
    centres = spans.mean(axis=1) if len(spans) else np.zeros(0)
    top = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    scores.plot(centres, probs.max(axis=1) if len(probs) else centres, color="0.3", linewidth=1)
    scores.scatter(centres, probs.max(axis=1) if len(probs) else centres, c=[colours(i % 20) for i in top], s=8,
                   zorder=3)
    scores.axhline(threshold, color="red", linestyle=":", linewidth=1, label=f"threshold {threshold:g}")
    scores.set(ylim=(0, 1.02), xlabel="time (s)", ylabel="top-1 score")
    scores.set_xlim(0, float(spans[:, 1].max()) if len(spans) else 1)
    scores.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def write_segment_tables(folder: Path, videos: list[tuple[str, list[dict]]], settings: dict) -> None:
    """``segments.csv`` and ``segments.json`` of every video, in the order given."""
    rows = [[path] + [s[c] for c in SEGMENT_COLUMNS[1:]] for path, segments in videos for s in segments]
    write_csv(folder / "segments.csv", SEGMENT_COLUMNS, rows)
    document = {"settings": settings, "videos": [{"path": path, "segments": segments} for path, segments in videos]}
    with atomic_output(folder / "segments.json") as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")
