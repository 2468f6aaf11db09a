"""Re-encode a tree of videos smaller, or extract JPEG frame folders from it.

``transcode_tree(root, out, job)`` mirrors every video under ``root`` into ``out``
at the same relative path: ``resize`` writes a video with a shorter short side
(and optionally fewer frames per second), ``frames`` writes a folder of
``00001.jpg ...`` named like the video without its extension (the Jester layout,
read by ``video.decoder.VideoReader`` like a video).

Every output is written under a hidden temporary name beside its target
(``.name.part.mp4``, ``.name.part/``) and renamed when complete, so an
interrupted run leaves no half-written output under a real name, and a rerun
skips what is finished and redoes the rest. Targets are checked to lie inside
``out``. Frames are read with ``VideoReader`` (upright, the same frames training
sees) and written with PyAV (H.264 for .mp4/.mkv/.mov, MPEG-4 Part 2 for .avi,
VP9 for .webm) or OpenCV (JPEG). Runs in worker processes: no torch here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from videoseq.errors import InputError, UsageError
from videoseq.progress import progress_bar
from videoseq.video.decoder import VideoReader, find_videos
from videoseq.video.isolated import run_isolated

# Encoder per container; ``quality`` is x264/VP9 CRF or the MPEG-4 quantiser scale.
CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4",
          ".webm": "libvpx-vp9"}
FRAME_NAME = "{:05d}.jpg"
CHUNK = 32  # frames decoded at a time


@dataclass(frozen=True)
class TranscodeJob:
    """What to do with each video: ``kind`` is resize or frames; called as ``job((source, target))``."""

    kind: str
    short_side: int | None = None  # None: keep the size (frames only)
    fps: float | None = None  # None: keep every frame
    quality: int = 23

    def __post_init__(self) -> None:
        if self.kind not in ("resize", "frames"):
            raise UsageError(f"kind must be resize or frames, got {self.kind!r}")
        if self.kind == "resize" and not self.short_side:
            raise UsageError("resize needs --short-side N")
        if (self.short_side is not None and self.short_side <= 0) or (self.fps is not None and self.fps <= 0):
            raise UsageError(f"--short-side and --fps must be positive, got {self.short_side} and {self.fps}")

    def target(self, relative: str) -> str:
        """The output path of a video at ``relative``: the same path, or a folder named by its stem."""
        return relative if self.kind == "resize" else os.path.splitext(relative)[0]

    def __call__(self, task: tuple[str, str]) -> int:
        """Write one output to its temporary name, then rename it; the number of frames written."""
        source, target = task
        partial = partial_path(Path(target))
        remove(partial)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with VideoReader(source) as reader:
            if self.kind == "resize":
                count = encode_video(reader, partial, self)
            else:
                count = write_jpegs(reader, partial, self)
        os.replace(partial, target)
        return count


def partial_path(target: Path) -> Path:
    """The hidden name an output is written under until it is complete."""
    return target.with_name(f".{target.stem}.part{target.suffix}")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def output_fps(source_fps: float, fps: float | None) -> float:
    return source_fps if fps is None or fps >= source_fps else fps


def resampled_indices(num_frames: int, source_fps: float, fps: float | None) -> np.ndarray:
    """Frames kept when ``source_fps`` drops to ``fps``: the last frame at or before each output time.

    30 fps to 10 fps over 10 frames keeps 0, 3, 6, 9; a rate at or above the source keeps all.
    """
    rate = output_fps(source_fps, fps)
    count = int(np.ceil(num_frames * rate / source_fps - 1e-9))
    indices = np.floor(np.arange(count) * source_fps / rate + 1e-9).astype(np.int64)
    return np.minimum(indices, num_frames - 1)


def scaled_size(width: int, height: int, short_side: int | None, even: bool) -> tuple[int, int]:
    """``(width, height)`` with the short side at ``short_side``; even for 4:2:0 video encoders."""
    if short_side is None:
        return width, height
    scale = short_side / min(width, height)
    step = 2 if even else 1
    return (max(step, int(round(width * scale / step)) * step), max(step, int(round(height * scale / step)) * step))


def resized_chunks(reader: VideoReader, indices: np.ndarray, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """RGB frames at ``indices``, ``CHUNK`` at a time, resized to ``size`` (width, height)."""
    for start in range(0, len(indices), CHUNK):
        frames = reader.read(indices[start:start + CHUNK])  # (t, H, W, 3)
        if size != (frames.shape[2], frames.shape[1]):
            frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        yield frames


def encode_video(reader: VideoReader, path: Path, job: TranscodeJob) -> int:
    """Encode the resampled, resized frames of ``reader`` into ``path`` (container from its extension)."""
    info = reader.info
    ext = path.suffix.lower()
    if ext not in CODECS:
        raise ValueError(f"cannot re-encode {ext} files; supported: {sorted(CODECS)} (or use `prepare frames`)")
    size = scaled_size(info.width, info.height, job.short_side, even=True)
    indices = resampled_indices(info.num_frames, info.fps, job.fps)
    rate = Fraction(output_fps(info.fps, job.fps)).limit_denominator(1001)
    options = {"crf": str(job.quality)} if CODECS[ext] != "mpeg4" else {"qscale": str(max(1, job.quality // 8))}
    with av.open(str(path), "w", format=None if ext != ".m4v" else "mp4") as container:
        stream = container.add_stream(CODECS[ext], rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.thread_count = 1
        for frames in resized_chunks(reader, indices, size):
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return len(indices)


def write_jpegs(reader: VideoReader, folder: Path, job: TranscodeJob) -> int:
    """Write the resampled, resized frames of ``reader`` as ``folder/00001.jpg ...``."""
    info = reader.info
    folder.mkdir(parents=True)
    size = scaled_size(info.width, info.height, job.short_side, even=False)
    indices = resampled_indices(info.num_frames, info.fps, job.fps)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(job.quality)]
    written = 0
    for frames in resized_chunks(reader, indices, size):
        for frame in frames:
            written += 1
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(folder / FRAME_NAME.format(written)), bgr, params):
                raise OSError(f"cannot write {folder / FRAME_NAME.format(written)}")
    return written


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (resolved, symlinks followed) lies in ``folder``."""
    return path.resolve().is_relative_to(folder.resolve())


