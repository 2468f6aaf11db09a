"""Exact resume: a run stopped at step k and resumed ends bit for bit where an uninterrupted run ends.

Runs stop at step k through ``train.stop_after_steps`` (the same save-and-stop path a
SIGINT/SIGTERM takes) or through a real SIGTERM to a ``videoseq train`` process. The
runs use dropout (GRU head), random crops/flips/jitter, an EMA of the weights and
AdamW with a warmup + cosine schedule, so every piece of state has to come back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from videoseq.checkpoint import load_checkpoint
from videoseq.config import ConfigError, load_config
from videoseq.datasets import epoch_order
from videoseq.engine.trainer import fit
from videoseq.errors import UsageError
from videoseq.resume import config_differences, rng_state, set_rng_state

from conftest import REPO

STEPS_PER_EPOCH = 9  # 9 training videos, batch size 1
SETTINGS = [
    "data.format=ucf101", "data.frames=4", "data.size=32", "data.num_workers=0", "data.val_split=null",
    "model.backbone=resnet18", "model.stage=layer1", "model.head=gru", "model.head_args={hidden: 8}",
    "train.epochs=2", "train.batch_size=1", "train.lr=0.003", "train.ema=0.9", "train.warmup_epochs=0.5",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> list[str]:
    """9 training clips (one per class) as config overrides."""
    from videoseq.synth import write_gesture_dataset

    root = write_gesture_dataset(tmp_path_factory.mktemp("tiny"), per_class=2, seed=3, frames=8, size=32, groups=2,
                                 test_groups=(2,))
    return [f"data.root={root / 'videos'}", f"data.splits_dir={root / 'splits'}"]


def tiny_config(tiny_data, *extra):
    return load_config(None, SETTINGS + tiny_data + list(extra))


@pytest.fixture(scope="module")
def straight(tiny_data, tmp_path_factory) -> dict:
    """The last.pt of an uninterrupted run of 2 epochs x 9 steps."""
    run = fit(tiny_config(tiny_data), tmp_path_factory.mktemp("straight"))
    return load_checkpoint(run / "last.pt")


def assert_same_training_state(a: dict, b: dict) -> None:
    """torch.equal on every weight (raw and EMA), optimizer state, and the same schedule, RNGs and history."""
    for weights in ("model", "train_model"):
        assert a[weights].keys() == b[weights].keys()
        for key in a[weights]:
            assert torch.equal(a[weights][key], b[weights][key]), f"{weights}.{key}"
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys() and len(state_a) > 0
    for index in state_a:
        for name, value in state_a[index].items():
            assert torch.equal(value, state_b[index][name]), f"optimizer state {index}.{name}"
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["scheduler"] == b["scheduler"] and a["scaler"] == b["scaler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["rng"]["python"] == b["rng"]["python"]
    assert torch.equal(a["rng"]["numpy"]["key"], b["rng"]["numpy"]["key"])
    without_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert without_time(a["progress"]["history"]) == without_time(b["progress"]["history"])
    assert (a["epoch"], a["step"], a["batch_in_epoch"]) == (b["epoch"], b["step"], b["batch_in_epoch"])


@pytest.mark.parametrize("k, workers", [
    (5, 0),  # mid-epoch
    (9, 2),  # at the epoch boundary
    pytest.param(13, 2, marks=pytest.mark.slow),  # mid-epoch, with workers
    pytest.param(9, 0, marks=pytest.mark.slow),  # at the boundary, in the main process
])
def test_stopped_and_resumed_run_equals_the_uninterrupted_one(tiny_data, straight, tmp_path, k, workers):
    run = tmp_path / "run"
    fit(tiny_config(tiny_data, f"data.num_workers={workers}", f"train.stop_after_steps={k}"), run)
    stopped = load_checkpoint(run / "last.pt")
    assert stopped["step"] == k and stopped["batch_in_epoch"] == k % STEPS_PER_EPOCH
    assert stopped["epoch"] == k // STEPS_PER_EPOCH
    fit(tiny_config(tiny_data, f"data.num_workers={workers}"), run, resume=True)
    assert_same_training_state(load_checkpoint(run / "last.pt"), straight)


def test_resume_refuses_a_config_that_changes_the_numbers(tiny_data, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_data, "train.stop_after_steps=2"), run)
    with pytest.raises(ValueError, match=r"train\.lr: 0\.003 -> 0\.01"):
        fit(tiny_config(tiny_data, "train.lr=0.01"), run, resume=True)
    with pytest.raises(UsageError, match="no last.pt"):
        fit(tiny_config(tiny_data), tmp_path / "empty", resume=True)


def test_config_differences_name_nested_keys():
    saved = {"train": {"lr": 0.1, "epochs": 2}, "model": {"head_args": {"hidden": 8}}}
    assert config_differences(saved, {"train": {"lr": 0.2, "epochs": 2}, "model": {"head_args": {"hidden": 9}}}) == [
        "model.head_args", "train.lr"]


def test_rng_state_round_trips_every_generator():
    state = rng_state()
    first = (np.random.rand(3).tolist(), torch.rand(3), __import__("random").random())
    np.random.rand(5), torch.rand(5)
    set_rng_state(state)
    again = (np.random.rand(3).tolist(), torch.rand(3), __import__("random").random())
    assert first[0] == again[0] and torch.equal(first[1], again[1]) and first[2] == again[2]


def test_epoch_order_is_a_fixed_permutation_per_seed_and_epoch():
    assert sorted(epoch_order(10, shuffle=True, seed=1, epoch=0)) == list(range(10))
    assert epoch_order(10, shuffle=True, seed=1, epoch=0) == epoch_order(10, shuffle=True, seed=1, epoch=0)
    assert epoch_order(10, shuffle=True, seed=1, epoch=0) != epoch_order(10, shuffle=True, seed=1, epoch=1)
    assert epoch_order(4, shuffle=False, seed=1, epoch=3) == [0, 1, 2, 3]


@pytest.mark.parametrize("override, key", [("train.ema=1.0", "train.ema"), ("train.ema=-0.1", "train.ema"),
                                           ("train.on_nonfinite=ignore", "train.on_nonfinite"),
                                           ("train.stop_after_steps=0", "train.stop_after_steps")])
def test_new_train_keys_are_validated(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def wait_for_epoch_2_step(process: subprocess.Popen, steps: range) -> int:
    """Read the child's progress bars until the latest count of epoch 2 is in ``steps``."""
    pattern, seen = re.compile(r"epoch 2/2 train:[^\r\n]*? (\d)/9 "), ""
    while process.poll() is None:
        seen += os.read(process.stderr.fileno(), 65536).decode(errors="replace")
        counts = [int(c) for c in pattern.findall(seen)]
        if counts and counts[-1] in steps:
            return counts[-1]
        if counts and counts[-1] > steps.stop:
            break
    pytest.fail(f"missed steps {list(steps)} of epoch 2 (status {process.returncode}): {seen[-1500:]}")


def test_sigterm_mid_epoch_saves_a_checkpoint_that_resumes_exactly(tiny_data, straight, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("")
    run = tmp_path / "run"
    args = ["--set=" + s for s in SETTINGS + tiny_data]
    every_step = {"TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}  # a progress line after each step
    process = subprocess.Popen([sys.executable, "-m", "videoseq", "train", str(config), "--out", str(run), *args],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **every_step},
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        # a step of epoch 2 is done and at least two remain: the stop lands inside the epoch
        wait_for_epoch_2_step(process, range(1, 7))
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read().decode(errors="replace")
        assert process.wait(timeout=120) == 143, rest[-2000:]
    finally:
        process.kill()
    assert "stopped by SIGTERM" in rest and f"--resume {run}" in rest
    stopped = load_checkpoint(run / "last.pt")
    assert stopped["epoch"] == 1 and 0 < stopped["batch_in_epoch"] < STEPS_PER_EPOCH
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    fit(tiny_config(tiny_data), run, resume=True)
    assert_same_training_state(load_checkpoint(run / "last.pt"), straight)
