"""The feature cache: a frozen backbone run once over every video, then head-only training.

``videoseq features CONFIG_OR_CHECKPOINT --manifest CSV --out DIR`` decodes every
video of the manifest at a fixed frame rate, runs the backbone on each frame (the
eval preset: short side resized, centre crop) and stores per-frame features as
float16 in memory-mapped ``.npy`` shards::

    DIR/index.json          settings, shards, and per video: shard, first row, frame count
    DIR/backbone.pt         the backbone's weights (tensors only), so a head trained here
                            joins it into a checkpoint that runs on videos
    DIR/shard_00000.npy     (rows, D) pooled features, float16
    DIR/spatial_00000.npy   (rows, D, h, w) feature maps (``--spatial``, for ConvLSTM)
    DIR/failed.csv          videos that could not be decoded

Extraction is resumable: a shard and the index are written to a temporary name
and renamed, so a run killed at any moment leaves only whole shards, and the next
run starts with the first video not in the index. Features do not depend on how
the work was split into runs (the same frames in the same batches).

``train`` with ``data.features: DIR`` samples clips of cached frames with the same
``videoseq.sampling`` functions as for videos (frame indices then count cached
frames, at the cache's rate) and trains only the head: no decoding, no CNN.
There is no augmentation on cached features.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from videoseq.checkpoint import build_model_from_config, load_checkpoint, load_weights, model_from_checkpoint
from videoseq.config import Config, load_config
from videoseq.datasets import ClipDataset, Manifest, read_manifest, write_csv
from videoseq.distributed import weights_digest
from videoseq.models import VideoClassifier
from videoseq.models.backbones import get_backbone_spec
from videoseq.transcode import output_fps, resampled_indices
from videoseq.transforms import ClipEvalPreset, clip_to_tensor, normalize_clip
from videoseq.video import VideoDecodeError, VideoReader

CACHE_FORMAT = "videoseq-features-1"
SETTINGS = ("backbone", "stage", "size", "fps", "spatial", "weights_sha256")


class FeatureCacheError(ValueError):
    """A feature cache is missing, was made with other settings, or does not fit the config."""


def load_source(source: str | Path, overrides: list[str] | None = None) -> tuple[VideoClassifier, Config]:
    """The model of a checkpoint (``.pt``) or of a YAML config (its ``model.pretrained`` weights).

    A config with ``pretrained: false`` gives a random backbone seeded by ``train.seed``,
    the same one on every run.
    """
    if str(source).endswith(".pt"):
        return model_from_checkpoint(load_checkpoint(source), source)
    config = load_config(source, overrides)
    torch.manual_seed(config.train.seed)
    return build_model_from_config(config, 1).eval(), config


def frame_plan(reader: VideoReader, fps: float | None) -> np.ndarray:
    """Frames of the video kept at ``fps`` (None: every frame)."""
    return resampled_indices(reader.info.num_frames, reader.info.fps, fps)


class Extractor:
    """Per-frame features of a video: eval preset, normalise, backbone trunk, pooled (and maps)."""

    def __init__(self, model: VideoClassifier, *, size: int, spatial: bool, device: torch.device,
                 batch_frames: int = 64) -> None:
        self.backbone = model.backbone.to(device).eval()
        self.preset = ClipEvalPreset(size=size)
        self.spatial, self.device, self.batch_frames = spatial, device, batch_frames

    @torch.no_grad()
    def __call__(self, reader: VideoReader, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """float16 ``(N, D)`` pooled features and ``(N, D, h, w)`` maps (or None) of frames ``indices``."""
        pooled, maps = [], []
        for start in range(0, len(indices), self.batch_frames):
            frames, _ = self.preset(reader.read(indices[start:start + self.batch_frames]), 0)  # (n, S, S, 3)
            x = normalize_clip(clip_to_tensor(frames).to(self.device), self.backbone.mean, self.backbone.std)
            fmap = self.backbone.trunk(x)  # (n, D, h, w)
            pooled.append(fmap.mean(dim=(2, 3)).half().cpu().numpy())
            if self.spatial:
                maps.append(fmap.half().cpu().numpy())
        return np.concatenate(pooled), (np.concatenate(maps) if self.spatial else None)

    def feature_shapes(self, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(D,)`` and ``(D, h, w)`` for frames of ``size`` pixels."""
        with torch.no_grad():
            fmap = self.backbone.trunk(torch.zeros(1, 3, size, size, device=self.device))
        return tuple(fmap.shape[1:2]), tuple(fmap.shape[1:])


