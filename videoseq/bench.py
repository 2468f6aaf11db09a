"""Benchmarks behind ``videoseq bench KIND``; one entry per kind in :data:`BENCH_KINDS`.

``stream``: a video file decoded by the same reader thread as a live source,
run twice through the same frame clock: *streaming* (the backbone once per kept
frame, the head over the feature buffer) and *window* (at every kept frame, the
whole model re-run on the last ``clip_len`` frames, as window-based live demos
do; the preprocessed frames are cached, so only the model is repeated). Both
timings include decoding and preprocessing; the ratio is measured in one run.

``loader``: training clips/s of ``ClipDataset`` (decode + crop to 112 px) against a
decode-only ceiling (decord ``get_batch`` on the same indices, no transform), a PyAV
decode-all loader (the torchvision / PyTorchVideo way: decode every frame, then
index) and an OpenCV decode-all loader, on the real clips of ``../shared/videos`` and
on synthetic UCF-geometry videos (320x240, 25 fps, MPEG-4 part 2 AVI); beside them the
same clips and transform read from a frame cache of those videos (every frame, short
side 128 px) instead of decoded; then resident memory growth over 1,000 loaded clips.

``train``: training clips/s and accuracy of the default model (per-frame ResNet-18 +
GRU) against torchvision's ``r3d_18`` (random init, same clips), and head-only
epochs from the feature cache against end-to-end epochs with the backbone frozen,
on synthetic gestures.

Timings are medians, minima or totals of one run on this machine; compare the
ratios, which are measured side by side, rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import decord
import numpy as np
import torch
from torch import nn

from videoseq.checkpoint import build_model_from_config
from videoseq.config import load_config
from videoseq.datasets import ClipDataset
from videoseq.framecache import FrameCache, cache_frames
from videoseq.predict import Predictor
from videoseq.sampling import segment_indices
from videoseq.stream import FrameClock, FrameSource
from videoseq.transforms import ClipTrainPreset, eval_resize
from videoseq.video import VIDEO_EXTENSIONS, capture_frames


# ---------------------------------------------------------------- bench stream: streaming vs window

def load_predictor(model: str | Path, overrides: list[str] | None = None, num_classes: int = 10) -> Predictor:
    """A checkpoint (``.pt`` / ``.onnx``), or a YAML config (with ``--set`` overrides) built with
    random weights: an untrained model runs at the same speed."""
    if Path(model).suffix.lower() in (".yaml", ".yml"):
        config = load_config(model, overrides)
        network = build_model_from_config(config, num_classes, pretrained=False)
        return Predictor(network, config, [f"class_{i}" for i in range(num_classes)], torch.device("cpu"))
    if overrides:
        raise ValueError("--set applies to a YAML config, not to a checkpoint")
    return Predictor.from_checkpoint(model, device="cpu")


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
    with FrameSource(str(source)) as src:
        for frame in src:
            if frames == 0:
                clock = FrameClock(predictor.stream_interval(frame.source_fps))
            frames += 1
            predicted = False
            if clock.take(frame.time_s):
                t0 = time.perf_counter()
                window.append(predictor.prepare(frame.image[None, None])[0])  # (1, 3, S, S)
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
    clip = torch.zeros(1, predictor.clip_len, 3, size, size)
    features = model.forward_features(clip)
    counts = []
    for run in (lambda: model.forward_frames(clip[0, :1]), lambda: model.forward_head(features), lambda: model(clip)):
        with FlopCounterMode(display=False) as counter:
            run()
        counts.append(counter.get_total_flops())
    frame, head, window = counts
    return frame + head, window


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
            raise FileNotFoundError(f"--source {path} does not exist")
        time_stream(predictor, path)  # warm-up: allocator, lazy inits, file cache
        runs = [timing for _ in range(repeats) for timing in (time_stream(predictor, path), time_window(predictor, path))]
    results = {mode: min((t for t in runs if t.mode == mode), key=lambda t: t.seconds) for mode in ("stream", "window")}
    s, w = results["stream"], results["window"]
    print(f"model {m.backbone}+{m.head}, {d.frames} frames at {d.size}x{d.size}, {d.sampling} stride {d.stride}, "
          f"data.fps {d.fps}; {torch.get_num_threads()} torch thread(s); load average {os.getloadavg()[0]:.1f}")
    print(f"source {source or 'synthetic 320x240 25 fps'}: {s.frames} frames, {s.steps} steps; best of {repeats}")
    print(f"{'mode':8s} {'frames/s':>9s} {'ms/frame':>9s} {'steady ms/frame':>16s} {'ms/step':>8s}   (decoding included)")
    for t in (s, w):
        print(f"{t.mode:8s} {t.fps:9.1f} {t.ms_per_frame:9.2f} {t.steady_ms_per_frame:16.2f} "
              f"{1000 * t.step_seconds / max(t.steps, 1):8.2f}")
    print(f"streaming is {w.seconds / s.seconds:.1f}x cheaper per frame than re-running the window over the whole "
          f"file ({w.step_seconds / s.step_seconds:.1f}x on model time alone)")
    if s.steady_frames:
        print(f"once the buffer is full (the last {s.steady_frames} frames): streaming is "
              f"{w.steady_ms_per_frame / s.steady_ms_per_frame:.1f}x cheaper per frame")
    flops = step_flops(predictor)
    if flops:
        print(f"model FLOPs per step: stream {flops[0] / 1e9:.3f} G, window {flops[1] / 1e9:.3f} G: "
              f"{flops[1] / flops[0]:.1f}x fewer when streaming")
    return results



SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
# test inputs, not training loads: a broken file, a 4-frame one and 3-frame rotation clips
SKIP = {"corrupted.mp4", "unordered.mov", "video_0.mov", "video_90.mov", "video_180.mov", "video_270.mov"}


# ---------------------------------------------------------------- bench loader: decoding peers

def decode_ceiling(path: str, indices: np.ndarray) -> np.ndarray:
    """decord ``get_batch`` on the indices, no transform: the decode-only ceiling."""
    return decord.VideoReader(path, num_threads=1).get_batch(indices.tolist()).asnumpy()


def pyav_decode_all(path: str, indices: np.ndarray) -> np.ndarray:
    """Decode every frame with PyAV, then index (torchvision.io.read_video / PyTorchVideo style)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return np.stack([frames[min(i, len(frames) - 1)] for i in indices])


