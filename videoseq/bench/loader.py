"""``videoseq bench loader``: training clips/s of our loader against decoding peers, and its memory.

Training clips/s of ``ClipDataset`` (decode + crop to 112 px) against a
decode-only ceiling (decord ``get_batch`` on the same indices, no transform), a PyAV
decode-all loader (the torchvision / PyTorchVideo way: decode every frame, then
index) and an OpenCV decode-all loader, on the real clips of ``../shared/videos`` and
on synthetic UCF-geometry videos (320x240, 25 fps, MPEG-4 part 2 AVI); beside them the
same clips and transform read from a frame cache of those videos (every frame, short
side 128 px) instead of decoded; then resident memory growth over 1,000 loaded clips.

The motion table sets flow clips beside RGB clips: RGB clips from the frame cache, flow
clips from a flow cache (every frame's field stored, ``features --frames`` on a flow
config) and flow clips computed on the fly from the frame cache's frames, with the flow's
own cost per clip (DIS fast, 128 px, 8 time steps).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import decord
import numpy as np

from videoseq.datasets import ClipDataset
from videoseq.flow import MotionInput
from videoseq.framecache import FrameCache, cache_frames
from videoseq.resources import shared_videos
from videoseq.sampling import ClipSampling, segment_indices
from videoseq.transforms import ClipTrainPreset, MotionTrainPreset
from videoseq.video.cameras import capture_frames
from videoseq.video.decoder import VIDEO_EXTENSIONS
from videoseq.video.geometry import eval_resize

# test inputs, not training loads: a broken file, a 4-frame one and 3-frame rotation clips
SKIP = {"corrupted.mp4", "unordered.mov", "video_0.mov", "video_90.mov", "video_180.mov", "video_270.mov"}


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
    for read in readers.values():
        read()  # warm up lazy loading and caches
    for _ in range(clips):
        for name, read in readers.items():
            start = time.perf_counter()
            read()
            seconds[name].append(time.perf_counter() - start)
    return {name: 1.0 / float(np.median(s)) for name, s in seconds.items()}


def bench_videos(tmp: Path) -> list[Path]:
    real = sorted(p for p in shared_videos().glob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.name not in SKIP)
    return real + write_ucf_like(tmp)


def clip_readers(path: Path, num_frames: int, clip_len: int, cache: FrameCache,
                 preset: ClipTrainPreset) -> dict[str, Callable[[], object]]:
    """The readers raced on one video, each loading one training clip per call.

    ``ours`` decodes and transforms with ``ClipDataset``; ``cache`` is the same dataset
    reading ``cache``: its k-th call loads the same frames with the same random crop as
    the k-th call of ``ours``. ``ceiling`` decodes only; ``pyav_all`` and ``opencv_all``
    decode every frame, then index and transform with ``preset``.
    """
    sampling = ClipSampling(frames=clip_len)
    ours = ClipDataset([(str(path), 0)], clips=sampling, transform=preset, train=True)
    cached = ClipDataset([(str(path), 0)], clips=sampling, transform=preset, train=True, cache=cache)
    rng = np.random.default_rng(0)

    def plan() -> np.ndarray:
        return segment_indices(num_frames, clip_len, train=True, rng=rng)

    items, cached_items = iter(range(10**9)), iter(range(10**9))  # call k of both: epoch k, the same clip
    return {"ours": lambda: ours[(next(items), 0)],
            "cache": lambda: cached[(next(cached_items), 0)],
            "ceiling": lambda: decode_ceiling(str(path), plan()),
            "pyav_all": lambda: preset(pyav_decode_all(str(path), plan()), 0, 0),
            "opencv_all": lambda: preset(opencv_decode_all(str(path), plan()), 0, 0)}


def loader_rows(videos: list[Path], clips: int, cache: FrameCache, size: int = 112) -> list[dict]:
    """Clips/s of our dataset (decoding, or reading ``cache``), the decode ceiling and the two decode-all
    peers, per video and clip length (``clip_readers``)."""
    preset = ClipTrainPreset(size=size)
    rows = []
    for path in videos:
        num_frames = len(decord.VideoReader(str(path), num_threads=1))
        for clip_len in (8, 16):
            readers = clip_readers(path, num_frames, clip_len, cache, preset)
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


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (default: this one) in MB (Linux /proc); 0 for one that is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * 4096 / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_growth(videos: list[Path], clips: int = 1000) -> tuple[float, float]:
    """RSS after 100 clips and its growth over the next ``clips`` clips (8 x 112 px, train preset)."""
    data = ClipDataset([(str(p), 0) for p in videos], clips=ClipSampling(frames=8), transform=ClipTrainPreset(size=112),
                       train=True)
    for i in range(100):
        data[i % len(data)]
    start = rss_mb()
    for i in range(clips):
        data[(i // len(data), i % len(data))]
    return start, rss_mb() - start


def motion_rows(videos: list[Path], clips: int, frames: FrameCache, folder: Path, size: int = 112) -> list[dict]:
    """Clips/s of 8-step RGB clips from ``frames``, flow clips from a flow cache and flow clips computed from
    ``frames``; ``flow_ms``: the flow of one clip alone (its 8 fields)."""
    motion = MotionInput("flow", short_side=eval_resize(size), bound=20.0)
    cache_frames([str(p) for p in videos], folder, short_side=eval_resize(size), fps=None, motion=motion)
    flow = FrameCache(folder)
    sampling, rgb_preset = ClipSampling(frames=8), ClipTrainPreset(size=size)
    flow_preset = MotionTrainPreset(size=size, flow_bound=20.0)
    rows = []
    for path in videos:
        if not all(str(path) in cache.index["videos"] for cache in (frames, flow)):
            continue  # failed to decode when the caches were built (listed in their failed.csv)
        item = [(str(path), 0)]
        datasets = {"rgb_cache": ClipDataset(item, clips=sampling, transform=rgb_preset, train=True, cache=frames),
                    "flow_cache": ClipDataset(item, clips=sampling, transform=flow_preset, train=True, cache=flow,
                                              motion=motion),
                    "flow_fly": ClipDataset(item, clips=sampling, transform=flow_preset, train=True, cache=frames,
                                            motion=motion)}
        calls = {name: iter(range(10**9)) for name in datasets}
        clip = np.ascontiguousarray(frames.frames(str(path))[:9])  # 9 frames: 8 fields
        table = np.stack([np.arange(8), np.arange(1, 9)], axis=1)
        readers = {name: (lambda d=d, c=calls[name]: d[(next(c), 0)]) for name, d in datasets.items()}
        rates = race({**readers, "flow_only": lambda c=clip, t=table: motion(c, t)}, clips)
        rows.append({"video": path.name, **rates, "ratio": rates["flow_cache"] / rates["rgb_cache"],
                     "flow_ms": 1000 / rates["flow_only"]})
    return rows


def print_motion_rows(rows: list[dict]) -> float:
    print(f"{'video':30s} {'rgb cache':>9s} {'flow cache':>10s} {'flow/rgb':>8s} {'flow on the fly':>15s} "
          f"{'flow ms/clip':>12s}   (8-step clips/s, 112 px train preset)")
    for r in rows:
        print(f"{r['video']:30s} {r['rgb_cache']:9.1f} {r['flow_cache']:10.1f} {r['ratio']:8.2f} "
              f"{r['flow_fly']:15.1f} {r['flow_ms']:12.1f}")
    geo = float(np.exp(np.mean([np.log(r["ratio"]) for r in rows])))
    print(f"geometric mean: flow clips from the flow cache / RGB clips from the frame cache {geo:.2f} (goal >= 0.8); "
          f"on-the-fly flow {np.median([r['flow_ms'] for r in rows]):.1f} ms per clip (median)")
    return geo


def bench_loader(clips: int = 20, rss_clips: int = 1000, motion_only: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        videos = bench_videos(Path(tmp))
        frames = bench_frame_cache(videos, Path(tmp) / "frames")
        motion = print_motion_rows(motion_rows(videos, clips, frames, Path(tmp) / "flow"))
        if motion_only:
            return {"flow_vs_rgb": motion}
        rows = loader_rows(videos, clips, frames)
        geo = print_loader_rows(rows)
        start, growth = rss_growth(videos, rss_clips)
        print(f"resident memory: {start:.0f} MB after 100 clips, {growth:+.1f} MB over the next {rss_clips} clips")
    return {"rows": rows, **geo, "flow_vs_rgb": motion, "rss_start_mb": start, "rss_growth_mb": growth}


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
