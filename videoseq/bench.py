"""Benchmarks that run the peers in the same process and print ratios.

``videoseq bench loader``: training clips/s of ``ClipDataset`` (decode + crop to 112
px) against a decode-only ceiling (decord ``get_batch`` on the same indices, no
transform), a PyAV decode-all loader (the torchvision / PyTorchVideo way: decode
every frame, then index) and an OpenCV decode-all loader, on the real clips of
``../shared/videos`` and on synthetic UCF-geometry videos (320x240, 25 fps, MPEG-4
part 2 AVI); then resident memory growth over 1,000 loaded clips.

``videoseq bench train``: training clips/s and accuracy of the default model
(per-frame ResNet-18 + GRU) against torchvision's ``r3d_18`` (random init, same
clips), and head-only epochs from the feature cache against end-to-end epochs with
the backbone frozen, on synthetic gestures.

Timings are medians or totals of one run on this machine; compare the ratios, which
are measured side by side, rather than the absolute figures.
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import av
import cv2
import decord
import numpy as np
import torch
from torch import nn

from videoseq.datasets import ClipDataset
from videoseq.sampling import segment_indices
from videoseq.transforms import ClipTrainPreset
from videoseq.video import VIDEO_EXTENSIONS, capture_frames

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
# test inputs, not training loads: a broken file, a 4-frame one and 3-frame rotation clips
SKIP = {"corrupted.mp4", "unordered.mov", "video_0.mov", "video_90.mov", "video_180.mov", "video_270.mov"}


# ---------------------------------------------------------------- loader peers

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


def loader_rows(videos: list[Path], clips: int, size: int = 112) -> list[dict]:
    """Clips/s of our dataset, the decode ceiling and the two decode-all peers, per video and clip length."""
    preset = ClipTrainPreset(size=size)
    rows = []
    for path in videos:
        num_frames = len(decord.VideoReader(str(path), num_threads=1))
        for clip_len in (8, 16):
            ours = ClipDataset([(str(path), 0)], clip_len=clip_len, transform=preset, train=True)
            rng = np.random.default_rng(0)
            plan = lambda: segment_indices(num_frames, clip_len, train=True, rng=rng)  # noqa: E731
            counter = iter(range(10**9))
            readers = {"ours": lambda: ours[(next(counter), 0)],
                       "ceiling": lambda: decode_ceiling(str(path), plan()),
                       "pyav_all": lambda: preset(pyav_decode_all(str(path), plan()), 0, 0),
                       "opencv_all": lambda: preset(opencv_decode_all(str(path), plan()), 0, 0)}
            row = {"video": path.name, "frames": num_frames, "T": clip_len, **race(readers, clips)}
            rows.append(row)
    return rows


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
        rows = loader_rows(videos, clips)
        print(f"{'video':30s} {'frames':>6s} {'T':>3s} {'ours':>7s} {'ceiling':>8s} {'pyav_all':>8s} "
              f"{'cv_all':>7s} {'ours/ceil':>9s} {'ours/best peer':>14s}   (clips/s)")
        for r in rows:
            peer = max(r["pyav_all"], r["opencv_all"])
            r["vs_ceiling"], r["vs_peer"] = r["ours"] / r["ceiling"], r["ours"] / peer
            print(f"{r['video']:30s} {r['frames']:6d} {r['T']:3d} {r['ours']:7.1f} {r['ceiling']:8.1f} "
                  f"{r['pyav_all']:8.1f} {r['opencv_all']:7.1f} {r['vs_ceiling']:9.2f} {r['vs_peer']:14.2f}")
        geo = {k: float(np.exp(np.mean([np.log(r[k]) for r in rows]))) for k in ("vs_ceiling", "vs_peer")}
        print(f"geometric mean: ours / ceiling {geo['vs_ceiling']:.2f} (goal >= 0.90), "
              f"ours / best peer {geo['vs_peer']:.2f} (goal >= 1.5)")
        start, growth = rss_growth(videos, rss_clips)
        print(f"resident memory: {start:.0f} MB after 100 clips, {growth:+.1f} MB over the next {rss_clips} clips")
    return {"rows": rows, **geo, "rss_start_mb": start, "rss_growth_mb": growth}


# ---------------------------------------------------------------- training peers

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


def train_model(model: nn.Module, train: Batches, val: Batches, config, epochs: int) -> tuple[float, float]:
    """Train ``epochs`` on replayed batches; returns (training clips/s, validation video accuracy)."""
    from videoseq.engine import BadVideos, build_optimizer, build_scheduler, evaluate, train_one_epoch

    cfg = config.train
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(train))
    criterion, bad = nn.CrossEntropyLoss(), BadVideos(1.0)
    scaler = torch.amp.GradScaler(enabled=False)
    seen, seconds = 0, 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        train_one_epoch(model, train, criterion, optimizer, scheduler, device=torch.device("cpu"), epoch=epoch,
                        cfg=cfg, scaler=scaler, bad=bad)
        seconds += time.perf_counter() - start
        seen += sum(len(b["label"]) for b in train)
    result = evaluate(model, val, device=torch.device("cpu"))
    return seen / seconds, result["video_metrics"]["top1"]


def bench_train(epochs: int = 4, per_class: int = 6, size: int = 64, frames: int = 8) -> dict:
    from videoseq.checkpoint import build_model_from_config
    from videoseq.config import load_config
    from videoseq.datasets import make_loader
    from videoseq.engine import build_datasets, seed_everything
    from videoseq.prepare import resolve_manifest
    from videoseq.synth import write_gesture_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_gesture_dataset(tmp / "g", per_class=per_class, seed=0, frames=24, size=size)
        overrides = [f"data.root={root / 'videos'}", "data.format=ucf101", f"data.splits_dir={root / 'splits'}",
                     f"data.frames={frames}", f"data.size={size}", "data.num_workers=0", "train.batch_size=8",
                     f"train.epochs={epochs}", "train.lr=0.002", "train.warmup_epochs=0.5"]
        config = load_config(None, overrides)
        manifest = resolve_manifest(config.data, tmp / "data")
        train_set, val_set = build_datasets(config, manifest)
        train = Batches(make_loader(train_set, batch_size=8, shuffle=True, num_workers=0))
        val = Batches(make_loader(val_set, batch_size=8, shuffle=False, num_workers=0))
        classes = len(manifest.classes)
        print(f"synthetic gestures: {len(train_set)} train / {len(val_set)} val clips of {frames}x{size}x{size}, "
              f"{classes} classes, {epochs} epochs each, batches decoded once (model time only)")
        results = {}
        for name, build in (("default " + f"{config.model.backbone}+{config.model.head}",
                             lambda: build_model_from_config(config, classes)), ("r3d_18", lambda: R3D18(classes))):
            seed_everything(0)
            rate, acc = train_model(build(), train, val, config, epochs)
            results[name] = {"clips_per_s": rate, "video_acc": acc}
            print(f"{name:22s} {rate:7.1f} training clips/s, val video accuracy {acc:.3f}")
        (ours, a), (_, b) = results.items()
        print(f"default / r3d_18 training clips/s: {a['clips_per_s'] / b['clips_per_s']:.2f} (goal >= 3), "
              f"accuracy {a['video_acc']:.3f} vs {b['video_acc']:.3f} (goal: equal or better)")
        results["cache"] = bench_cache(config, manifest, tmp)
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
            epoch_s = sum(float(row["seconds"]) for row in csv.DictReader(f))  # train + validate, 0.1 s steps
        timings[name] = {"epoch_s": max(epoch_s, 0.1), "fit_s": time.perf_counter() - start}
    e2e, head = timings.values()
    print(f"epoch (train + validate): frozen end-to-end {e2e['epoch_s']:.1f} s, head-only from the cache "
          f"{head['epoch_s']:.1f} s: {e2e['epoch_s'] / head['epoch_s']:.0f}x (goal >= 50x); whole run with model "
          f"building and checkpoints {e2e['fit_s']:.1f} s vs {head['fit_s']:.1f} s; extraction once {extract_s:.1f} s")
    return {"extract_s": extract_s, **timings, "speedup": e2e["epoch_s"] / head["epoch_s"]}


BENCHES: dict[str, Callable[..., dict]] = {"loader": bench_loader, "train": bench_train}
