"""Camera-motion clips cut from real footage: a benchmark whose classes are defined by motion alone.

A square crop window moves over the frames of a real video: it pans left or right,
tilts up or down, zooms in or out, rotates clockwise or counter-clockwise, or stays
still (``CAMERA_CLASSES``). The real content keeps its own motion (pedestrians in
``vtest.avi``, the hand-held shake of ``box.mp4``, the film's own motion in
``Megamind.avi``), so a model has to tell the camera's motion from the scene's.
Labels name what the camera (the window) does: in ``PanLeft`` the window moves left
and the content drifts right; in ``RotateClockwise`` the window turns clockwise on
screen and the content turns counter-clockwise. A horizontal flip turns ``PanLeft``
into ``PanRight`` and ``RotateClockwise`` into ``RotateCounterClockwise``
(``CAMERA_FLIP_SWAP``).

Speeds are relative to the window, so they look the same at any clip size: pans move
1-3 % of the window side per frame, zooms change its side by 1-3 % per frame,
rotations turn 1-3 degrees per frame. Sources are read at a short side of 240 px
(all five real sources are at least that); output frames are sampled about 15 times
a second of source time (every second frame of a 30 fps source).

Conventions: the window's pose per frame is its centre ``(x, y)`` in source pixels,
its ``scale`` (source pixels per output pixel) and ``angle`` in degrees, increasing
clockwise on screen (image y points down).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from videoseq.errors import InputError, UsageError
from videoseq.video.cameras import capture_frames, open_capture
from videoseq.video.decoder import VideoDecodeError
from videoseq.video.geometry import resize_short_side

CAMERA_CLASSES: tuple[str, ...] = (
    "PanLeft", "PanRight", "TiltUp", "TiltDown", "ZoomIn", "ZoomOut", "RotateClockwise", "RotateCounterClockwise",
    "Static",
)
CAMERA_FLIP_SWAP: dict[str, str] = {
    "PanLeft": "PanRight", "PanRight": "PanLeft",
    "RotateClockwise": "RotateCounterClockwise", "RotateCounterClockwise": "RotateClockwise",
}
REAL_SOURCES: tuple[str, ...] = (
    "flipping_a_pancake.mkv", "ucf_like_320x240.avi", "vtest.avi", "Megamind.avi", "box.mp4",
)
SOURCE_SHORT_SIDE = 240  # px: sources are read at this short side
OUTPUT_RATE = 15.0  # output frames per second of source time (at most one per source frame)
PAN_SPEED = (0.01, 0.03)  # window sides per frame
ZOOM_RATE = (0.01, 0.03)  # relative change of the window side per frame
SPIN_SPEED = (1.0, 3.0)  # degrees per frame
WINDOW_SIDE = (0.45, 0.8)  # window side at its largest, as a fraction of the source's short side


@dataclass(frozen=True)
class CameraPath:
    """The window's pose in every output frame: centre (px), scale (source px per output px), angle (deg)."""

    x: np.ndarray  # (T,)
    y: np.ndarray  # (T,)
    scale: np.ndarray  # (T,)
    angle: np.ndarray  # (T,) clockwise on screen

    def matrix(self, t: int, size: int) -> np.ndarray:
        """``(2, 3)`` affine map from output pixel ``(u, v)`` of frame ``t`` to source pixel coordinates."""
        theta = np.deg2rad(self.angle[t])
        rot = self.scale[t] * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        centre = (size - 1) / 2.0
        offset = np.array([self.x[t], self.y[t]]) - rot @ np.array([centre, centre])
        return np.hstack([rot, offset[:, None]])

    def corners(self, size: int) -> np.ndarray:
        """Source coordinates of the window's four corners in every frame, ``(T, 4, 2)``."""
        square = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], dtype=np.float64)
        return np.stack([square @ self.matrix(t, size).T for t in range(len(self.x))])