def estimate_bytes(videos: list[str], fps: float | None, floats_per_frame: int, sample: int = 50) -> tuple[int, int]:
    """``(frames, bytes)`` of a cache, from the frame counts of up to ``sample`` videos spread over the list."""
    if not videos:
        return 0, 0
    picks = sorted({round(i * (len(videos) - 1) / max(sample - 1, 1)) for i in range(min(sample, len(videos)))})
    counts = []
    for i in picks:
        try:
            with VideoReader(videos[i]) as reader:
                counts.append(len(frame_plan(reader, fps)))
        except VideoDecodeError:
            continue
    frames = int(np.mean(counts) * len(videos)) if counts else 0
    return frames, frames * floats_per_frame * 2


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_shard(path: Path, parts: list[np.ndarray]) -> None:
    """Concatenate ``parts`` into a float16 ``.npy`` (written through a memory map, then renamed)."""
    rows = sum(len(p) for p in parts)

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows,) + parts[0].shape[1:])
        start = 0
        for part in parts:
            out[start:start + len(part)] = part
            start += len(part)
        out.flush()
        del out

    _write_atomic(Path(path), write)


def _write_index(out: Path, index: dict) -> None:
    _write_atomic(out / "index.json", lambda tmp: tmp.write_text(json.dumps(index, indent=1)))


def open_index(out: Path, settings: dict) -> dict:
    """The cache's index (a fresh one for an empty folder); other settings are an error."""
    path = out / "index.json"
    if not path.is_file():
        return {"format": CACHE_FORMAT, **settings, "shards": [], "videos": {}}
    index = json.loads(path.read_text())
    differ = [f"{k}: cache {index.get(k)!r} vs now {settings[k]!r}" for k in SETTINGS if index.get(k) != settings[k]]
    if index.get("format") != CACHE_FORMAT or differ:
        raise FeatureCacheError(f"{out} holds a feature cache made with other settings ({'; '.join(differ)}); "
                                "use another --out, or delete it to start afresh")
    return index


def extract_features(
    source: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    fps: float | None = None,
    spatial: bool = False,
    device: str = "cpu",
    shard_videos: int = 64,
    batch_frames: int = 64,
    max_videos: int | None = None,
) -> dict:
    """Extract (or resume extracting) the feature cache of every video in ``manifest``; returns the index.

    ``max_videos`` stops after that many new videos (work split over several runs).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, config = load_source(source)
    dev = torch.device(device)
    extractor = Extractor(model, size=config.data.size, spatial=spatial, device=dev, batch_frames=batch_frames)
    settings = {"backbone": config.model.backbone, "stage": model.backbone.stage, "size": config.data.size,
                "fps": fps, "spatial": spatial, "weights_sha256": weights_digest(model.backbone)}
    index = open_index(out, settings)
    pooled_shape, map_shape = extractor.feature_shapes(config.data.size)
    index |= {"feature_shape": list(pooled_shape), "map_shape": list(map_shape) if spatial else None}
    torch.save({"backbone": model.backbone.state_dict(), "mean": list(model.backbone.mean),
                "std": list(model.backbone.std)}, out / "backbone.pt")
    rows = read_manifest(manifest)
    paths = list(dict.fromkeys(rows.resolve(r.path) for r in rows.rows))
    todo = [p for p in paths if p not in index["videos"]]
    floats = math.prod(map_shape if spatial else pooled_shape) + (math.prod(pooled_shape) if spatial else 0)
    frames, size = estimate_bytes(todo, fps, floats)
    print(f"feature cache {out}: {len(paths) - len(todo)} of {len(paths)} videos done; to do {len(todo)} videos, "
          f"about {frames} frames at {fps or 'source'} fps -> about {size / 1e6:,.1f} MB float16 "
          f"({floats} values per frame{', with spatial maps' if spatial else ''})")
    failed = _extract_videos(extractor, todo[:max_videos], index, out, fps, shard_videos)
    if failed:
        write_csv(out / "failed.csv", ("path", "error"), sorted(failed.items()))
        print(f"{len(failed)} video(s) failed to decode: listed in {out / 'failed.csv'}")
    print(f"{len(index['videos'])} of {len(paths)} videos in the cache")
    return index


def _extract_videos(extractor: Extractor, todo: list[str], index: dict, out: Path, fps: float | None,
                    shard_videos: int) -> dict[str, str]:
    """Fill shards of ``shard_videos`` videos; after each, the shard and the index are on disk."""
    failed: dict[str, str] = {}
    pending: list[tuple[str, dict, np.ndarray, np.ndarray | None]] = []
    for position, path in enumerate(tqdm(todo, desc="features", dynamic_ncols=True)):
        try:
            with VideoReader(path) as reader:
                indices = frame_plan(reader, fps)
                pooled, maps = extractor(reader, indices)
                entry = {"frames": len(indices), "source_frames": reader.info.num_frames,
                         "source_fps": reader.info.fps, "fps": output_fps(reader.info.fps, fps)}
            pending.append((path, entry, pooled, maps))
        except VideoDecodeError as err:
            tqdm.write(f"skipping {path}: {err}")
            failed[path] = str(err)
        if pending and (len(pending) == shard_videos or position == len(todo) - 1):
            _flush(pending, index, out)
            pending = []
    return failed


def _flush(pending: list, index: dict, out: Path) -> None:
    number = len(index["shards"])
    name = f"{number:05d}.npy"
    _write_shard(out / f"shard_{name}", [p[2] for p in pending])
    if pending[0][3] is not None:
        _write_shard(out / f"spatial_{name}", [p[3] for p in pending])
    start = 0
    for path, entry, pooled, _ in pending:
        index["videos"][path] = {**entry, "shard": number, "start": start}
        start += len(pooled)
    index["shards"].append({"name": name, "rows": start})
    _write_index(out, index)


class FeatureCache:
    """A cache folder opened for reading; shards are memory-mapped on first use in each process."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / "index.json"
        if not path.is_file():
            raise FeatureCacheError(f"data.features: {self.folder} is not a feature cache (no index.json); make one "
                                    f"with `videoseq features CONFIG --manifest CSV --out {self.folder}`")
        self.index = json.loads(path.read_text())
        self._maps: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}  # workers map the shards themselves

    def frames(self, path: str, spatial: bool = False) -> np.ndarray | None:
        """The cached frames of one video, ``(N, D)`` or ``(N, D, h, w)`` float16 (None when not cached)."""
        entry = self.index["videos"].get(path)
        if entry is None:
            return None
        name = ("spatial_" if spatial else "shard_") + self.index["shards"][entry["shard"]]["name"]
        if name not in self._maps:
            self._maps[name] = np.load(self.folder / name, mmap_mode="r")
        return self._maps[name][entry["start"]:entry["start"] + entry["frames"]]

    def check_fits(self, config: Config, spatial: bool) -> None:
        """The config's backbone and stage are the cache's, and maps exist if the head needs them."""
        m, idx = config.model, self.index
        if m.backbone != idx["backbone"] or (m.stage or get_backbone_spec(m.backbone).default_stage) != idx["stage"]:
            raise FeatureCacheError(f"data.features: {self.folder} holds {idx['backbone']} {idx['stage']} features "
                                    f"but the config asks for model.backbone={m.backbone} model.stage={m.stage}")
        if spatial and not idx.get("map_shape"):
            raise FeatureCacheError(f"data.features: head {m.head!r} needs spatial maps; extract them with "
                                    f"`videoseq features ... --spatial --out {self.folder}`")


