"""``videoseq bench decord``: decode speed of sparse training clips, decord side by side with OpenCV.

For every clip in ../shared/videos (the corrupt one is skipped) and for synthetic
320x240 videos written here, decode ``--clips`` random TSN clips of 8 and of 16
frames (one random frame in each of T equal segments), opening the video anew
for every clip as a training data loader does. Prints clips/s (1 / median time
per clip) for decord and for OpenCV (sequential grab up to the last wanted
frame, as many FFmpeg threads as decord) and their ratio decord / OpenCV.

It runs with any build of the ``decord`` module (decord 0.6.0 or the decord2 fork)::

    videoseq bench decord --json /tmp/decord.json
    videoseq bench decord --compare /tmp/decord.json /tmp/decord2.json
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import decord
import numpy as np

from videoseq.resources import shared_videos
from videoseq.sampling import segment_indices

SKIP = {"corrupted.mp4"}  # decord raises on it by design: a test input, not a benchmark one
CLIP_LENGTHS = (8, 16)


def decode_decord(path: Path, indices: list[int], threads: int) -> np.ndarray:
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
    return reader.get_batch(indices).asnumpy()


def decode_opencv(path: Path, indices: list[int], threads: int) -> np.ndarray:
    """Sequential grab up to the last wanted frame, retrieving only the wanted ones."""
    params = [cv2.CAP_PROP_N_THREADS, threads] if hasattr(cv2, "CAP_PROP_N_THREADS") else []
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    wanted = sorted(set(indices))
    frames: dict[int, np.ndarray] = {}
    position = 0
    for index in wanted:
        while position <= index:
            if not capture.grab():
                raise RuntimeError(f"{path}: OpenCV stopped at frame {position}")
            position += 1
        frames[index] = cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
    capture.release()
    return np.stack([frames[i] for i in indices])


DECODERS = {"decord": decode_decord, "opencv": decode_opencv}


def frame_count(path: Path) -> int:
    return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))


def clips_per_second(decoder, path: Path, num_frames: int, clip_len: int, clips: int, threads: int,
                     seed: int) -> float:
    """Clips decoded per second, each from a freshly opened video: 1 / median time per clip.

    The median keeps a busy machine's stalls out of the figure.
    """
    rng = np.random.default_rng(seed)
    plans = [segment_indices(num_frames, clip_len, train=True, rng=rng).tolist() for _ in range(clips)]
    decoder(path, plans[0], threads)  # warm up caches and lazy library loading
    seconds = []
    for indices in plans:
        start = time.perf_counter()
        clip = decoder(path, indices, threads)
        seconds.append(time.perf_counter() - start)
        assert clip.shape[0] == clip_len
    return 1.0 / float(np.median(seconds))


def write_synthetic(folder: Path, num_frames: int = 300) -> list[Path]:
    """320x240 videos with moving content: MJPG (all keyframes) and MPEG-4 part 2 (GOPs)."""
    paths = []
    y, x = np.mgrid[0:240, 0:320]
    for name, fourcc in (("synthetic_mjpg_320x240.avi", "MJPG"), ("synthetic_mp4v_320x240.mp4", "mp4v")):
        path = folder / name
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (320, 240))
        if not writer.isOpened():
            print(f"  (OpenCV cannot write {fourcc}; skipping {name})")
            continue
        for t in range(num_frames):
            frame = np.stack([(x + 3 * t) % 256, (y + 2 * t) % 256, (x + y + t) % 256], axis=-1)
            writer.write(frame.astype(np.uint8))
        writer.release()
        paths.append(path)
    return paths


def benchmark(videos: list[Path], clips: int, threads: int, seed: int) -> dict:
    results: dict[str, dict] = {}
    print(f"{'video':34s} {'frames':>6s} {'T':>3s} {'decord clips/s':>15s} {'opencv clips/s':>15s} {'ratio':>6s}")
    for path in videos:
        try:
            num_frames = frame_count(path)
        except Exception as err:  # an unreadable clip is reported, not fatal
            print(f"{path.name:34s} skipped: decord cannot open it ({str(err).splitlines()[0][:60]})")
            continue
        for clip_len in CLIP_LENGTHS:
            row = {}
            for name, decoder in DECODERS.items():
                try:
                    row[name] = clips_per_second(decoder, path, num_frames, clip_len, clips, threads, seed)
                except Exception as err:
                    print(f"  {path.name}: {name} failed: {str(err).splitlines()[0][:80]}")
                    row[name] = float("nan")
            ratio = row["decord"] / row["opencv"]
            print(f"{path.name:34s} {num_frames:6d} {clip_len:3d} {row['decord']:15.1f} {row['opencv']:15.1f} "
                  f"{ratio:6.2f}")
            results.setdefault(path.name, {})[str(clip_len)] = row
    return results


def compare(first: str | Path, second: str | Path) -> None:
    """Print decord clips/s of two saved runs and their ratio (second / first)."""
    first, second = Path(first), Path(second)
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    print(f"decord clips/s: A = {a['decord_version']} ({first.name}), B = {b['decord_version']} ({second.name})")
    print(f"{'video':34s} {'T':>3s} {'A':>9s} {'B':>9s} {'B/A':>6s}")
    ratios = []
    for video, rows in a["results"].items():
        for clip_len, row in rows.items():
            other = b["results"].get(video, {}).get(clip_len)
            if other is None:
                continue
            ratio = other["decord"] / row["decord"]
            ratios.append(ratio)
            print(f"{video:34s} {clip_len:>3s} {row['decord']:9.1f} {other['decord']:9.1f} {ratio:6.2f}")
    if ratios:
        print(f"geometric mean B/A: {float(np.exp(np.mean(np.log(ratios)))):.2f}")


def bench_decord(videos: str | Path | None = None, *, clips: int = 20, threads: int = 1, seed: int = 0,
                 json_path: str | Path | None = None) -> dict:
    """Time decord and OpenCV on the real clips of ``videos`` and on synthetic ones; prints the table."""
    videos = Path(videos) if videos else shared_videos()
    print(f"decord {decord.__version__} ({Path(decord.__file__).parent}), opencv {cv2.__version__}, "
          f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"decord threads {threads}, {clips} clips each")
    real = sorted(p for p in videos.glob("*") if p.suffix.lower() in {".avi", ".mp4", ".mkv", ".mov"}
                  and p.name not in SKIP) if videos.is_dir() else []
    if not real:
        print(f"(no real clips in {videos})")
    with tempfile.TemporaryDirectory() as tmp:
        results = benchmark(real + write_synthetic(Path(tmp)), clips, threads, seed)
    if json_path:
        Path(json_path).write_text(json.dumps({"decord_version": decord.__version__, "results": results}, indent=1))
        print(f"wrote {json_path}")
    return results
