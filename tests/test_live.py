import csv
import json
import os
import signal
import time

import cv2
import numpy as np
import pytest
import torch

from videoseq.config import config_from_dict
from videoseq.events import EventOptions
from videoseq.live import StreamOptions, annotate, run_stream
from videoseq.predict import Predictor
from videoseq.video.cameras import SourceOptions
from videoseq.video.decoder import VideoDecodeError

from conftest import informative_model, write_video

CLASSES = ["Nothing", "Swipe", "Grow"]


@pytest.fixture(scope="module")
def predictor():
    config = config_from_dict({"data": {"frames": 3, "size": 32, "sampling": "dense", "stride": 2},
                               "model": {"backbone": "mobilenet_v3_small", "head": "gru", "head_args": {"hidden": 8}}})
    model = informative_model("gru", {"hidden": 8}, frames=3, size=32)
    return Predictor(model, config, CLASSES, torch.device("cpu"))


def moving_frames(n: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_file_streams_to_csv_jsonl_events_and_an_annotated_video(predictor, tmp_path):
    video = write_video(tmp_path / "in.avi", moving_frames(20), fps=10)
    out = {name: str(tmp_path / name) for name in ("steps.csv", "steps.jsonl", "out.mp4")}
    options = StreamOptions(topk=2, csv=out["steps.csv"], jsonl=out["steps.jsonl"], save_video=out["out.mp4"],
                            events=EventOptions(smooth=2, threshold=0.0))
    summary = run_stream(predictor, str(video), options)
    # stride 2 at the file's 10 fps: frames 0, 2, ..., 18 are kept; the 3-frame buffer is full from frame 4
    assert (summary.frames, summary.steps, summary.dropped, summary.error) == (20, 8, 0, None)
    rows = read_rows(out["steps.csv"])
    steps = [r for r in rows if r["kind"] == "step"]
    assert [int(r["frame"]) for r in steps] == [4, 6, 8, 10, 12, 14, 16, 18]
    assert [float(r["time_s"]) for r in steps] == pytest.approx([0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])
    assert all(r["label_1"] in CLASSES and float(r["score_1"]) >= float(r["score_2"]) for r in steps)
    events = [r for r in rows if r["kind"] == "event"]
    assert len(events) == summary.events >= 1 and all(float(e["end_s"]) >= float(e["time_s"]) for e in events)
    records = [json.loads(line) for line in open(out["steps.jsonl"])]
    assert [r["frame"] for r in records if r["kind"] == "step"] == [4, 6, 8, 10, 12, 14, 16, 18]
    assert sum(r["kind"] == "event" for r in records) == summary.events
    capture = cv2.VideoCapture(out["out.mp4"])
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 48


def test_step_rows_equal_the_predictor_on_the_same_frames(predictor, tmp_path):
    frames = moving_frames(8)
    video = write_video(tmp_path / "in.avi", frames, fps=10)
    run_stream(predictor, str(video), StreamOptions(topk=3, csv=str(tmp_path / "s.csv")))
    decoded = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in _read_all(video)]
    expected = predictor.predict_clip(np.stack(decoded[0:5:2]))  # the first full buffer: frames 0, 2, 4
    row = read_rows(tmp_path / "s.csv")[0]
    got = {row[f"label_{i}"]: float(row[f"score_{i}"]) for i in (1, 2, 3)}
    assert got == pytest.approx({c: round(float(p), 6) for c, p in zip(CLASSES, expected)}, abs=1e-5)


def _read_all(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


class FlakyCamera:
    """A camera (duck-typed cv2.VideoCapture) that delivers noisy frames, or fails as asked."""

    def __init__(self, *, on_frame=None, frames: int | None = None) -> None:
        self.count, self.on_frame, self.frames = 0, on_frame, frames
        self.rng = np.random.default_rng(1)

    def isOpened(self):  # noqa: N802
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        pass

    def read(self):
        self.count += 1
        if self.frames is not None and self.count > self.frames:
            return False, None
        if self.on_frame:
            self.on_frame(self.count)
        time.sleep(0.01)  # a camera delivers at its own pace (100 fps here)
        return True, self.rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)


def test_a_camera_that_fails_ends_the_stream_with_its_error_and_closed_outputs(predictor, tmp_path):
    def opener(source):
        if opener.calls:
            raise VideoDecodeError(source, "OpenCV cannot open it")
        opener.calls += 1
        return FlakyCamera(frames=40)

    opener.calls = 0
    source = SourceOptions(retries=2, retry_delay=0.01, queue_size=64)
    options = StreamOptions(csv=str(tmp_path / "s.csv"), source=source)
    summary = run_stream(predictor, "0", options, opener=opener)
    assert "cannot open" in summary.error and "after 3 attempt(s)" in summary.error
    assert summary.frames == 40 and summary.dropped == 0
    assert len(read_rows(tmp_path / "s.csv")) == summary.steps > 0


def test_ctrl_c_flushes_and_closes_every_output(predictor, tmp_path):
    def interrupt(count):
        if count == 50:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered while frames keep coming

    paths = {k: str(tmp_path / k) for k in ("s.csv", "s.jsonl", "s.mp4")}
    options = StreamOptions(csv=paths["s.csv"], jsonl=paths["s.jsonl"], save_video=paths["s.mp4"],
                            events=EventOptions(threshold=0.0))
    # a camera that ends after 2,000 frames: a lost Ctrl-C fails the test instead of hanging it
    summary = run_stream(predictor, "0", options, opener=lambda source: FlakyCamera(on_frame=interrupt, frames=2000))
    assert summary.interrupted and summary.error is None and 1 <= summary.frames < 2000
    rows = read_rows(paths["s.csv"])
    assert sum(r["kind"] == "step" for r in rows) == summary.steps
    assert sum(r["kind"] == "event" for r in rows) == summary.events  # the open event was flushed
    assert len(open(paths["s.jsonl"]).read().splitlines()) == len(rows)
    capture = cv2.VideoCapture(paths["s.mp4"])  # finalised: readable with every shown frame
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == summary.frames


def test_annotate_draws_labels_and_fps_on_a_copy():
    frame = np.full((120, 160, 3), 128, dtype=np.uint8)
    drawn = annotate(frame, [("Swipe", 0.91), ("Grow", 0.05)], fps=29.7)
    assert drawn.shape == frame.shape and (frame == 128).all()
    assert (drawn[:40, :80] != 128).any() and (drawn[-20:, -20:] == 128).all()


def test_cli_stream_from_a_missing_camera_retries_then_exits_with_the_reason(tiny_run, capsys):
    from videoseq.cli import main

    code = main(["predict", str(tiny_run / "best.pt"), "7", "--stream", "--retries", "1", "--retry-delay", "0"])
    captured = capsys.readouterr()
    assert code == 1 and "retry 1/1" in captured.out
    assert "cannot decode 7" in captured.err and "camera with this index" in captured.err
    assert main(["predict", str(tiny_run / "best.pt"), "a.avi", "b.avi", "--stream"]) == 2
    assert "one SOURCE" in capsys.readouterr().err