def opencv_decode_all(path: str, indices: np.ndarray) -> np.ndarray:
    """Read (decode and convert) every frame with OpenCV, then index."""
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    frames = list(capture_frames(capture))
    capture.release()
    return np.stack([frames[min(i, len(frames) - 1)] for i in indices])


def write_ucf_like(folder: Path, count: int = 2, frames: int = 164) -> list[Path]:
    """Synthetic videos of UCF101's geometry: 320x240, 25 fps, MPEG-4 part 2 in AVI, moving content."""
    y, x = np.mgrid[0:240, 0:320]
    paths = []
    for n in range(count):
        path = folder / f"synthetic_ucf_{n}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 25.0, (320, 240))
        if not writer.isOpened():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
        for t in range(frames):
            frame = np.stack([(x + (3 + n) * t) % 256, (y + 2 * t) % 256, (x + y + t) % 256], axis=-1)
            writer.write(frame.astype(np.uint8))
        writer.release()
        paths.append(path)
    return paths


def race(readers: dict[str, Callable[[], object]], clips: int) -> dict[str, float]:
    """Clips/s of each reader: 1 / median seconds per clip, the readers taking turns clip by clip.

    Taking turns spreads a busy machine's load evenly over the peers; the median keeps
    its stalls out of the figures.
    """
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    for name, read in readers.items():
        read()  # warm up lazy loading and caches
    for _ in range(clips):
        for name, read in readers.items():
            start = time.perf_counter()
            read()
            seconds[name].append(time.perf_counter() - start)
    return {name: 1.0 / float(np.median(s)) for name, s in seconds.items()}


def bench_videos(tmp: Path) -> list[Path]:
    real = sorted(p for p in SHARED_VIDEOS.glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.name not in SKIP)
    return real + write_ucf_like(tmp)


