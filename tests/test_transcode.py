import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from videoseq.cli import main
from videoseq.transcode import TranscodeJob, plan_tree, resampled_indices, scaled_size, transcode_tree
from videoseq.video.decoder import VideoReader, read_frames, video_info

from conftest import REPO, brightness_frames, write_video


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def partial_names(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".part" in p.name]


def decoded(path: Path) -> np.ndarray:
    with VideoReader(path) as reader:
        return reader.read(range(len(reader)))


def moving_bar(num_frames: int = 24) -> np.ndarray:
    """96x64 frames; frame t is black with a white bar in columns 4t .. 4t+3."""
    frames = np.zeros((num_frames, 64, 96, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t, :, 4 * t:4 * t + 4] = 255
    return frames


def bar_positions(frames: np.ndarray) -> list[int]:
    """The source frame each (possibly resized) frame of ``moving_bar`` shows, from the bar's centre."""
    profile = frames.mean(axis=(1, 3))  # (T, W)
    centre = (profile * np.arange(profile.shape[1])).sum(axis=1) / profile.sum(axis=1) * 96 / profile.shape[1]
    return np.round((centre - 1.5) / 4).astype(int).tolist()


def small_tree(root: Path, videos: int = 2) -> Path:
    """Class folders of 96x64 MJPG clips at 12 fps (brightness ramps and moving bars), plus a hidden file."""
    for i in range(videos):
        frames = brightness_frames(24, 96)[:, :64] if i % 2 == 0 else moving_bar()
        write_video(root / f"c{i % 2}" / f"clip{i}.avi", frames, fps=12.0)
    (root / "c0" / ".hidden.avi").write_bytes(b"")
    return root


@pytest.mark.parametrize("frames, source_fps, fps, expected", [
    (10, 30.0, 10.0, [0, 3, 6, 9]),
    (24, 12.0, 6.0, list(range(0, 24, 2))),
    (5, 25.0, None, [0, 1, 2, 3, 4]),
    (5, 25.0, 50.0, [0, 1, 2, 3, 4]),
    (7, 25.0, 10.0, [0, 2, 5]),  # output times 0, 0.1, 0.2 s -> source frames 0, 2.5, 5
])
def test_resampled_indices(frames, source_fps, fps, expected):
    assert resampled_indices(frames, source_fps, fps).tolist() == expected


def test_scaled_size_keeps_aspect_and_makes_video_sizes_even():
    assert scaled_size(320, 240, 112, even=True) == (150, 112)
    assert scaled_size(240, 320, 112, even=True) == (112, 150)
    assert scaled_size(426, 240, 64, even=False) == (114, 64)
    assert scaled_size(426, 240, None, even=True) == (426, 240)


def test_resize_writes_the_same_tree_smaller_and_slower(tmp_path, shared_video):
    root = small_tree(tmp_path / "src")
    (root / "real").mkdir()
    (root / "real" / "pancake.mkv").symlink_to(shared_video("flipping_a_pancake.mkv"))
    (root / "real" / "phone.mov").symlink_to(shared_video("video_90.mov"))
    out = tmp_path / "out"
    assert main(["prepare", "resize", str(root), "--short-side", "32", "--fps", "6", "--out", str(out)]) == 0
    assert all_files(out) == ["c0/clip0.avi", "c1/clip1.avi", "real/pancake.mkv", "real/phone.mov"]
    info = video_info(out / "c0" / "clip0.avi")
    assert (info.width, info.height, info.num_frames, info.fps) == (48, 32, 12, 6.0)
    assert bar_positions(decoded(root / "c1" / "clip1.avi")) == list(range(24))
    assert bar_positions(decoded(out / "c1" / "clip1.avi")) == list(range(0, 24, 2))  # every other frame
    pancake = video_info(out / "real" / "pancake.mkv")
    assert (pancake.width, pancake.height, pancake.num_frames) == (56, 32, 62)  # 310 frames at 30 fps -> 6 fps
    phone = video_info(out / "real" / "phone.mov")  # upright 320x568 source: written upright, no rotation tag
    assert (phone.width, phone.height, phone.rotation) == (32, 56, 0)


def test_frames_extracts_jpeg_folders_that_read_like_the_video(tmp_path, shared_video):
    root = small_tree(tmp_path / "src")
    (root / "short.mp4").symlink_to(shared_video("short_32frames.mp4"))
    out = tmp_path / "frames"
    assert main(["prepare", "frames", str(root), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "c0" / "clip0").iterdir())[:2] == ["00001.jpg", "00002.jpg"]
    assert len(list((out / "c0" / "clip0").iterdir())) == 24
    assert np.abs(decoded(out / "c0" / "clip0").astype(int) - decoded(root / "c0" / "clip0.avi")).max() <= 4
    short = video_info(out / "short")
    assert (short.num_frames, short.width, short.height) == (32, 340, 256)
    assert main(["prepare", "frames", str(root), "--size", "64", "--out", str(tmp_path / "small")]) == 0
    assert read_frames(tmp_path / "small" / "short", [0]).shape == (1, 64, 85, 3)


def test_rerun_skips_finished_outputs_and_replaces_stale_partials(tmp_path, capsys):
    root = small_tree(tmp_path / "src", videos=4)
    job = TranscodeJob(kind="resize", short_side=32)
    reference = tmp_path / "reference"
    assert transcode_tree(root, reference, job, progress=False) == []
    out = tmp_path / "out"
    transcode_tree(root, out, job, progress=False)
    # what an interrupted run leaves: one output never started, one half written under its temporary name
    (out / "c0" / "clip0.avi").unlink()
    (out / "c1" / "clip1.avi").unlink()
    (out / "c1" / ".clip1.part.avi").write_bytes(b"half an avi")
    capsys.readouterr()
    assert transcode_tree(root, out, job, progress=False) == []
    assert "2 written, 2 already done, 0 failed" in capsys.readouterr().out
    assert partial_names(out) == []
    assert all_files(out) == all_files(reference)
    for name in all_files(out):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_frames_killed_mid_run_then_rerun_gives_the_same_outputs(tmp_path):
    root = small_tree(tmp_path / "src", videos=8)
    reference = tmp_path / "reference"
    assert main(["prepare", "frames", str(root), "--out", str(reference), "--workers", "1"]) == 0
    out = tmp_path / "out"
    command = [sys.executable, "-m", "videoseq", "prepare", "frames", str(root), "--out", str(out), "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not any(out.rglob("*.jpg")):
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the command and its worker, mid-run
        process.wait()
    finished = [p for p in out.rglob("clip*") if not p.name.startswith(".")] if out.exists() else []
    assert len(finished) < 8, "the run ended before it could be interrupted"
    assert main(["prepare", "frames", str(root), "--out", str(out), "--workers", "1"]) == 0
    assert partial_names(out) == []
    assert all_files(out) == all_files(reference)
    for name in all_files(out):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_outputs_never_leave_out(tmp_path):
    root = small_tree(tmp_path / "src")
    job = TranscodeJob(kind="frames")
    with pytest.raises(ValueError, match="must not be"):
        plan_tree(root, root, job)
    with pytest.raises(ValueError, match="must not be"):
        plan_tree(root, tmp_path, job)  # --out holding the sources
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "c0").symlink_to(elsewhere)  # a link inside --out pointing out of it
    with pytest.raises(ValueError, match="outside --out"):
        plan_tree(root, out, job)
    assert list(elsewhere.iterdir()) == []


def test_out_inside_the_source_tree_is_not_read_back_as_input(tmp_path):
    root = small_tree(tmp_path / "src")
    job = TranscodeJob(kind="resize", short_side=32)
    transcode_tree(root, root / "small", job, progress=False)
    todo, done = plan_tree(root, root / "small", job)
    assert (todo, done) == ([], 2)


def test_resize_needs_a_short_side():
    with pytest.raises(ValueError, match="--short-side"):
        TranscodeJob(kind="resize")
