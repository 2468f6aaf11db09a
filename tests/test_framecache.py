"""The frame cache: stored frames are the decoded frames resized, training reads clips from it
with the same samplers and transforms, a cache that does not fit is refused by name, and an
interrupted build resumes to the same bytes."""

import cv2
import numpy as np
import pytest
import torch

from videoseq import datasets
from videoseq.cache import CacheError
from videoseq.cli import main
from videoseq.config import ConfigError, load_config
from videoseq.datasets import ClipDataset, LoaderOptions, make_loader
from videoseq.engine.trainer import build_datasets, fit
from videoseq.framecache import FrameCache, cache_frames, extract_frames
from videoseq.manifest import read_manifest
from videoseq.sampling import ClipSampling
from videoseq.transcode import resampled_indices
from videoseq.transforms import ClipEvalPreset
from videoseq.video.decoder import VideoReader


def decoded_and_resized(path: str, fps: float | None, size: tuple[int, int]) -> np.ndarray:
    """The frames a cache at ``fps`` keeps, decoded and resized with OpenCV to ``size`` (width, height)."""
    with VideoReader(path) as reader:
        frames = reader.read(resampled_indices(reader.info.num_frames, reader.info.fps, fps))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])


def test_cached_frames_are_the_decoded_frames_resized(gestures_config, tmp_path):
    config, manifest = gestures_config
    index = extract_frames(config, manifest, tmp_path / "c", fps=6, max_videos=3)
    assert (index["short_side"], index["fps"]) == (37, 6)  # data.size 32 / 0.875; 12 fps videos at 6 fps
    cache = FrameCache(tmp_path / "c")
    for path, entry in index["videos"].items():
        assert (entry["frames"], entry["height"], entry["width"]) == (6, 37, 37)
        frames = cache.frames(path)
        assert frames.dtype == np.uint8 and np.array_equal(frames, decoded_and_resized(path, 6, (37, 37)))


def test_a_landscape_video_keeps_its_aspect_and_a_small_one_its_size(shared_video, tmp_path):
    path = str(shared_video("ucf_like_320x240.avi"))
    index = cache_frames([path], tmp_path / "c", short_side=60, fps=5)
    entry = index["videos"][path]
    assert (entry["height"], entry["width"], entry["fps"]) == (60, 80, 5)
    assert np.array_equal(FrameCache(tmp_path / "c").frames(path), decoded_and_resized(path, 5, (80, 60)))
    big = cache_frames([path], tmp_path / "big", short_side=480, fps=5)  # never enlarged
    assert (big["videos"][path]["height"], big["videos"][path]["width"]) == (240, 320)


def test_clips_from_the_cache_go_through_the_same_samplers_and_transforms(gestures_config, tmp_path):
    config, manifest = gestures_config
    extract_frames(config, manifest, tmp_path / "c")
    rows = read_manifest(manifest)
    decoded_train, decoded_val = build_datasets(load_config(config), rows)
    cached_train, cached_val = build_datasets(load_config(config, [f"data.frame_cache={tmp_path / 'c'}"]), rows)
    # eval clips are exact: the cache stores the eval preset's resize, which is then a no-op
    for i in range(0, len(decoded_val), 7):
        assert torch.equal(cached_val[i]["video"], decoded_val[i]["video"])
    # training clips are augmented: the same shape, another draw every epoch
    first, again = cached_train[(0, 0)], cached_train[(1, 0)]
    assert first["video"].shape == decoded_train[0]["video"].shape == (4, 3, 32, 32)
    assert not torch.equal(first["video"], again["video"])
    # DataLoader workers map the shards themselves and read the same clips
    alone, workers = (list(make_loader(cached_train, LoaderOptions(batch_size=8, num_workers=n), shuffle=True))
                      for n in (0, 2))
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(alone, workers, strict=True))


def test_training_one_epoch_reads_the_cache_and_decodes_nothing(gestures_config, tmp_path, monkeypatch):
    config, manifest = gestures_config
    extract_frames(config, manifest, tmp_path / "c")

    def no_decoding(*args, **kwargs):
        raise AssertionError("training on a frame cache decoded a video")

    monkeypatch.setattr(datasets, "VideoReader", no_decoding)
    run = fit(load_config(config, [f"data.frame_cache={tmp_path / 'c'}", "train.epochs=1"]), tmp_path / "run")
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file() and not (run / "bad_videos.csv").exists()
    assert len((run / "metrics.csv").read_text().splitlines()) == 2


def test_a_cache_that_does_not_fit_is_refused_by_name(gestures_config, tmp_path):
    config, manifest = gestures_config
    rows = read_manifest(manifest)

    def datasets_with(*overrides):
        return build_datasets(load_config(config, list(overrides)), rows)

    with pytest.raises(CacheError, match=r"data.frame_cache: .*nothing is not a frame cache \(no index.json\)"):
        datasets_with(f"data.frame_cache={tmp_path / 'nothing'}")
    extract_frames(config, manifest, tmp_path / "part", fps=6, max_videos=2)
    with pytest.raises(CacheError, match=r"34 video\(s\) of the manifest are not in .*part, e\.g\. .*\.avi"):
        datasets_with(f"data.frame_cache={tmp_path / 'part'}", "data.fps=6")
    with pytest.raises(CacheError, match="holds frames at 6 fps but data.fps is None"):
        datasets_with(f"data.frame_cache={tmp_path / 'part'}")
    extract_frames(config, manifest, tmp_path / "small", short_side=24, max_videos=1)
    with pytest.raises(CacheError, match="24 px short side.*--short-side 37"):
        datasets_with(f"data.frame_cache={tmp_path / 'small'}")
    with pytest.raises(ConfigError, match="data.features and data.frame_cache"):
        datasets_with(f"data.frame_cache={tmp_path / 'part'}", f"data.features={tmp_path / 'part'}")


