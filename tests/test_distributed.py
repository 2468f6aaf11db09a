"""Distributed training under torchrun (gloo, CPU), and the pieces it is built from."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videoseq import distributed
from videoseq.checkpoint import load_checkpoint, model_from_checkpoint
from videoseq.datasets import LoaderOptions, make_loader
from videoseq.engine.loops import evaluate, gather_clips
from videoseq.engine.trainer import build_datasets
from videoseq.errors import UsageError
from videoseq.prepare import resolve_manifest

REPO = Path(__file__).resolve().parents[1]


def test_world_from_env_reads_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.world_from_env() == distributed.World(rank=3, size=4, local_rank=1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(UsageError, match="RANK=4 does not fit WORLD_SIZE=4"):
        distributed.world_from_env()


def test_single_process_helpers_are_no_ops():
    model = torch.nn.Linear(3, 2)
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.wrap_model(model, torch.device("cpu"), sync_bn=True) is model
    assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.mean_over_ranks({"loss": 2.0}) == {"loss": 2.0}
    logits = np.ones((2, 3))
    assert gather_clips(logits, np.zeros(2), np.zeros(2), np.arange(2))[0] is logits


def test_weights_digest_changes_with_any_parameter_or_buffer():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    before = distributed.weights_digest(model)
    assert distributed.weights_digest(model) == before
    model[1].num_batches_tracked += 1
    assert distributed.weights_digest(model) != before


@pytest.mark.slow
def test_two_gloo_ranks_under_torchrun_train_in_sync_and_evaluate_like_one_process(gestures, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"data: {{format: ucf101, root: {gestures / 'videos'}, splits_dir: {gestures / 'splits'}, frames: 4, "
        "size: 32, num_workers: 0, test_views: 3}\n"  # 9 videos x 3 views: shards of 14 and 13 clips
        "model: {backbone: resnet18, head: gru, head_args: {hidden: 16}}\n"
        "train: {epochs: 2, batch_size: 4, device: cpu}\n"
    )
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "videoseq", "train", str(config), "--out", str(run)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch=2 ") == 1  # rank 0 alone prints

    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and ranks["backend"] == "gloo"
    payload = load_checkpoint(run / "last.pt")
    model, config_back = model_from_checkpoint(payload)
    assert ranks["weights_sha256"] == [distributed.weights_digest(model)] * 2

    # the gathered evaluation of the run equals one process evaluating the saved weights
    with open(run / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    _, val_set = build_datasets(config_back, resolve_manifest(config_back.data))
    single = evaluate(model, make_loader(val_set, LoaderOptions(batch_size=4, num_workers=0), shuffle=False),
                      device=torch.device("cpu"))
    assert len(single["labels"]) == 27
    assert float(last["val_loss"]) == pytest.approx(single["loss"], rel=1e-5)
    assert float(last["val_clip_acc"]) == pytest.approx(single["clip"]["top1"])
    assert float(last["val_video_acc"]) == pytest.approx(single["video_metrics"]["top1"])
    assert float(last["val_top5"]) == pytest.approx(single["video_metrics"]["top5"])


def test_a_barrier_in_a_single_process_returns_at_once():
    distributed.barrier()
    assert not distributed.is_distributed()
