"""The frame cache: every video decoded once, resized, and kept as uint8 frames for training.

For when decoding cannot feed the GPU. ``videoseq features CONFIG_OR_CHECKPOINT
--manifest CSV --out DIR --frames`` decodes every video of the manifest at the
config's ``data.fps`` (or ``--fps``; neither: every frame), resizes each frame so
its short side is ``--short-side`` (default: the eval preset's resize,
``data.size / 0.875``, 128 px for 112 px crops; a smaller video keeps its size)
and stores the frames in memory-mapped shards (``videoseq.cache``)::

    DIR/index.json          format, short_side, fps, and per video: shard, start, frames, height, width
    DIR/frames_00000.npy    uint8, 1-D: the RGB frames of the shard's videos, one video after the other;
                            a video is ``shard[start:start + frames*height*width*3]``, (frames, height, width, 3)
    DIR/failed.csv          videos that could not be decoded

``train`` with ``data.frame_cache: DIR`` reads each clip's frames from the cache
instead of decoding them: the same samplers (frame indices count cached frames,
at the cache's rate, which must be ``data.fps``) and the same train and eval
presets, augmentation included.

For a flow (or rgbdiff) config the cache stores what the model reads instead: every
frame's quantised field against the frame ``data.stride`` before it (``flow.video_fields``;
``motion_NNNNN.npy``, ``(frames, height, width, 2)`` per video, at ``data.flow_size``), so
training gathers its clips' fields and never computes flow after the cache is built;
the index records modality, method, bound, flow size and stride, and a config with
other values is refused. The resize is the eval preset's own, so an
evaluation clip from the cache equals the one decoded from the video (resizing a
cached frame again to the same short side changes nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videoseq.archive import archive_device
from videoseq.cache import (
    CacheError,
    ShardCache,
    check_cache_folder,
    fill_cache,
    manifest_paths,
    open_index,
)
from videoseq.checkpoint import open_source
from videoseq.config import DataConfig
from videoseq.errors import UsageError
from videoseq.flow import MotionInput, fields_after
from videoseq.modality import motion_input
from videoseq.reading import ShortSide
from videoseq.transcode import scaled_size
from videoseq.video.decoder import VideoInfo
from videoseq.video.geometry import eval_resize, resize_short_side

CACHE_FORMAT = "videoseq-frames-1"


class FrameResizer:
    """The frames of a video resized to ``short_side`` (never enlarged), as uint8 bytes for a shard."""

    what = "frame cache"

    def __init__(self, short_side: int) -> None:
        self.short_side = short_side
        self.prepare = ShortSide(short_side)  # the resize, in the decoding workers
        self.chunk = 256
        self.unit = f"uint8 (short side {short_side} px, 3 bytes per pixel)"

    def __call__(self, frames: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
        """``frames``: the resized frames ``(n, h, w, 3)`` flattened; the index gets their height and width."""
        return {"frames": frames.reshape(-1)}, {"height": frames.shape[1], "width": frames.shape[2]}

    def frame_bytes(self, info: VideoInfo) -> int:
        width, height = scaled_size(info.width, info.height, min(self.short_side, info.width, info.height), even=False)
        return width * height * 3


@dataclass(frozen=True)
class MotionSide:
    """The short side resized to exactly ``short_side`` (flow vectors are in its pixels): the motion cache."""

    short_side: int

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``(T, H, W, 3)`` -> ``(T, h, w, 3)``."""
        return resize_short_side(frames, self.short_side, area=True)


