"""``videoseq bench stream``: streaming against re-running the window, on one video file.

The file is decoded by the same reader thread as a live source and run twice
through the same frame clock: *streaming* (the backbone once per kept frame, the
head over the feature buffer) and *window* (at every kept frame, the whole model
re-run on the last ``clip_len`` frames, as window-based live demos do; the
preprocessed frames are cached, so only the model is repeated). Both timings
include decoding and preprocessing; the ratio is measured in one run. For a motion model
(``data.modality`` flow, rgbdiff, rgb+flow) the motion images of the kept frames are also
computed alone (``stream.MotionStream``, as a stream does): the flow cost per kept frame,
reported beside the model's.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from videoseq.checkpoint import open_source
from videoseq.errors import InputError
from videoseq.predict import Predictor
from videoseq.stream import FrameClock, MotionStream
from videoseq.video.cameras import FrameSource


def load_predictor(model: str | Path, overrides: list[str] | None = None, num_classes: int = 10) -> Predictor:
    """A checkpoint (``.pt`` / ``.onnx``), or a YAML config (with ``--set`` overrides) built with
    random weights: an untrained model runs at the same speed."""
    if Path(model).suffix.lower() == ".onnx" and not overrides:
        return Predictor.from_checkpoint(model, device="cpu")
    source = open_source(model, overrides)
    if source.payload is not None:
        return Predictor.from_source(source, device="cpu")
    network = source.model(num_classes, pretrained=False)
    return Predictor(network, source.config, [f"class_{i}" for i in range(num_classes)], torch.device("cpu"))


def write_test_video(path: Path, frames: int = 300, width: int = 320, height: int = 240, fps: float = 25.0) -> Path:
    """A moving-gradient MJPG clip at UCF101's geometry (320x240, 25 fps)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    ys, xs = np.mgrid[0:height, 0:width]
    for t in range(frames):
        frame = np.stack([(xs + 3 * t) % 256, (ys + 2 * t) % 256, (xs + ys - t) % 256], axis=-1)
        writer.write(frame.astype(np.uint8))
    writer.release()
    return path


@dataclass
class ModeTiming:
    mode: str
    frames: int
    steps: int
    seconds: float  # wall time, decoding included
    step_seconds: float  # time inside the model calls
    steady_frames: int = 0  # frames after the first full buffer (the first prediction)
    steady_seconds: float = 0.0  # their wall time, decoding included: the per-frame cost of a long stream

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.seconds / self.frames

    @property
    def steady_ms_per_frame(self) -> float:
        return 1000 * self.steady_seconds / max(self.steady_frames, 1)


class SteadyClock:
    """Wall time from the first prediction on: a stream's cost once its buffer is full.

    Filling the buffer costs streaming ``clip_len - 1`` backbone passes that the window
    mode does not make (it has nothing to re-run yet); a live stream pays them once, so
    the per-frame cost of a long stream is the cost after the first prediction.
    """

    def __init__(self) -> None:
        self.start: float | None = None
        self.frames = 0

    def tick(self, predicted: bool) -> None:
        """Call once per frame, after processing it; ``predicted``: this frame gave a prediction."""
        if self.start is None:
            if predicted:
                self.start = time.perf_counter()
        else:
            self.frames += 1

    def seconds(self) -> float:
        return 0.0 if self.start is None else time.perf_counter() - self.start


def time_stream(predictor: Predictor, source: Path) -> ModeTiming:
    """Streaming: ``Predictor.step`` on every decoded frame."""
    frames = steps = 0
    inside = 0.0
    steady = SteadyClock()
    start = time.perf_counter()
    with FrameSource(str(source)) as src:
        for frame in src:
            if frames == 0:
                predictor.reset_stream(source_fps=frame.source_fps)
            t0 = time.perf_counter()
            predicted = predictor.step(frame.image, frame.time_s) is not None
            inside += time.perf_counter() - t0
            steps += predicted
            frames += 1
            steady.tick(predicted)
    return ModeTiming("stream", frames, steps, time.perf_counter() - start, inside, steady.frames, steady.seconds())


@torch.no_grad()
def time_window(predictor: Predictor, source: Path) -> ModeTiming:
    """Window re-run: the whole model on the last ``clip_len`` kept frames at every kept frame."""
    frames = steps = 0
    inside = 0.0
    window: deque[torch.Tensor] = deque(maxlen=predictor.clip_len)
    steady = SteadyClock()
    start = time.perf_counter()
    motion = MotionStream(predictor.motion) if predictor.motion is not None else None
    with FrameSource(str(source)) as src:
        for frame in src:
            if frames == 0:
                clock = FrameClock(predictor.stream_interval(frame.source_fps))
            frames += 1
            predicted = False
            if clock.take(frame.time_s):
                t0 = time.perf_counter()
                image = frame.image if motion is None else motion.push(frame.image)  # (h, w, C)
                window.append(predictor.prepare(image[None, None])[0])  # (1, C, S, S)
                if len(window) == predictor.clip_len:
                    predictor.model(torch.stack(list(window), dim=1))  # (1, T, 3, S, S) -> (1, C)
                    predicted = True
                inside += time.perf_counter() - t0
            steps += predicted
            steady.tick(predicted)
    return ModeTiming("window", frames, steps, time.perf_counter() - start, inside, steady.frames, steady.seconds())


