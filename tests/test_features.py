"""The feature cache: resumable extraction that gives the same features, and head-only training from it."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from videoseq.checkpoint import load_checkpoint, model_from_checkpoint
from videoseq.config import load_config
from videoseq.engine.trainer import fit
from videoseq.features import FeatureCache, FeatureCacheError, extract_features

from conftest import REPO


def cached(folder):
    cache = FeatureCache(folder)
    return {path: np.array(cache.frames(path)) for path in cache.index["videos"]}


def test_interrupted_extraction_rerun_gives_identical_features(gestures_config, tmp_path):
    config, manifest = gestures_config
    whole = extract_features(config, manifest, tmp_path / "whole", fps=6, shard_videos=5)
    assert len(whole["videos"]) == 36 and whole["feature_shape"] == [256]
    # first run stops after 7 videos (one whole shard of 5 and one of 2), and a shard
    # half-written when a run was killed lies beside them
    part = extract_features(config, manifest, tmp_path / "part", fps=6, shard_videos=5, max_videos=7)
    assert len(part["videos"]) == 7 and len(part["shards"]) == 2
    (tmp_path / "part" / "shard_00002.npy.tmp").write_bytes(b"\x93NUMPY half a shard")
    resumed = extract_features(config, manifest, tmp_path / "part", fps=6, shard_videos=5)
    assert len(resumed["videos"]) == 36
    a, b = cached(tmp_path / "whole"), cached(tmp_path / "part")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a) and all(a[k].dtype == np.float16 for k in a)
    first = next(iter(whole["videos"].values()))
    assert first["frames"] == 6 and first["source_frames"] == 12  # 12 frames at 12 fps -> 6 at 6 fps


def test_a_cache_made_with_other_settings_is_not_resumed(gestures_config, tmp_path):
    config, manifest = gestures_config
    extract_features(config, manifest, tmp_path / "c", fps=6, max_videos=1)
    with pytest.raises(FeatureCacheError, match="fps: cache 6 vs now 4"):
        extract_features(config, manifest, tmp_path / "c", fps=4)


def test_spatial_maps_average_to_the_pooled_features(gestures_config, tmp_path):
    config, manifest = gestures_config
    index = extract_features(config, manifest, tmp_path / "s", fps=3, spatial=True, max_videos=2)
    assert index["map_shape"] == [256, 2, 2]  # layer3 of a 32 px frame: stride 16
    cache = FeatureCache(tmp_path / "s")
    path = next(iter(index["videos"]))
    maps, pooled = cache.frames(path, spatial=True), cache.frames(path)
    assert maps.shape == (3, 256, 2, 2)
    assert np.allclose(maps.astype(np.float32).mean(axis=(2, 3)), pooled, atol=2e-2)


def test_train_on_the_cache_trains_the_head_only_and_the_checkpoint_runs_on_videos(gestures_config, tmp_path):
    config, manifest = gestures_config
    extract_features(config, manifest, tmp_path / "f", fps=12)
    cfg = load_config(config, [f"data.features={tmp_path / 'f'}"])
    run = fit(cfg, tmp_path / "run")
    payload = load_checkpoint(run / "last.pt")
    backbone = torch.load(tmp_path / "f" / "backbone.pt", weights_only=True)["backbone"]
    assert all(torch.equal(payload["model"][f"backbone.{k}"], v) for k, v in backbone.items())
    lines = (run / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and json.loads((tmp_path / "f" / "index.json").read_text())["fps"] == 12
    # the whole model (backbone + trained head) classifies decoded videos
    model, _ = model_from_checkpoint(payload)
    clips = torch.randn(2, 4, 3, 32, 32)
    assert model(clips).shape == (2, 9)


def test_a_cache_of_another_backbone_or_without_maps_is_refused(gestures_config, tmp_path):
    config, manifest = gestures_config
    extract_features(config, manifest, tmp_path / "f", fps=3, max_videos=1)
    with pytest.raises(FeatureCacheError, match="layer3 features but the config asks for .*stage=layer4"):
        fit(load_config(config, [f"data.features={tmp_path / 'f'}", "model.stage=layer4"]), tmp_path / "r1")
    with pytest.raises(FeatureCacheError, match="--spatial"):
        fit(load_config(config, [f"data.features={tmp_path / 'f'}", "model.head=convlstm", "model.head_args={}"]),
            tmp_path / "r2")
    with pytest.raises(FeatureCacheError, match="no index.json"):
        fit(load_config(config, [f"data.features={tmp_path / 'nothing'}"]), tmp_path / "r3")


def features_command(config, manifest, out, *extra) -> list[str]:
    return [sys.executable, "-m", "videoseq", "features", str(config), "--manifest", str(manifest), "--out", str(out),
            "--fps", "6", "--shard-videos", "5", "--workers", "1", *extra]


ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def build(config, manifest, out) -> None:
    assert subprocess.run(features_command(config, manifest, out), env=ENV, capture_output=True,
                          timeout=600).returncode == 0


def same_cache(a, b) -> bool:
    """The same index (but for the folder's own name) and shard files of the same bytes."""
    index_a, index_b = (json.loads((folder / "index.json").read_text()) for folder in (a, b))
    shards = sorted(p.name for p in a.glob("*_*.npy"))
    return index_a == index_b and shards == sorted(p.name for p in b.glob("*_*.npy")) and all(
        (a / name).read_bytes() == (b / name).read_bytes() for name in shards)


@pytest.mark.slow
def test_a_killed_extraction_goes_on_from_its_journal_to_the_same_cache(gestures_config, tmp_path):
    config, manifest = gestures_config
    build(config, manifest, tmp_path / "whole")
    killed = subprocess.Popen(features_command(config, manifest, tmp_path / "killed"), env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = tmp_path / "killed" / "journal-0.jsonl"
    deadline = time.monotonic() + 300
    while (not journal.exists() or journal.read_bytes().count(b"\n") < 8) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "index.json").exists()  # nothing but the journal yet
    done = subprocess.run(features_command(config, manifest, tmp_path / "killed"), env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and "36 of 36 videos in the feature cache" in done.stdout
    assert same_cache(tmp_path / "whole", tmp_path / "killed") and not journal.exists()


@pytest.mark.slow
def test_two_gloo_ranks_build_the_cache_one_process_builds(gestures_config, tmp_path):
    config, manifest = gestures_config
    build(config, manifest, tmp_path / "one")
    ranks = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    done = subprocess.run(ranks + features_command(config, manifest, tmp_path / "two")[2:], env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_cache(tmp_path / "one", tmp_path / "two")
    assert done.stdout.count("36 of 36 videos in the feature cache") == 1  # rank 0 alone reports