class MotionFields:
    """Every frame's motion field against the frame ``motion.step`` before it, uint8 bytes for a shard.

    The chunks of one video come in order; the last sources of a chunk carry over to the next
    (``new_video`` starts afresh), so the fields are those of the whole video (``flow.video_fields``).
    """

    what = "frame cache"

    def __init__(self, motion: MotionInput) -> None:
        self.motion = motion
        self.prepare = MotionSide(motion.short_side)  # the resize, in the decoding workers
        self.chunk = 256
        self.channels = motion.channels // motion.stack  # one field
        self.unit = f"uint8 {motion.modality} fields ({motion.short_side} px short side, {self.channels} channels)"
        self.before: list[np.ndarray] = []

    def new_video(self) -> None:
        self.before = []

    def __call__(self, frames: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
        """``frames``: the next resized frames ``(n, h, w, 3)`` of the video -> their fields, flattened."""
        fields, self.before = fields_after(self.motion, self.before, frames)  # (n, h, w, c)
        return {"motion": fields.reshape(-1)}, {"height": fields.shape[1], "width": fields.shape[2],
                                                "channels": self.channels}

    def frame_bytes(self, info: VideoInfo) -> int:
        width, height = scaled_size(info.width, info.height, self.motion.short_side, even=False)
        return width * height * self.channels


def motion_settings(motion: MotionInput) -> dict:
    """What a motion cache's fields depend on (kept in its index, checked against the config)."""
    return {"modality": motion.modality, "flow_method": motion.method, "flow_bound": motion.bound,
            "flow_size": motion.short_side, "step": motion.step}


def extract_frames(source: str | Path, manifest: str | Path, out_dir: str | Path, *, fps: float | None = None,
                   short_side: int | None = None, shard_videos: int = 16, max_videos: int | None = None,
                   workers: int = 2, overwrite: bool = False) -> dict:
    """Build (or resume building) the frame cache of every video in ``manifest``; returns the index.

    ``fps`` defaults to the config's ``data.fps`` (None: every frame), ``short_side`` to
    ``eval_resize(data.size)``; ``max_videos`` stops after that many new videos; ``out_dir`` as
    for ``features.extract_features`` (``overwrite`` starts afresh).
    """
    check_cache_folder(out_dir, "frame cache", overwrite=overwrite, inputs=[source, manifest])
    data = open_source(source).config.data
    motion = motion_input(data) if data.modality in ("flow", "rgbdiff") else None
    return cache_frames(manifest_paths(manifest), out_dir, short_side=short_side or eval_resize(data.size),
                        fps=fps or data.fps, shard_videos=shard_videos, max_videos=max_videos, workers=workers,
                        fresh=overwrite, motion=motion)


def cache_frames(paths: list[str], out_dir: str | Path, *, short_side: int, fps: float | None,
                 shard_videos: int = 16, max_videos: int | None = None, workers: int = 2,
                 fresh: bool = False, motion: MotionInput | None = None) -> dict:
    """The frame cache of the videos ``paths`` (absolute) in ``out_dir``; returns the index.

    With ``motion`` it stores every frame's motion field instead of the frame (``MotionFields``).
    """
    if short_side <= 0 or (fps is not None and fps <= 0):
        raise UsageError(f"--short-side and --fps must be positive, got {short_side} and {fps}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"short_side": short_side, "fps": fps, **(motion_settings(motion) if motion else {})}
    extract = MotionFields(motion) if motion else FrameResizer(short_side)
    with archive_device("cpu"):
        index = open_index(out, CACHE_FORMAT, settings, fresh=fresh)
        return fill_cache(extract, paths, out, index, fps=fps, shard_videos=shard_videos,
                          max_videos=max_videos, workers=workers)


class FrameCache(ShardCache):
    """A frame cache opened for reading (``ClipDataset(cache=...)`` reads clips from it)."""

    format = CACHE_FORMAT
    key = "data.frame_cache"
    what = "frame cache"
    command = "videoseq features CONFIG --manifest CSV --frames --out {folder}"

    def frames(self, path: str) -> np.ndarray:
        """Every cached frame of one video, uint8 RGB ``(N, h, w, 3)``, or its fields ``(N, h, w, c)`` (mmapped)."""
        entry = self.entry(path)
        shape = (entry["frames"], entry["height"], entry["width"], entry.get("channels", 3))
        start = entry["start"]
        return self.shard("motion" if self.holds_motion else "frames", entry)[start:start + math.prod(shape)
                                                                             ].reshape(shape)

    @property
    def holds_motion(self) -> bool:
        return "modality" in self.index

    def check_motion_fits(self, data: DataConfig) -> None:
        """A motion cache's fields were made with ``data``'s modality, method, bound, flow size and stride."""
        motion = motion_input(data) if data.modality in ("flow", "rgbdiff") else None
        want = motion_settings(motion) if motion else {"modality": data.modality}
        differ = [f"{k}: cache {self.index.get(k)!r} vs config {v!r}" for k, v in want.items()
                  if self.index.get(k) != v]
        if differ:
            raise CacheError(f"data.frame_cache: {self.folder} holds {self.index['modality']} fields made with other "
                             f"settings ({'; '.join(differ)}); build a cache for this config with "
                             f"`{self.command.format(folder='NEW_DIR')}`")

    def check_fits(self, data: DataConfig) -> None:
        """The cache's rate is ``data.fps`` and its frames are large enough for the eval preset of ``data.size``."""
        if self.holds_motion:
            self.check_motion_fits(data)
        fps, short = self.index["fps"], self.index["short_side"]
        if not (fps == data.fps or (fps and data.fps and math.isclose(fps, data.fps))):
            raise CacheError(f"data.frame_cache: {self.folder} holds frames at {fps or 'the source'} fps but data.fps "
                             f"is {data.fps}, and frame indices (data.stride) count cached frames; set data.fps="
                             f"{fps if fps else 'null'}, or build a cache with --fps {data.fps}")
        if short < eval_resize(data.size):
            raise CacheError(f"data.frame_cache: {self.folder} holds frames with a {short} px short side, smaller "
                             f"than the {eval_resize(data.size)} px the eval preset of data.size={data.size} resizes "
                             f"to; build a cache with --short-side {eval_resize(data.size)} or more")

    def check_covers(self, videos: list[tuple[str, int]]) -> None:
        """Every video is in the cache, or failed when it was built (those are skipped like decode failures)."""
        known = self.index["videos"].keys() | self.index.get("failed", {}).keys()
        missing = [path for path, _ in videos if path not in known]
        if missing:
            raise CacheError(f"data.frame_cache: {len(missing)} video(s) of the manifest are not in {self.folder}, "
                             f"e.g. {missing[0]}; add them with `{self.command.format(folder=self.folder)}` "
                             "(it resumes), or point data.frame_cache at the cache of this manifest")


def open_frame_cache(data: DataConfig, videos: list[tuple[str, int]]) -> FrameCache:
    """The cache ``data.frame_cache``, checked to fit ``data`` and to hold ``videos``."""
    cache = FrameCache(data.frame_cache)
    cache.check_fits(data)
    cache.check_covers(videos)
    return cache
