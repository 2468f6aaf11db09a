"""``videoseq bench memory``: peak resident memory of ``videoseq predict`` on inputs made to exhaust it.

Each case runs ``videoseq predict`` in a process of its own, and its peak resident set
size is read back from the kernel (``os.wait4``), side by side with a small clip on
the same checkpoint (the baseline: Python, torch, the decoders and the model):

- an 8K clip (7680x4320, written with OpenCV; a few frames): its frames are decoded
  at most 4096x2160 (``video.limits``) and resized to the model's input as they come;
- a checkpoint crafted to ask for ``data.size: 20000`` clips: refused when its config is
  read, before anything is allocated (``checkpoint.checkpoint_config``).

Every figure must stay under ``--limit-mb`` (2 GB); the exit status is 1 when one does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from videoseq.checkpoint import checkpoint_payload, save_checkpoint
from videoseq.config import load_config
from videoseq.models.build import build_model_from_config

TINY_MODEL = ["data.frames=8", "data.size=112", "model.backbone=resnet18", "model.head=gru",
              "model.head_args={hidden: 64}"]
CLASSES = ["a", "b", "c"]


@dataclass
class Case:
    name: str
    checkpoint: Path
    video: Path


@dataclass
class Peak:
    name: str
    rss_mb: float
    status: int
    last_line: str


def write_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A moving pattern at ``width`` x ``height`` (MPEG-4 in MP4, written by OpenCV)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write a {width}x{height} MPEG-4 file here")
    ys, xs = np.mgrid[0:height, 0:width]
    for t in range(frames):
        frame = np.stack([(xs // 8 + 5 * t) % 256, (ys // 8) % 256, np.full_like(xs, 40 * t)], -1)
        writer.write(frame.astype(np.uint8))
    writer.release()
    return path


def write_checkpoints(folder: Path, size: int) -> tuple[Path, Path]:
    """A small random resnet18 + GRU checkpoint, and a copy whose config asks for ``size`` x ``size`` clips."""
    config = load_config(None, TINY_MODEL)
    torch.manual_seed(0)
    payload = checkpoint_payload(build_model_from_config(config, len(CLASSES)), config, CLASSES)
    good = save_checkpoint(folder / "model.pt", payload)
    crafted = {**payload, "config": {**payload["config"], "data": {**payload["config"]["data"], "size": size}}}
    return good, save_checkpoint(folder / "crafted_size.pt", crafted)


# The kernel's peak RSS of a process counts the memory of the process it was forked from (the
# high-water mark survives fork and exec), so the command is started by a small helper process
# that imports nothing heavy, and the helper reports its child's peak.
HELPER = ("import os, subprocess, sys\n"
          "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
          "_, status, usage = os.wait4(child.pid, 0)\n"
          "print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))\n")


def peak_rss(case: Case) -> Peak:
    """Run ``videoseq predict CHECKPOINT VIDEO`` alone and read its peak RSS (KiB from the kernel) in MB."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    command = [sys.executable, "-m", "videoseq", "predict", str(case.checkpoint), str(case.video), "--device", "cpu"]
    done = subprocess.run([sys.executable, "-c", HELPER, *command], capture_output=True, text=True, env=env)
    kib, status = (int(v) for v in done.stdout.split())
    lines = [line for line in done.stderr.splitlines() if line.strip() and "it/s" not in line and "%|" not in line]
    return Peak(case.name, kib / 1024, status, lines[-1] if lines else "")


def bench_memory(*, width: int = 7680, height: int = 4320, frames: int = 2, size: int = 20000,
                 limit_mb: float = 2048.0) -> list[Peak]:
    """Print the peak RSS of ``predict`` on the baseline clip, the large clip and the crafted checkpoint."""
    with tempfile.TemporaryDirectory(prefix="videoseq-bench-memory-") as tmp:
        folder = Path(tmp)
        good, crafted = write_checkpoints(folder, size)
        small = write_clip(folder / "small.mp4", 320, 240, 16)
        large = write_clip(folder / "large.mp4", width, height, frames)
        cases = [Case("small clip 320x240 (baseline)", good, small),
                 Case(f"{width}x{height} clip, {frames} frames", good, large),
                 Case(f"checkpoint with data.size: {size}", crafted, small)]
        peaks = [peak_rss(case) for case in cases]
        for peak in peaks:
            peak.last_line = peak.last_line.replace(f"{folder}/", "")
    print(format_peaks(peaks, limit_mb))
    return peaks


def format_peaks(peaks: list[Peak], limit_mb: float) -> str:
    base = peaks[0].rss_mb
    lines = [f"peak RSS of videoseq predict, one process per case (limit {limit_mb:,.0f} MB):",
             f"{'case':40} {'peak MB':>9} {'vs baseline':>12} {'exit':>5}  result"]
    for p in peaks:
        verdict = "ok" if p.rss_mb <= limit_mb else "over the limit"
        result = p.last_line.split("error: ", 1)[-1][:110] if p.status else "predicted"
        lines.append(f"{p.name:40} {p.rss_mb:9,.0f} {p.rss_mb / base:11.2f}x {p.status:5d}  {verdict}: {result}")
    return "\n".join(lines)
