"""Checkpoints: atomic writes that survive SIGKILL, no unpickling of code, never a NaN inside."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from videoseq.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_payload,
    load_checkpoint,
    model_from_checkpoint,
    non_finite_keys,
    save_checkpoint,
)
from videoseq.config import load_config
from videoseq.engine.loops import NonFiniteLoss
from videoseq.engine.trainer import fit
from videoseq.outputs import remove_partial_outputs

from conftest import REPO

SAVE_FOREVER = """
import sys, torch
from videoseq.checkpoint import save_checkpoint
version = 0
while True:
    big = torch.full((8_000_000,), float(version))  # 32 MB: the write takes a while
    save_checkpoint(sys.argv[1], {"format": "videoseq-checkpoint-1", "version": version, "x": big})
    print(version, flush=True)
    version += 1
"""


def test_sigkill_while_saving_leaves_the_previous_checkpoint_whole(tmp_path):
    target = tmp_path / "last.pt"
    process = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(target)], cwd=REPO, stdout=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert process.stdout.readline().strip() == b"0"  # one checkpoint is complete
        partial = tmp_path / f".last.pt.tmp-{process.pid}"
        deadline = time.monotonic() + 120
        while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)  # in the middle of writing the next one
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    payload = load_checkpoint(target)  # complete, whichever version it is
    assert torch.equal(payload["x"], torch.full((8_000_000,), float(payload["version"])))
    assert [p.name for p in tmp_path.iterdir()] in (["last.pt"], ["last.pt", partial.name], [partial.name, "last.pt"])
    remove_partial_outputs(tmp_path)  # what the next training start does
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_partial_files_of_live_processes_and_other_files_are_kept(tmp_path):
    mine = tmp_path / f".last.pt.tmp-{os.getpid()}"
    mine.write_bytes(b"being written")
    (tmp_path / "notes.tmp-1").write_text("not a checkpoint temp file")
    assert remove_partial_outputs(tmp_path) == [] and mine.exists()


def test_a_reduce_payload_anywhere_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    model = torch.nn.Linear(2, 2)
    for name, payload in {
        "top": {"format": CHECKPOINT_FORMAT, "evil": Payload()},
        "nested": {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": {"state": {0: Payload()}}},
        "listed": {"format": CHECKPOINT_FORMAT, "history": [{"epoch": 1}, Payload()]},
    }.items():
        path = tmp_path / f"{name}.pt"
        torch.save(payload, path)
        with pytest.raises(CheckpointError, match=rf"{name}\.pt holds objects other than tensors .* refused"):
            load_checkpoint(path)
    assert not marker.exists()


def test_a_non_finite_payload_is_not_written_and_the_old_file_stays(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"format": CHECKPOINT_FORMAT, "w": torch.ones(3)})
    bad = {"format": CHECKPOINT_FORMAT, "model": {"head.fc.weight": torch.tensor([1.0, float("nan")])},
           "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("inf")])}, 1: {"step": torch.tensor(3)}}}}
    with pytest.raises(CheckpointError, match=r"model\.head\.fc\.weight', 'optimizer\.state\.0\.exp_avg'"):
        save_checkpoint(path, bad)
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def exploding_config(gestures, *extra):
    """lr = 1e30: the first step throws the weights to ~1e30, the second loss is NaN."""
    return load_config(None, [
        f"data.root={gestures / 'videos'}", "data.format=ucf101", f"data.splits_dir={gestures / 'splits'}",
        "data.frames=2", "data.size=32", "data.num_workers=0", "data.val_split=null", "model.backbone=resnet18",
        "model.stage=layer1", "model.head=mean", "train.epochs=1", "train.batch_size=9", "train.lr=1.0e+30",
        "train.warmup_epochs=0", "train.clip_grad=null", *extra,
    ])


def test_a_non_finite_loss_stops_naming_the_step_and_the_videos(gestures, tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss nan at step 2 .*videos of the batch: \['/.*\.avi'"):
        fit(exploding_config(gestures), tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_skipped_non_finite_batches_leave_finite_checkpoints(gestures, tmp_path, capsys):
    """Skipping undoes the batch's BatchNorm statistics too, which would otherwise turn infinite."""
    run = fit(exploding_config(gestures, "train.on_nonfinite=skip"), tmp_path / "run")
    printed = capsys.readouterr()
    assert (printed.out + printed.err).count("skipping the batch: non-finite loss nan") == 2  # steps 2 and 3 of 3
    payload = load_checkpoint(run / "last.pt")
    assert non_finite_keys(payload) == [] and payload["step"] == 3
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]


def test_checkpoint_of_other_classes_names_the_mismatched_keys(gestures, tmp_path):
    config = exploding_config(gestures, "train.lr=0.001")
    from videoseq.models.build import build_model_from_config

    payload = checkpoint_payload(build_model_from_config(config, 4), config, ["a", "b", "c", "d"])
    payload["classes"] = ["a", "b", "c"]  # a class list that does not fit the stored head
    mismatch = r"x\.pt does not fit .*head\.fc\.weight: checkpoint \(4, 64\) vs model \(3, 64\)"
    with pytest.raises(CheckpointError, match=mismatch):
        model_from_checkpoint(payload, Path("x.pt"))


def test_checkpoint_save_is_atomic_and_loading_refuses_pickled_code(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"format": "videoseq-checkpoint-1", "x": torch.ones(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(2))

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('ran')",))

    torch.save({"format": "videoseq-checkpoint-1", "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_mismatched_checkpoint_names_keys_and_shapes(gestures, tmp_path):
    from videoseq.checkpoint import load_weights
    from videoseq.models.build import build_model_from_config

    from conftest import tiny_config

    config = tiny_config(gestures)
    model = build_model_from_config(config, 9)
    other = build_model_from_config(config, 5)
    with pytest.raises(CheckpointError, match=r"shape mismatches \['head\..*\(9.*\(5"):
        load_weights(other, model.state_dict(), "x.pt")
