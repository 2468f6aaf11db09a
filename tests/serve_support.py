"""Helpers of the serve tests: a streaming checkpoint, real frames as JPEGs, stream messages, replays."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import cv2
import numpy as np

from videoseq.checkpoint import checkpoint_payload, save_checkpoint
from videoseq.cli import main
from videoseq.config import config_from_dict

from conftest import informative_model

STREAM_CLASSES = ["Nothing", "Swipe", "Grow"]
HEADER = struct.Struct("<Id")  # what the page and a client send before each JPEG


def stream_checkpoint(path: Path) -> Path:
    """A gesture-style checkpoint: 4 frames of 64 px, stride 2 at a training rate of 12 fps (one frame
    every 1/6 s enters the model), with input-dependent logits."""
    config = config_from_dict({"data": {"frames": 4, "size": 64, "sampling": "dense", "stride": 2, "fps": 12},
                               "model": {"backbone": "mobilenet_v3_small", "head": "gru", "head_args": {"hidden": 16}}})
    model = informative_model("gru", {"hidden": 16}, frames=4, size=64)
    return save_checkpoint(path, checkpoint_payload(model, config, STREAM_CLASSES))


def read_bgr(path: Path, count: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The first ``count`` frames of a real clip (BGR, resized to ``size`` = (width, height) if given)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if size else frame)
    capture.release()
    return frames


def jpegs(frames: list[np.ndarray], quality: int = 90) -> list[bytes]:
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for f in frames]


def frame_message(seq: int, time_s: float, jpeg: bytes) -> bytes:
    return HEADER.pack(seq, time_s) + jpeg


def write_lossless(path: Path, jpeg_list: list[bytes], fps: float) -> Path:
    """The JPEGs decoded as the server decodes them (cv2.imdecode), into a lossless FFV1 video."""
    images = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpeg_list]
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    assert writer.isOpened(), f"cannot write {path}"
    for image in images:
        writer.write(image)
    writer.release()
    return path


def predict_stream_rows(checkpoint: Path, video: Path, out: Path, *extra: str) -> list[dict]:
    """``videoseq predict CHECKPOINT VIDEO --stream --csv OUT --topk 3`` and its rows."""
    assert main(["predict", str(checkpoint), str(video), "--stream", "--csv", str(out), "--topk", "3", *extra]) == 0
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def write_y4m(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """BGR frames (even width and height) as a YUV4MPEG2 file, what Chromium's fake camera plays."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def assert_not_blank(png: Path) -> np.ndarray:
    """A screenshot with real content: contrast and many colours, not one flat fill."""
    image = cv2.imread(str(png))
    assert image is not None, f"no image at {png}"
    colours = len(np.unique(image.reshape(-1, 3), axis=0))
    assert image.std() > 10 and colours > 100, f"{png} looks blank: std {image.std():.1f}, {colours} colours"
    return image