def test_a_video_that_failed_is_listed_and_its_clips_are_skipped_with_its_name(gestures, tmp_path):
    good = str(next((gestures / "videos").rglob("*.avi")))
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    index = cache_frames([str(broken), good], tmp_path / "c", short_side=37, fps=None)
    assert list(index["videos"]) == [good] and list(index["failed"]) == [str(broken)]
    assert str(broken) in (tmp_path / "c" / "failed.csv").read_text()
    cache = FrameCache(tmp_path / "c")
    cache.check_covers([(good, 0), (str(broken), 1)])  # failed videos are known: skipped like decode failures
    data = ClipDataset([(str(broken), 1), (good, 0)], clips=ClipSampling(frames=4),
                       transform=ClipEvalPreset(size=32), train=False, cache=cache)
    error = data[0]["error"]
    assert str(broken) in error and "extraction failed" in error and str(tmp_path / "c") in error
    assert data[1]["error"] == "" and data[1]["video"].shape == (4, 3, 32, 32)


def test_an_interrupted_build_rerun_gives_identical_bytes(gestures_config, tmp_path):
    config, manifest = gestures_config
    whole = extract_frames(config, manifest, tmp_path / "whole", fps=6, shard_videos=5)
    # the first run stops after 7 videos (a shard of 5 and one of 2), and a shard half-written
    # when a run was killed lies beside them
    part = extract_frames(config, manifest, tmp_path / "part", fps=6, shard_videos=5, max_videos=7)
    assert len(part["videos"]) == 7 and len(part["shards"]) == 2
    (tmp_path / "part" / "frames_00002.npy.tmp").write_bytes(b"\x93NUMPY half a shard")
    resumed = extract_frames(config, manifest, tmp_path / "part", fps=6, shard_videos=5)
    assert len(resumed["videos"]) == len(whole["videos"]) == 36
    a, b = FrameCache(tmp_path / "whole"), FrameCache(tmp_path / "part")
    assert all(a.frames(path).tobytes() == b.frames(path).tobytes() for path in whole["videos"])
    with pytest.raises(CacheError, match="short_side: cache 37 vs now 40"):
        extract_frames(config, manifest, tmp_path / "part", fps=6, short_side=40)


def test_the_features_command_builds_a_frame_cache_with_frames(gestures_config, tmp_path, capsys):
    config, manifest = gestures_config
    args = ["features", str(config), "--manifest", str(manifest), "--out", str(tmp_path / "c"), "--frames"]
    assert main(args + ["--max-videos", "1", "--short-side", "48"]) == 0
    printed = capsys.readouterr().out
    assert "to do 36 videos, about 432 frames at source fps -> about 3.0 MB uint8 (short side 48 px" in printed
    assert FrameCache(tmp_path / "c").index["short_side"] == 48
    assert main(args + ["--spatial"]) == 2
    assert main(args[:-1] + ["--short-side", "48"]) == 2


def test_a_flow_cache_gives_the_clips_of_flow_computed_from_decoded_frames_without_computing_flow(tmp_path,
                                                                                                   shared_video):
    from videoseq.config import config_from_dict
    from videoseq.flow import FlowEstimator, MotionInput
    from videoseq.framecache import FrameCache, cache_frames
    from videoseq.sampling import ClipSampling
    from videoseq.transforms import MotionTrainPreset

    video = str(shared_video("ucf_like_320x240.avi"))
    motion = MotionInput("flow", step=2, stack=2, short_side=40, bound=10.0)
    cache_frames([video], tmp_path / "flow", short_side=40, fps=None, motion=motion)
    cache = FrameCache(tmp_path / "flow")
    assert cache.holds_motion and cache.frames(video).shape == (164, 40, 53, 2)
    preset = MotionTrainPreset(size=32, flow_bound=10.0)
    sampling = ClipSampling(frames=4, method="dense", stride=2)
    decoded = ClipDataset([(video, 0)], clips=sampling, transform=preset, train=True, motion=motion)
    cached = ClipDataset([(video, 0)], clips=sampling, transform=preset, train=True, motion=motion, cache=cache)
    motion.estimator = None  # reading the cache must not compute flow
    for epoch in range(3):
        item = cached[(epoch, 0)]
        motion.estimator = FlowEstimator("dis_fast")
        expected = decoded[(epoch, 0)]
        motion.estimator = None
        assert item["video"].shape == (4, 4, 32, 32)
        assert torch.equal(item["video"], expected["video"]) and item["label"] == expected["label"]
    other = config_from_dict({"data": {"frames": 4, "size": 32, "stride": 2, "modality": "flow", "flow_size": 40,
                                       "flow_bound": 20.0, "flow_stack": 2}})
    with pytest.raises(CacheError, match="flow_bound: cache 10.0 vs config 20.0"):
        cache.check_fits(other.data)