def loader_rows(videos: list[Path], clips: int, cache: FrameCache, size: int = 112) -> list[dict]:
    """Clips/s of our dataset (decoding, or reading ``cache``), the decode ceiling and the two decode-all
    peers, per video and clip length. ``ours`` and ``cache`` load the same clips through the same transform."""
    preset = ClipTrainPreset(size=size)
    rows = []
    for path in videos:
        num_frames = len(decord.VideoReader(str(path), num_threads=1))
        for clip_len in (8, 16):
            ours = ClipDataset([(str(path), 0)], clip_len=clip_len, transform=preset, train=True)
            cached = ClipDataset([(str(path), 0)], clip_len=clip_len, transform=preset, train=True, cache=cache)
            rng = np.random.default_rng(0)
            plan = lambda: segment_indices(num_frames, clip_len, train=True, rng=rng)  # noqa: E731
            items, cached_items = iter(range(10**9)), iter(range(10**9))  # item k of both: the same clip
            readers = {"ours": lambda: ours[(next(items), 0)],
                       "cache": lambda: cached[(next(cached_items), 0)],
                       "ceiling": lambda: decode_ceiling(str(path), plan()),
                       "pyav_all": lambda: preset(pyav_decode_all(str(path), plan()), 0, 0),
                       "opencv_all": lambda: preset(opencv_decode_all(str(path), plan()), 0, 0)}
            row = {"video": path.name, "frames": num_frames, "T": clip_len, **race(readers, clips)}
            peer = max(row["pyav_all"], row["opencv_all"])
            row |= {"vs_ceiling": row["ours"] / row["ceiling"], "vs_peer": row["ours"] / peer,
                    "cache_vs_ours": row["cache"] / row["ours"]}
            rows.append(row)
    return rows


