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

Extraction is resumable (``videoseq.cache``, shared with the frame cache): a shard
and the index are written to a temporary name and renamed, so a run killed at any
moment leaves only whole shards, and the next run starts with the first video not
in the index. Features do not depend on how the work was split into runs (the same
frames in the same batches).

``train`` with ``data.features: DIR`` samples clips of cached frames with the same
``videoseq.sampling`` functions as for videos (frame indices then count cached
frames, at the cache's rate) and trains only the head: no decoding, no CNN.
There is no augmentation on cached features.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

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
from videoseq.config import Config
from videoseq.datasets import ClipDataset
from videoseq.distributed import is_main, weights_digest
from videoseq.manifest import Manifest
from videoseq.models import VideoClassifier
from videoseq.models.backbones import get_backbone_spec
from videoseq.models.heads import get_head_class
from videoseq.outputs import atomic_output
from videoseq.reading import Crop
from videoseq.sampling import ClipSampling
from videoseq.transforms import clip_to_tensor, normalize_clip
from videoseq.video.decoder import VideoInfo

CACHE_FORMAT = "videoseq-features-1"
FeatureCacheError = CacheError  # the name importers of this module know


class Extractor:
    """Per-frame features of a video: eval preset, normalise, backbone trunk, pooled (and maps)."""

    what = "feature cache"

    def __init__(self, model: VideoClassifier, *, size: int, spatial: bool, device: torch.device,
                 batch_frames: int = 64) -> None:
        self.backbone = model.backbone.to(device).eval()
        self.prepare = Crop(size)  # the eval preset, in the decoding workers
        self.chunk = batch_frames * max(1, 256 // batch_frames)  # frames per decoding request: whole batches
        self.spatial, self.device, self.batch_frames = spatial, device, batch_frames
        self.pooled_shape, self.map_shape = self.feature_shapes(size)
        self.floats = math.prod(self.pooled_shape) + (math.prod(self.map_shape) if spatial else 0)
        self.unit = f"float16 ({self.floats} values per frame{', with spatial maps' if spatial else ''})"

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
        """Cropped uint8 frames ``(N, S, S, 3)`` -> float16 ``(N, D)`` pooled features (``shard``) and
        ``(N, D, h, w)`` maps (``spatial``), ``batch_frames`` frames per backbone batch."""
        pooled, maps = [], []
        for start in range(0, len(frames), self.batch_frames):
            batch = clip_to_tensor(frames[start:start + self.batch_frames]).to(self.device)  # (n, 3, S, S)
            fmap = self.backbone.trunk(normalize_clip(batch, self.backbone.mean, self.backbone.std))  # (n, D, h, w)
            pooled.append(fmap.mean(dim=(2, 3)).half().cpu().numpy())
            if self.spatial:
                maps.append(fmap.half().cpu().numpy())
        arrays = {"shard": np.concatenate(pooled)}
        if self.spatial:
            arrays["spatial"] = np.concatenate(maps)
        return arrays, {}

    def frame_bytes(self, info: VideoInfo) -> int:
        return self.floats * 2

    def feature_shapes(self, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(D,)`` and ``(D, h, w)`` for frames of ``size`` pixels."""
        with torch.no_grad():
            fmap = self.backbone.trunk(torch.zeros(1, 3, size, size, device=self.device))
        return tuple(fmap.shape[1:2]), tuple(fmap.shape[1:])


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
    workers: int = 2,
    overwrite: bool = False,
) -> dict:
    """Extract (or resume extracting) the feature cache of every video in ``manifest``; returns the index.

    ``max_videos`` stops after that many new videos (work split over several runs);
    ``workers`` decoding processes (of each rank, under torchrun). ``out_dir`` is a new or
    empty folder or a feature cache to resume; ``overwrite`` starts afresh (the old cache's
    files are removed once the inputs opened) or writes beside other files.
    """
    out = check_cache_folder(out_dir, "feature cache", overwrite=overwrite, inputs=[source, manifest])
    with archive_device(device) as torch_device:
        opened = open_source(source)
        model, config = opened.model(), opened.config
        manifest_paths(manifest)  # the manifest opens before anything is written
        out.mkdir(parents=True, exist_ok=True)
        extractor = Extractor(model, size=config.data.size, spatial=spatial, device=torch_device,
                              batch_frames=batch_frames)
        return _extract(extractor, model, config, manifest, out, fps=fps, spatial=spatial, shard_videos=shard_videos,
                        max_videos=max_videos, workers=workers, overwrite=overwrite)


def _extract(extractor: Extractor, model: VideoClassifier, config: Config, manifest: str | Path, out: Path, *,
             fps: float | None, spatial: bool, shard_videos: int, max_videos: int | None, workers: int,
             overwrite: bool) -> dict:
    settings = {"backbone": config.model.backbone, "stage": model.backbone.stage, "size": config.data.size,
                "fps": fps, "spatial": spatial, "weights_sha256": weights_digest(model.backbone)}
    index = open_index(out, CACHE_FORMAT, settings, fresh=overwrite)
    index |= {"feature_shape": list(extractor.pooled_shape),
              "map_shape": list(extractor.map_shape) if spatial else None}
    if is_main():
        with atomic_output(out / "backbone.pt") as tmp:
            torch.save({"backbone": model.backbone.state_dict(), "mean": list(model.backbone.mean),
                        "std": list(model.backbone.std)}, tmp)
    return fill_cache(extractor, manifest_paths(manifest), out, index, fps=fps, shard_videos=shard_videos,
                      max_videos=max_videos, workers=workers)


class FeatureCache(ShardCache):
    """A feature cache opened for reading: pooled vectors, or the spatial maps with ``spatial=True``."""

    format = CACHE_FORMAT
    key = "data.features"
    what = "feature cache"
    command = "videoseq features CONFIG --manifest CSV --out {folder}"

    def __init__(self, folder: str | Path, spatial: bool = False) -> None:
        super().__init__(folder)
        self.spatial = spatial

    def frames(self, path: str, spatial: bool | None = None) -> np.ndarray:
        """The cached frames of one video, ``(N, D)`` or ``(N, D, h, w)`` float16 (memory-mapped)."""
        entry = self.entry(path)
        kind = "spatial" if (self.spatial if spatial is None else spatial) else "shard"
        return self.shard(kind, entry)[entry["start"]:entry["start"] + entry["frames"]]

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

    A sample's ``video`` is float16 ``(T, D)`` (or ``(T, D, h, w)``), untransformed; a video
    absent from the cache (its extraction failed) comes back with an ``error`` like a decode failure.
    """

    def __init__(self, cache: FeatureCache, videos: list[tuple[str, int]], **kwargs) -> None:
        super().__init__(videos, transform=None, cache=cache, **kwargs)

    def to_tensor(self, clip: np.ndarray, label: int, seed: int, crop: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(clip), label  # no augmentation on cached features


def feature_datasets(config: Config, manifest: Manifest) -> tuple[FeatureClipDataset, FeatureClipDataset]:
    """Train and validation datasets over the cache ``data.features`` (like ``engine.trainer.build_datasets``)."""
    d = config.data
    spatial = get_head_class(config.model.head).spatial  # the head says which features it needs
    cache = FeatureCache(d.features, spatial=spatial)
    cache.check_fits(config, spatial)
    common = dict(clips=ClipSampling.from_data(d), seed=config.train.seed, on_error="skip")
    train_set = FeatureClipDataset(cache, manifest.videos(d.train_split), train=True, **common)
    val_set = FeatureClipDataset(cache, manifest.videos(d.val_split), train=False, views=d.test_views, **common)
    return train_set, val_set
