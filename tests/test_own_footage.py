"""The README's own-footage command, exactly as written, on a tiny folder of class folders of real clips."""

import re
import shlex

import cv2
import pytest
import yaml

from videoseq.checkpoint import load_checkpoint
from videoseq.cli import main
from videoseq.tables import read_csv

from conftest import REPO, shared_clip

SOURCES = {"Street": "vtest.avi", "Cartoon": "Megamind.avi", "Table": "box.mp4"}  # one real source per class
CLIPS_PER_CLASS, CLIP_FRAMES = 8, 16  # 8: the 15% val and test splits hold out 1 in 7


def readme_command(start: str) -> str:
    """The README's command line that starts with ``start``."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"the README has {len(lines)} lines starting with {start!r}"
    return lines[0]


def cut_clips(source, out_dir, count: int, frames: int) -> None:
    """``count`` clips of ``frames`` frames from evenly spaced places in ``source``, 160x120 MJPG AVIs."""
    capture = cv2.VideoCapture(str(source))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    out_dir.mkdir(parents=True)
    for k in range(count):
        capture.set(cv2.CAP_PROP_POS_FRAMES, k * (total - frames) // count)
        writer = cv2.VideoWriter(str(out_dir / f"{source.stem}_{k:02d}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 12.0,
                                 (160, 120))
        for _ in range(frames):
            ok, frame = capture.read()
            assert ok, f"{source}: no frame to cut"
            writer.write(cv2.resize(frame, (160, 120), interpolation=cv2.INTER_AREA))
        writer.release()
    capture.release()


@pytest.fixture
def my_videos(tmp_path):
    """``tmp_path/my_videos/<Class>/*.avi``: short clips cut from the real sample videos."""
    root = tmp_path / "my_videos"
    for label, name in SOURCES.items():
        cut_clips(shared_clip(name), root / label, CLIPS_PER_CLASS, CLIP_FRAMES)
    return root


@pytest.mark.slow
def test_the_readme_own_footage_command_trains_on_a_folder_of_real_clips(my_videos, tmp_path, monkeypatch, capsys):
    command = readme_command("videoseq train configs/own_footage.yaml")
    assert "data/my_videos" in command and "runs/mine" in command
    argv = shlex.split(command.replace("data/my_videos", str(my_videos)).replace("runs/mine", str(tmp_path / "run")))
    monkeypatch.chdir(REPO)  # the README's paths are relative to the checkout
    assert main(argv[1:]) == 0
    out, run = capsys.readouterr(), tmp_path / "run"
    splits = {r["split"] for r in read_csv(run / "manifest.csv")[1]}
    assert splits == {"train", "val", "test"}
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["val_split"] == "val"
    assert re.search(r"best.pt is chosen on: val video accuracy \(\d+ videos\)", out.out)
    assert "WARNING" not in out.err and "flip_swap" not in out.out
    rows = read_csv(run / "metrics.csv")[1]
    assert rows and all(r["val_video_acc"] for r in rows)
    best = load_checkpoint(run / "best.pt")
    assert best["classes"] == sorted(SOURCES) and best["metrics"]["val_video_acc"] == max(
        float(r["val_video_acc"]) for r in rows)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])  # it trains
    assert f"videoseq eval {run / 'best.pt'} --split test" in out.out and list((run / "tensorboard").iterdir())


def test_the_gesture_flip_swap_on_other_classes_is_ignored_once(my_videos, tmp_path, capsys):
    from videoseq.config import load_config
    from videoseq.engine.trainer import build_datasets
    from videoseq.prepare import resolve_manifest

    config = load_config(REPO / "configs" / "gestures.yaml", ["data.manifest=null", f"data.root={my_videos}",
                                                               "data.format=folder"])
    build_datasets(config, resolve_manifest(config.data))
    out = capsys.readouterr().out
    assert out.count("data.flip_swap: ignoring") == 1 and "MoveLeft: MoveRight" in out
