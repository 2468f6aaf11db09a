"""Shared fixtures: tiny synthetic videos written with cv2.VideoWriter, and the real clips.

The real sample clips are looked for where ``videoseq.resources.shared_videos`` says
(``../shared/videos`` beside the checkout, or ``$VIDEOSEQ_VIDEOS``); tests that need
them skip, naming the folder and the variable, when they are absent.
"""

from __future__ import annotations

import os

# Two cores shared with DataLoader workers: one BLAS/OpenMP thread avoids spin-wait stalls.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import cv2
import numpy as np
import pytest

from videoseq.resources import VIDEOS_VARIABLE, shared_videos

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = shared_videos()


def write_video(path: Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    """Write uint8 RGB (T, H, W, 3) frames as an MJPG .avi."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), f"cannot write {path}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def brightness_frames(num_frames: int, size: int = 32) -> np.ndarray:
    """Frame t is a flat grey of brightness 10 + 8 t, so decoded frames can be identified."""
    levels = 10 + 8 * np.arange(num_frames, dtype=np.int64)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, size, size, 3)).astype(np.uint8).copy()


def shared_clip(name: str) -> Path:
    """A real sample clip; the test skips, saying where it looked, when it is absent."""
    path = SHARED_VIDEOS / name
    if not path.exists():
        pytest.skip(f"{path} not found: the real sample clips are looked for in {SHARED_VIDEOS} "
                    f"(set {VIDEOS_VARIABLE} to their folder)")
    return path


def shared_clips() -> list[Path]:
    """Every real sample clip (the folder's README left out); skips like ``shared_clip`` when there are none."""
    clips = sorted(p for p in SHARED_VIDEOS.glob("*.*") if p.suffix != ".md")
    if not clips:
        pytest.skip(f"no sample clips in {SHARED_VIDEOS} (set {VIDEOS_VARIABLE} to their folder)")
    return clips


@pytest.fixture
def shared_video():
    """``shared_clip`` as a fixture: ``shared_video("short_32frames.mp4")``."""
    return shared_clip


@pytest.fixture(scope="session")
def gestures(tmp_path_factory) -> Path:
    """A small synthetic gestures tree (UCF101 layout) shared by the session."""
    from videoseq.synth import write_gesture_dataset

    return write_gesture_dataset(tmp_path_factory.mktemp("gestures"), per_class=4, seed=1, frames=12, size=64,
                                 groups=4, test_groups=(4,))


def tiny_config(gestures: Path, *extra: str):
    """A tiny GRU run over the session's gestures (4 frames of 32 px, two epochs), with ``--set`` style extras."""
    from videoseq.config import load_config

    return load_config(None, [
        f"data.root={gestures / 'videos'}", "data.format=ucf101", f"data.splits_dir={gestures / 'splits'}",
        "data.frames=4", "data.size=32", "data.num_workers=0", "model.backbone=resnet18", "model.head=gru",
        "model.head_args={hidden: 32}", "train.batch_size=6", "train.epochs=2", "train.lr=0.003", *extra,
    ])


TINY_CONFIG = ("data:\n  format: ucf101\n  frames: 4\n  size: 32\n  num_workers: 0\n"
               "model: {backbone: resnet18, stage: layer3, head: gru, head_args: {hidden: 16}}\n"
               "train: {epochs: 2, batch_size: 8, lr: 0.01}\n")


@pytest.fixture
def gestures_config(gestures, tmp_path):
    """A tiny config file over the gestures, and the manifest it resolves to (written beside it)."""
    from videoseq.config import load_config
    from videoseq.prepare import resolve_manifest

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("format: ucf101", f"format: ucf101\n  root: {gestures / 'videos'}\n"
                                          f"  splits_dir: {gestures / 'splits'}"))
    resolve_manifest(load_config(config).data, tmp_path / "data")
    return config, tmp_path / "data" / "manifest.csv"


@pytest.fixture(scope="session")
def tiny_run(gestures, tmp_path_factory) -> Path:
    """A tiny model trained through the CLI on the synthetic gestures (seconds on CPU)."""
    from videoseq.cli import main

    config = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    config.write_text(
        "data: {format: ucf101, frames: 4, size: 32, num_workers: 0}\n"
        "model: {backbone: resnet18, head: gru, head_args: {hidden: 16}}\n"
        "train: {epochs: 1, batch_size: 8}\n"
    )
    run = tmp_path_factory.mktemp("run")
    code = main(["train", str(config), "--out", str(run), "--set", f"data.root={gestures / 'videos'}",
                 "--set", f"data.splits_dir={gestures / 'splits'}"])
    assert code == 0
    return run


def informative_model(head: str, head_args: dict, *, frames: int, size: int, num_classes: int = 3,
                      backbone: str = "mobilenet_v3_small", stage: str | None = None):
    """A random model whose BatchNorm statistics come from data (eval mode).

    A fresh random model answers nearly the same logits for every clip, which would
    make equality and export checks vacuous; this one's logits depend on the input.
    """
    import torch

    from videoseq.models import build_model
    from videoseq.models.backbones import reset_batchnorm_momentum

    torch.manual_seed(0)
    model = build_model(backbone=backbone, head=head, num_classes=num_classes, stage=stage, head_args=head_args)
    reset_batchnorm_momentum(model, None)  # cumulative averages: two batches set the statistics
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, frames, 3, size, size))
    return model.eval()


def motion_model(modality: str, shift: str | None, *, stack: int = 1, frames: int = 4, size: int = 64,
                 num_classes: int = 3):
    """A mobilenet + GRU model of ``modality`` inputs (flow size 72 px) with temporal ``shift``, BatchNorm
    statistics from data (eval mode); returns ``(model, config)``."""
    import torch

    from videoseq.config import config_from_dict
    from videoseq.models.backbones import reset_batchnorm_momentum
    from videoseq.models.build import build_model_from_config

    config = config_from_dict({
        "data": {"frames": frames, "size": size, "sampling": "dense", "stride": 2, "modality": modality,
                 "flow_stack": stack, "flow_size": 72},
        "model": {"backbone": "mobilenet_v3_small", "head": "gru", "head_args": {"hidden": 16},
                  "temporal_shift": shift, "shift_fraction": 0.25}})
    torch.manual_seed(0)
    model = build_model_from_config(config, num_classes, pretrained=False)
    reset_batchnorm_momentum(model, None)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, frames, config.data.input_channels(), size, size))
    return model.eval(), config