@torch.no_grad()
def step_flops(predictor: Predictor) -> tuple[int, int] | None:
    """Model FLOPs of one streaming step (backbone on one frame, head over the buffer) and of
    one window re-run (the whole model on ``clip_len`` frames); None for an ONNX model."""
    from torch.utils.flop_counter import FlopCounterMode

    model = predictor.model
    if not isinstance(model, nn.Module):
        return None
    size = predictor.config.data.size
    clip = torch.zeros(1, predictor.clip_len, predictor.config.data.input_channels(), size, size)
    features = model.forward_features(clip)
    counts = []
    for run in (lambda: model.forward_frames(clip[0, :1]), lambda: model.forward_head(features), lambda: model(clip)):
        with FlopCounterMode(display=False) as counter:
            run()
        counts.append(counter.get_total_flops())
    frame, head, window = counts
    return frame + head, window


def time_motion(predictor: Predictor, source: Path) -> tuple[int, float] | None:
    """Kept frames and seconds spent computing their motion images alone (None: an RGB model)."""
    if predictor.motion is None:
        return None
    motion, kept, seconds = MotionStream(predictor.motion), 0, 0.0
    with FrameSource(str(source)) as src:
        for i, frame in enumerate(src):
            if i == 0:
                clock = FrameClock(predictor.stream_interval(frame.source_fps))
            if clock.take(frame.time_s):
                start = time.perf_counter()
                motion.push(frame.image)
                seconds += time.perf_counter() - start
                kept += 1
    return kept, seconds


def print_motion_cost(predictor: Predictor, stream: ModeTiming, motion: tuple[int, float] | None) -> None:
    if motion is None:
        return
    d, (kept, seconds) = predictor.config.data, motion
    flow_ms, step_ms = 1000 * seconds / max(kept, 1), 1000 * stream.step_seconds / max(stream.frames, 1)
    print(f"motion ({d.modality}, {d.flow_method}, {predictor.motion.short_side} px, stack {d.flow_stack}): "
          f"{flow_ms:.2f} ms per kept frame, {kept} kept frames; the whole stream step costs "
          f"{1000 * stream.step_seconds / max(kept, 1):.2f} ms per kept frame ({step_ms:.2f} ms per file frame)")


def bench_stream(model: str | Path, source: str | Path | None = None, *, frames: int = 300,
                 threads: int | None = None, overrides: list[str] | None = None,
                 repeats: int = 3) -> dict[str, ModeTiming]:
    """Streaming vs window re-run on one file; prints a table and the ratio.

    The modes alternate ``repeats`` times and each keeps its fastest run (as ``timeit``
    does): on a shared machine the minimum is the figure least disturbed by other work.
    Denormal floats are flushed to zero, as inference servers do: random weights
    otherwise produce denormals that make CPU timings depend on the weights.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    predictor = load_predictor(model, overrides)
    d, m = predictor.config.data, predictor.config.model
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(source) if source else write_test_video(Path(tmp) / "bench.avi", frames=frames)
        if not path.is_file():
            raise InputError(f"--source {path} does not exist")
        time_stream(predictor, path)  # warm-up: allocator, lazy inits, file cache
        runs = [timing for _ in range(repeats)
                for timing in (time_stream(predictor, path), time_window(predictor, path))]
        motion = min((time_motion(predictor, path) for _ in range(repeats)), key=lambda m: m[1] if m else 0)
    results = {mode: min((t for t in runs if t.mode == mode), key=lambda t: t.seconds) for mode in ("stream", "window")}
    s, w = results["stream"], results["window"]
    print(f"model {m.backbone}+{m.head}, {d.frames} frames at {d.size}x{d.size}, {d.sampling} stride {d.stride}, "
          f"data.fps {d.fps}; {torch.get_num_threads()} torch thread(s); load average {os.getloadavg()[0]:.1f}")
    print(f"source {source or 'synthetic 320x240 25 fps'}: {s.frames} frames, {s.steps} steps; best of {repeats}")
    print(f"{'mode':8s} {'frames/s':>9s} {'ms/frame':>9s} {'steady ms/frame':>16s} {'ms/step':>8s}"
          "   (decoding included)")
    for t in (s, w):
        print(f"{t.mode:8s} {t.fps:9.1f} {t.ms_per_frame:9.2f} {t.steady_ms_per_frame:16.2f} "
              f"{1000 * t.step_seconds / max(t.steps, 1):8.2f}")
    print(f"streaming is {w.seconds / s.seconds:.1f}x cheaper per frame than re-running the window over the whole "
          f"file ({w.step_seconds / s.step_seconds:.1f}x on model time alone)")
    if s.steady_frames:
        print(f"once the buffer is full (the last {s.steady_frames} frames): streaming is "
              f"{w.steady_ms_per_frame / s.steady_ms_per_frame:.1f}x cheaper per frame")
    print_motion_cost(predictor, s, motion)
    flops = step_flops(predictor)
    if flops:
        print(f"model FLOPs per step: stream {flops[0] / 1e9:.3f} G, window {flops[1] / 1e9:.3f} G: "
              f"{flops[1] / flops[0]:.1f}x fewer when streaming")
    return results