def motion_of(label: str, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Per-frame motion of a class: pan ``(dx, dy)`` in window sides, zoom factor of the side, spin in degrees."""
    if label not in CAMERA_CLASSES:
        raise UsageError(f"camera motion class {label!r} is not one of {list(CAMERA_CLASSES)}")
    pan, zoom, spin = rng.uniform(*PAN_SPEED), rng.uniform(*ZOOM_RATE), rng.uniform(*SPIN_SPEED)
    return {
        "PanLeft": (-pan, 0.0, 1.0, 0.0), "PanRight": (pan, 0.0, 1.0, 0.0),
        "TiltUp": (0.0, -pan, 1.0, 0.0), "TiltDown": (0.0, pan, 1.0, 0.0),
        "ZoomIn": (0.0, 0.0, 1.0 - zoom, 0.0), "ZoomOut": (0.0, 0.0, 1.0 + zoom, 0.0),
        "RotateClockwise": (0.0, 0.0, 1.0, spin), "RotateCounterClockwise": (0.0, 0.0, 1.0, -spin),
        "Static": (0.0, 0.0, 1.0, 0.0),
    }[label]


def camera_path(label: str, rng: np.random.Generator, *, frames: int, size: int,
                source_hw: tuple[int, int]) -> CameraPath:
    """A random window path of class ``label`` that stays inside a ``source_hw`` frame in every output frame.

    The window side at its largest is drawn from ``WINDOW_SIDE`` (shrunk until the
    path fits); the start centre is then drawn among the positions that keep all four
    corners inside the frame in every frame.
    """
    dx, dy, zoom, spin = motion_of(label, rng)
    t = np.arange(frames, dtype=np.float64)
    growth = zoom ** t  # (T,) window side relative to the first frame
    largest = rng.uniform(*WINDOW_SIDE) * min(source_hw)
    angle = rng.uniform(-8.0, 8.0) + spin * t
    for _ in range(20):
        scale = largest / growth.max() * growth / size  # (T,) source px per output px
        side = scale * size  # (T,) window side in source px
        step_x = np.concatenate([[0.0], np.cumsum(dx * side[1:])])
        step_y = np.concatenate([[0.0], np.cumsum(dy * side[1:])])
        relative = CameraPath(step_x, step_y, scale, angle).corners(size)  # (T, 4, 2) around a start centre at 0
        low = -relative.min(axis=(0, 1))
        high = np.array([source_hw[1] - 1, source_hw[0] - 1]) - relative.max(axis=(0, 1))
        if np.all(high >= low):
            x0, y0 = rng.uniform(low, high)
            return CameraPath(x0 + step_x, y0 + step_y, scale, angle)
        largest *= 0.9
    raise UsageError(f"no {label} path of {frames} frames fits a {source_hw[1]}x{source_hw[0]} source")


def render_clip(source: np.ndarray, path: CameraPath, size: int) -> np.ndarray:
    """Output frames ``(T, size, size, 3)``: frame ``t`` is the window of ``path`` over ``source[t]``."""
    flags = cv2.INTER_AREA | cv2.WARP_INVERSE_MAP if path.scale.max() > 1.5 else cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return np.stack([cv2.warpAffine(frame, path.matrix(t, size), (size, size), flags=flags,
                                    borderMode=cv2.BORDER_REFLECT) for t, frame in enumerate(source)])


def window_flow(path: CameraPath, t0: int, t1: int, size: int) -> np.ndarray:
    """The flow, in output px, that the window's motion alone gives a still scene from frame ``t0`` to ``t1``.

    A scene point seen at output pixel ``p`` in frame ``t0`` lies at source point
    ``A0 p + b0``; in frame ``t1`` it is seen at ``A1^-1 (A0 p + b0 - b1)``. ``(size, size, 2)``.
    """
    m0, m1 = path.matrix(t0, size), path.matrix(t1, size)
    inverse = np.linalg.inv(m1[:, :2])
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    points = np.stack([u, v], axis=-1)  # (size, size, 2)
    source = points @ m0[:, :2].T + m0[:, 2]
    return ((source - m1[:, 2]) @ inverse.T - points).astype(np.float32)


def read_source(path: str | Path, short_side: int = SOURCE_SHORT_SIDE) -> tuple[np.ndarray, float]:
    """Every frame a video decodes to, at ``short_side`` px, ``(N, H, W, 3)`` uint8, and its frame rate.

    One sequential OpenCV pass, resizing as it goes (a whole 768x576 source at full size
    would take a gigabyte); a stream that ends before its stated frame count (``box.mp4``
    lacks its last frame) gives the frames it has.
    """
    capture = open_capture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        frames = [resize_short_side(frame[None], short_side, area=True)[0] for frame in capture_frames(capture)]
    finally:
        capture.release()
    if not frames:
        raise VideoDecodeError(str(path), "no frame could be decoded", "check that the file is a playable video")
    return np.stack(frames), float(fps)


def frame_step(fps: float) -> int:
    """Source frames per output frame: about ``OUTPUT_RATE`` output frames per second of source time."""
    return max(1, int(round(fps / OUTPUT_RATE)))


def source_clips(source: np.ndarray, fps: float, *, per_class: int, frames: int, size: int,
                 seed: int) -> list[tuple[str, np.ndarray]]:
    """``per_class`` clips of every class from one source's frames: ``(label, (T, size, size, 3))``.

    Each clip starts at a random source frame; its window path is drawn with its own
    generator keyed by ``(seed, class, clip)``, so adding clips leaves earlier ones unchanged.
    """
    step = frame_step(fps)
    span = (frames - 1) * step + 1
    if len(source) < span:
        raise InputError(f"a source of {len(source)} frames is shorter than one clip ({span} frames at step {step})")
    clips = []
    for c, label in enumerate(CAMERA_CLASSES):
        for k in range(per_class):
            rng = np.random.default_rng([seed, c, k])
            start = int(rng.integers(0, len(source) - span + 1))
            path = camera_path(label, rng, frames=frames, size=size, source_hw=source.shape[1:3])
            clips.append((label, render_clip(source[start:start + span:step], path, size)))
    return clips


def write_camera_motion_clips(out_dir: str | Path, sources: list[str | Path], *, per_class: int = 24,
                              frames: int = 20, size: int = 96, seed: int = 0,
                              progress: bool = True) -> dict[str, list[tuple[str, str]]]:
    """Write ``per_class`` clips of every class from every source as ``out_dir/videos/<Class>/<source>_cNNN.avi``.

    Returns, per source name (file stem), its clips as ``(relative path, label)``;
    ``write_split_manifest`` turns that into a manifest split by source.
    """
    from videoseq.synth import write_avi

    out = Path(out_dir)
    written: dict[str, list[tuple[str, str]]] = {}
    for source_path in tqdm(sources, desc="camera-motion sources", unit="source", disable=not progress):
        frames_all, fps = read_source(source_path)
        name = Path(source_path).stem
        rows = []
        counts: dict[str, int] = {}
        for label, clip in source_clips(frames_all, fps, per_class=per_class, frames=frames, size=size, seed=seed):
            counts[label] = counts.get(label, 0) + 1
            relative = f"videos/{label}/{name}_c{counts[label]:03d}.avi"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            write_avi(out / relative, clip, OUTPUT_RATE)
            rows.append((relative, label))
        written[name] = rows
    return written


def write_split_manifest(manifest_dir: str | Path, clips_root: str | Path, clips: dict[str, list[tuple[str, str]]],
                         test_sources: list[str], *, val_every: int = 8) -> Path:
    """``manifest_dir/manifest.csv`` + ``classes.txt`` for clips written under ``clips_root``, split by source.

    Clips of ``test_sources`` (file stems) form the test split, the others train, except
    every ``val_every``-th clip of each class of a training source, which goes to ``val``
    (0: no val split). The group column names the source video.
    """
    from videoseq.manifest import Manifest, ManifestRow, write_manifest

    unknown = sorted(set(test_sources) - set(clips))
    if unknown:
        raise UsageError(f"test sources {unknown} are not among the written sources {sorted(clips)}")
    rows = []
    for source, items in clips.items():
        seen: dict[str, int] = {}
        for relative, label in items:
            seen[label] = seen.get(label, 0) + 1
            held_out = val_every and seen[label] % val_every == 0
            split = "test" if source in test_sources else ("val" if held_out else "train")
            rows.append(ManifestRow(relative, label, split, source))
    return write_manifest(Manifest(rows, list(CAMERA_CLASSES), Path(clips_root).resolve()), manifest_dir)
