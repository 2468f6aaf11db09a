"""Timelines: windows merged into segments, written as CSV, JSON, SRT, WebVTT and a figure."""

import json
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import srt
import webvtt

from videoseq.events import EventOptions
from videoseq.tables import read_csv
from videoseq.timeline import (
    clock,
    srt_text,
    timeline_names,
    video_segments,
    webvtt_text,
    write_segment_tables,
    write_video_timeline,
)

CLASSES = ["Nothing", "Wave", "Clap"]


def windows(labels: list[str], score: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """One 2 s window every second, each sure of its label: probabilities (W, 3) and spans (W, 2)."""
    probs = np.full((len(labels), 3), (1 - score) / 2)
    probs[np.arange(len(labels)), [CLASSES.index(label) for label in labels]] = score
    starts = np.arange(len(labels), dtype=float)
    return probs, np.stack([starts, starts + 2], axis=1)


def test_windows_merge_into_segments_from_the_first_start_to_the_last_end():
    probs, spans = windows(["Nothing", "Wave", "Wave", "Wave", "Nothing", "Clap", "Nothing"])
    probs[2, 1] = 0.6  # the middle Wave window is less sure
    segments = video_segments(CLASSES, EventOptions(smooth=1, background="Nothing"), probs, spans)
    assert segments == [{"label": "Wave", "start_s": 1.0, "end_s": 5.0, "peak": 0.9, "mean": 0.8},
                        {"label": "Clap", "start_s": 5.0, "end_s": 7.0, "peak": 0.9, "mean": 0.9}]
    longer = video_segments(CLASSES, EventOptions(smooth=1, background="Nothing", min_duration=3), probs, spans)
    assert [s["label"] for s in longer] == ["Wave"]  # the 2 s Clap is shorter than 3 s


def test_clock_formats_hours_minutes_seconds_and_milliseconds():
    assert clock(3725.5, ",") == "01:02:05,500" and clock(0.0004, ".") == "00:00:00.000"
    assert clock(59.9996, ".") == "00:01:00.000"


def test_subtitles_parse_with_standard_parsers_and_hold_each_segment(tmp_path):
    segments = [{"label": "Wave", "start_s": 1.25, "end_s": 4.0, "peak": 0.934, "mean": 0.8},
                {"label": "Clap", "start_s": 3661.0, "end_s": 3663.5, "peak": 0.5, "mean": 0.5}]
    subtitles = list(srt.parse(srt_text(segments)))
    assert [(s.index, s.start, s.end, s.content) for s in subtitles] == [
        (1, timedelta(seconds=1.25), timedelta(seconds=4), "Wave (0.93)"),
        (2, timedelta(hours=1, seconds=61), timedelta(hours=1, seconds=63.5), "Clap (0.50)")]
    (tmp_path / "v.vtt").write_text(webvtt_text(segments))
    cues = webvtt.read(str(tmp_path / "v.vtt"))
    assert [(c.start, c.end, c.text) for c in cues] == [("00:00:01.250", "00:00:04.000", "Wave (0.93)"),
                                                         ("01:01:01.000", "01:01:03.500", "Clap (0.50)")]
    assert list(srt.parse(srt_text([]))) == [] and len(webvtt.from_string(webvtt_text([]))) == 0


def test_names_mirror_the_inputs_below_their_common_folder():
    names = timeline_names(["/archive/cam1/day1.mp4", "/archive/cam2/day1.mp4", "/archive/top.avi"])
    assert names == {"/archive/cam1/day1.mp4": Path("cam1/day1"),
                     "/archive/cam2/day1.mp4": Path("cam2/day1"),
                     "/archive/top.avi": Path("top")}


def test_a_video_gets_its_subtitles_and_figure_and_the_run_its_tables(tmp_path):
    probs, spans = windows(["Wave", "Wave", "Nothing", "Clap"])
    segments = video_segments(CLASSES, EventOptions(smooth=1, background="Nothing"), probs, spans)
    write_video_timeline(tmp_path / "cam" / "day", segments, spans, probs, CLASSES, threshold=0.5)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["day.png", "day.srt", "day.vtt"]
    figure = cv2.imread(str(tmp_path / "cam" / "day.png"))
    assert figure.shape == (320, 1000, 3)  # 10 x 3.2 inches at 100 dpi
    write_segment_tables(tmp_path, [("day.mp4", segments), ("empty.mp4", [])], {"window": 2})
    header, rows = read_csv(tmp_path / "segments.csv")
    assert header == ["path", "label", "start_s", "end_s", "peak", "mean"]
    assert [(r["label"], r["start_s"], r["end_s"]) for r in rows] == [("Wave", "0.0", "3.0"), ("Clap", "3.0", "5.0")]
    document = json.loads((tmp_path / "segments.json").read_text())
    assert document["settings"] == {"window": 2} and document["videos"][1] == {"path": "empty.mp4", "segments": []}
