"""Probing a video: which frames are decoded, and what a sound, a cut-off and a broken video report."""

import cv2
import pytest

from videoseq.video.decoder import VideoDecodeError
from videoseq.video.probe import inspect_video, probe_indices, probe_video

from conftest import brightness_frames, write_video


@pytest.mark.parametrize("frames, expected", [(10, [0, 5, 9]), (11, [0, 5, 10]), (2, [0, 1]), (1, [0])])
def test_probe_indices_spread_over_the_video_rounding_halves_up(frames, expected):
    assert probe_indices(frames).tolist() == expected  # 10 frames: 4.5 -> 5, the middle frame 10 // 2


def test_probe_indices_add_random_frames_fixed_by_the_seed():
    with_extra = probe_indices(100, seed=3)
    assert {0, 50, 99} <= set(with_extra.tolist()) and len(with_extra) <= 6
    assert with_extra.tolist() == probe_indices(100, seed=3).tolist() == sorted(set(with_extra.tolist()))
    assert all(0 <= i < 100 for i in with_extra)


def test_a_sound_clip_reports_what_it_holds(tmp_path):
    path = write_video(tmp_path / "clip.avi", brightness_frames(12), fps=12.0)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (12, 32, 32, 12.0)
    report = inspect_video(str(path))
    assert report["error"] == "" and report["frames"] == report["decoded"] == report["header_frames"] == 12


def test_a_cut_off_clip_is_reported_as_truncated(tmp_path):
    whole = write_video(tmp_path / "whole.avi", brightness_frames(12)).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    report = inspect_video(str(cut))
    assert report["error"].startswith("the file is truncated:") and report["frames"] == 0
    with pytest.raises(VideoDecodeError, match="cut.avi"):
        probe_video(cut)


def test_a_broken_image_of_a_frame_folder_is_named(tmp_path):
    folder = tmp_path / "12345"
    folder.mkdir()
    for t, frame in enumerate(brightness_frames(4), start=1):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), frame)
    (folder / "00003.jpg").write_bytes(b"not a jpeg")
    report = inspect_video(str(folder))
    assert report["error"].startswith("00003.jpg:") and report["decoded"] == 0