def print_loader_rows(rows: list[dict]) -> dict[str, float]:
    """The loader table and its geometric means."""
    print(f"{'video':30s} {'frames':>6s} {'T':>3s} {'ours':>7s} {'ceiling':>8s} {'pyav_all':>8s} {'cv_all':>7s} "
          f"{'cache':>7s} {'ours/ceil':>9s} {'ours/best peer':>14s} {'cache/ours':>10s}   (clips/s)")
    for r in rows:
        print(f"{r['video']:30s} {r['frames']:6d} {r['T']:3d} {r['ours']:7.1f} {r['ceiling']:8.1f} "
              f"{r['pyav_all']:8.1f} {r['opencv_all']:7.1f} {r['cache']:7.1f} {r['vs_ceiling']:9.2f} "
              f"{r['vs_peer']:14.2f} {r['cache_vs_ours']:10.2f}")
    geo = {k: float(np.exp(np.mean([np.log(r[k]) for r in rows]))) for k in ("vs_ceiling", "vs_peer", "cache_vs_ours")}
    print(f"geometric mean: ours / ceiling {geo['vs_ceiling']:.2f} (goal >= 0.90), "
          f"ours / best peer {geo['vs_peer']:.2f} (goal >= 1.5), frame cache / ours {geo['cache_vs_ours']:.2f} "
          f"(same clips, same transform)")
    return geo


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def rss_growth(videos: list[Path], clips: int = 1000) -> tuple[float, float]:
    """RSS after 100 clips and its growth over the next ``clips`` clips (8 x 112 px, train preset)."""
    data = ClipDataset([(str(p), 0) for p in videos], clip_len=8, transform=ClipTrainPreset(size=112), train=True)
    for i in range(100):
        data[i % len(data)]
    start = rss_mb()
    for i in range(clips):
        data[(i // len(data), i % len(data))]
    return start, rss_mb() - start


def bench_loader(clips: int = 20, rss_clips: int = 1000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        videos = bench_videos(Path(tmp))
        rows = loader_rows(videos, clips, bench_frame_cache(videos, Path(tmp) / "frames"))
        geo = print_loader_rows(rows)
        start, growth = rss_growth(videos, rss_clips)
        print(f"resident memory: {start:.0f} MB after 100 clips, {growth:+.1f} MB over the next {rss_clips} clips")
    return {"rows": rows, **geo, "rss_start_mb": start, "rss_growth_mb": growth}


def bench_frame_cache(videos: list[Path], folder: Path, short_side: int = eval_resize(112)) -> FrameCache:
    """A frame cache of ``videos`` (every frame); prints how long it took and its size on disk."""
    start = time.perf_counter()
    index = cache_frames([str(p) for p in videos], folder, short_side=short_side, fps=None)
    frames = sum(v["frames"] for v in index["videos"].values())
    size = sum(p.stat().st_size for p in folder.glob("frames_*.npy"))
    print(f"frame cache of {len(videos)} videos, every frame, short side {short_side} px: built in "
          f"{time.perf_counter() - start:.1f} s, {size / 1e6:.1f} MB for {frames} frames "
          f"({size / frames:,.0f} bytes per frame)")
    return FrameCache(folder)


# ---------------------------------------------------------------- bench train: training peers

class R3D18(nn.Module):
    """torchvision's ``r3d_18`` (random init) taking our clips ``(B, T, C, H, W)``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        from torchvision.models.video import r3d_18

        self.net = r3d_18(weights=None, num_classes=num_classes)
        # Kinetics normalisation of the torchvision video models; read by engine.model_input
        self.backbone = SimpleNamespace(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips.transpose(1, 2))  # (B, C, T, H, W) -> (B, num_classes)


class Batches:
    """Batches decoded once and replayed: model timings without decoding in them."""

    def __init__(self, loader) -> None:
        self.dataset = loader.dataset
        self.batches = list(loader)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def train_model(model: nn.Module, train: Batches, val: Batches, config, epochs: int,
                device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    """Train ``epochs`` on replayed batches; returns (training clips/s, validation video accuracy)."""
    from videoseq.engine import BadVideos, build_optimizer, build_scheduler, evaluate, train_one_epoch

    cfg = config.train
    model.to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(train))
    criterion, bad = nn.CrossEntropyLoss(), BadVideos(1.0)
    scaler = torch.amp.GradScaler(enabled=False)
    seen, seconds = 0, 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        train_one_epoch(model, train, criterion, optimizer, scheduler, device=device, epoch=epoch,
                        cfg=cfg, scaler=scaler, bad=bad)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
        seen += sum(len(b["label"]) for b in train)
    result = evaluate(model, val, device=device)
    return seen / seconds, result["video_metrics"]["top1"]


TRAIN_PARTS = ("peers", "cache")


def bench_train(epochs: int = 4, per_class: int = 6, size: int = 64, frames: int = 8, device: str = "cpu",
                parts: tuple[str, ...] = TRAIN_PARTS) -> dict:
    """``peers``: the default model against r3d_18; ``cache``: head-only epochs from the feature cache
    against frozen end-to-end epochs. Both on the same synthetic gestures."""
    from videoseq.prepare import resolve_manifest
    from videoseq.synth import write_gesture_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_gesture_dataset(tmp / "g", per_class=per_class, seed=0, frames=24, size=size)
        overrides = [f"data.root={root / 'videos'}", "data.format=ucf101", f"data.splits_dir={root / 'splits'}",
                     f"data.frames={frames}", f"data.size={size}", "data.num_workers=0", "train.batch_size=8",
                     f"train.epochs={epochs}", "train.lr=0.002", "train.warmup_epochs=0.5", f"train.device={device}"]
        config = load_config(None, overrides)
        manifest = resolve_manifest(config.data, tmp / "data")
        results = {}
        if "peers" in parts:
            results["peers"] = bench_peers(config, manifest, epochs)
        if "cache" in parts:
            results["cache"] = bench_cache(config, manifest, tmp)
    return results


def bench_peers(config, manifest, epochs: int) -> dict:
    """Training clips/s and accuracy of the default model and of r3d_18 on batches decoded once."""
    from videoseq.datasets import make_loader
    from videoseq.engine import build_datasets, seed_everything, select_device

    device = select_device(config.train.device)
    train_set, val_set = build_datasets(config, manifest)
    train = Batches(make_loader(train_set, batch_size=8, shuffle=True, num_workers=0))
    val = Batches(make_loader(val_set, batch_size=8, shuffle=False, num_workers=0))
    classes, d = len(manifest.classes), config.data
    print(f"synthetic gestures: {len(train_set)} train / {len(val_set)} val clips of {d.frames}x{d.size}x{d.size}, "
          f"{classes} classes, {epochs} epochs each on {device}, batches decoded once (model time only)")
    results = {}
    for name, build in (("default " + f"{config.model.backbone}+{config.model.head}",
                         lambda: build_model_from_config(config, classes)), ("r3d_18", lambda: R3D18(classes))):
        seed_everything(0)
        rate, acc = train_model(build(), train, val, config, epochs, device)
        results[name] = {"clips_per_s": rate, "video_acc": acc}
        print(f"{name:22s} {rate:7.1f} training clips/s, val video accuracy {acc:.3f}")
    (_, a), (_, b) = results.items()
    print(f"default / r3d_18 training clips/s: {a['clips_per_s'] / b['clips_per_s']:.2f} (goal >= 3), "
          f"accuracy {a['video_acc']:.3f} vs {b['video_acc']:.3f} (goal: equal or better)")
    return results


def bench_cache(config, manifest, tmp: Path) -> dict:
    """One head-only epoch from the feature cache against one end-to-end epoch with the backbone frozen."""
    import copy

    from videoseq.config import save_config
    from videoseq.datasets import write_manifest
    from videoseq.engine import fit
    from videoseq.features import extract_features

    frozen = copy.deepcopy(config)
    frozen.model.freeze_backbone, frozen.train.epochs, frozen.data.test_views = True, 1, 1
    save_config(frozen, tmp / "frozen.yaml")
    write_manifest(manifest, tmp / "m")
    start = time.perf_counter()
    extract_features(tmp / "frozen.yaml", tmp / "m" / "manifest.csv", tmp / "cache")
    extract_s = time.perf_counter() - start
    timings = {}
    for name, features in (("frozen end-to-end", None), ("head-only from cache", str(tmp / "cache"))):
        run_config = copy.deepcopy(frozen)
        run_config.data.features = features
        start = time.perf_counter()
        run = fit(run_config, tmp / name.replace(" ", "_"))
        with open(run / "metrics.csv") as f:
            epoch_s = sum(float(row["seconds"]) for row in csv.DictReader(f))  # train + validate
        timings[name] = {"epoch_s": max(epoch_s, 1e-3), "fit_s": time.perf_counter() - start}
    e2e, head = timings.values()
    print(f"epoch (train + validate): frozen end-to-end {e2e['epoch_s']:.1f} s, head-only from the cache "
          f"{head['epoch_s']:.1f} s: {e2e['epoch_s'] / head['epoch_s']:.0f}x (goal >= 50x); whole run with model "
          f"building and checkpoints {e2e['fit_s']:.1f} s vs {head['fit_s']:.1f} s; extraction once {extract_s:.1f} s")
    return {"extract_s": extract_s, **timings, "speedup": e2e["epoch_s"] / head["epoch_s"]}


@dataclass(frozen=True)
class BenchKind:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _stream_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("example: videoseq bench stream configs/gestures.yaml --source clip.avi "
                     "(a checkpoint, an .onnx export, or a config with random weights)")
    p.add_argument("model", help="checkpoint .pt, exported .onnx, or a YAML config (random weights)")
    p.add_argument("--source", help="video file (default: a synthetic 320x240 25 fps clip)")
    p.add_argument("--frames", type=int, default=300, help="length of the synthetic clip")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="runs per mode; the fastest counts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of a YAML config")


def _stream_run(args: argparse.Namespace) -> int:
    bench_stream(args.model, args.source, frames=args.frames, threads=args.threads, overrides=args.set,
                 repeats=args.repeats)
    return 0



def _loader_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "example: videoseq bench loader --clips 20"
    p.add_argument("--clips", type=int, default=20, help="timed clips per video and clip length")
    p.add_argument("--rss-clips", type=int, default=1000, help="clips loaded while watching memory")


def _loader_run(args: argparse.Namespace) -> int:
    bench_loader(clips=args.clips, rss_clips=args.rss_clips)
    return 0


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("example: videoseq bench train --epochs 3; "
                     "videoseq bench train --parts cache --size 112 --per-class 20")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--per-class", type=int, default=6, help="synthetic gesture clips per class")
    p.add_argument("--size", type=int, default=64, help="clip side in pixels (the issue's peers: 112)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (model timings; AMP as train.amp on CUDA)")
    p.add_argument("--parts", nargs="+", choices=TRAIN_PARTS, default=list(TRAIN_PARTS),
                   help="peers: default model vs r3d_18; cache: feature-cache vs frozen end-to-end epochs")


def _train_run(args: argparse.Namespace) -> int:
    bench_train(epochs=args.epochs, per_class=args.per_class, size=args.size, frames=args.frames, device=args.device,
                parts=tuple(args.parts))
    return 0


BENCH_KINDS: dict[str, BenchKind] = {
    "stream": BenchKind("streaming vs window re-run per frame, decoding included", _stream_arguments, _stream_run),
    "loader": BenchKind("clips/s: our loader vs decord ceiling, PyAV and OpenCV decode-all, frame cache; RSS",
                        _loader_arguments, _loader_run),
    "train": BenchKind("default model vs r3d_18; feature-cache vs frozen end-to-end epochs",
                       _train_arguments, _train_run),
}