class FeatureClipDataset(ClipDataset):
    """Clips of cached features, cut by the same samplers as ``ClipDataset``.

    A sample's ``video`` is float16 ``(T, D)`` (or ``(T, D, h, w)``); a video absent from
    the cache (its extraction failed) comes back with an ``error`` like a decode failure.
    """

    def __init__(self, cache: FeatureCache, videos: list[tuple[str, int]], *, spatial: bool, **kwargs) -> None:
        super().__init__(videos, transform=None, **kwargs)
        self.cache, self.spatial = cache, spatial

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        video, view = divmod(i, self.views)
        path, label = self.videos[video]
        frames = self.cache.frames(path, self.spatial)
        if frames is None or len(frames) == 0:
            error = f"{path} is not in the feature cache {self.cache.folder} (see its failed.csv; rerun `features`)"
            return {"video": None, "label": label, "index": video, "item": i, "error": error}
        rng = np.random.default_rng([self.seed, epoch, i])
        clip = np.ascontiguousarray(frames[self.clip_indices(len(frames), view, rng)])
        return {"video": torch.from_numpy(clip), "label": label, "index": video, "item": i, "error": ""}


def feature_datasets(config: Config, manifest: Manifest) -> tuple[FeatureClipDataset, FeatureClipDataset]:
    """Train and validation datasets over the cache ``data.features`` (like ``engine.build_datasets``)."""
    d = config.data
    cache = FeatureCache(d.features)
    spatial = config.model.head == "convlstm"
    cache.check_fits(config, spatial)
    common = dict(clip_len=d.frames, sampling=d.sampling, stride=d.stride, short=d.short_video,
                  seed=config.train.seed, on_error="skip", spatial=spatial)
    train_set = FeatureClipDataset(cache, manifest.videos(d.train_split), train=True, **common)
    val_set = FeatureClipDataset(cache, manifest.videos(d.val_split), train=False, views=d.test_views, **common)
    return train_set, val_set


class HeadOnly(nn.Module):
    """The head of ``model`` fed cached features; the backbone takes the cache's weights and is frozen.

    The checkpoint stays that of the whole ``model``, so it classifies videos as usual.
    """

    def __init__(self, model: VideoClassifier, cache_dir: str | Path) -> None:
        super().__init__()
        state = torch.load(Path(cache_dir) / "backbone.pt", map_location="cpu", weights_only=True)
        load_weights(model.backbone, state["backbone"], Path(cache_dir) / "backbone.pt")
        model.backbone.requires_grad_(False)
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` or ``(B, T, D, h, w)`` -> ``(B, num_classes)``."""
        return self.model.head(features)