def plan_tree(root: str | Path, out: str | Path, job: TranscodeJob) -> tuple[list[tuple[str, str]], int]:
    """``([(source, target)] still to do, outputs already finished)``; every target checked to be in ``out``."""
    root, out = Path(root).resolve(), Path(out).resolve()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder of videos")
    if out == root or root.is_relative_to(out):
        raise UsageError(f"--out {out} must not be {root} or hold it: outputs would mix with the sources")
    todo, done = [], 0
    for source in find_videos(root, skip=out):
        target = out / job.target(os.path.relpath(source, root))
        if not inside(target.parent, out):
            raise UsageError(f"{target} would be written outside --out {out} (a symlink?); remove the link")
        if target.exists():
            done += 1
        else:
            todo.append((str(source), str(target)))
    return todo, done


def transcode_tree(root: str | Path, out: str | Path, job: TranscodeJob, *, workers: int = 2,
                   timeout: float = 600.0, progress: bool = True) -> list[str]:
    """Run ``job`` on every unfinished video under ``root``; print a summary; the failures."""
    todo, done = plan_tree(root, out, job)
    failures = []
    outcomes = run_isolated(job, todo, workers=workers, timeout=timeout)
    for outcome in progress_bar(outcomes, desc=job.kind, total=len(todo), unit="file", disable=not progress):
        if outcome.error:
            source, target = todo[outcome.index]
            remove(partial_path(Path(target)))  # a killed worker leaves its temporary output behind
            failures.append(f"{source}: {outcome.error}")
    print(f"{job.kind}: {len(todo) - len(failures)} written, {done} already done, {len(failures)} failed -> {out}")
    for line in failures:
        print(f"  failed {line}")
    return failures
