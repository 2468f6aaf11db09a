import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_flow import texture

from videoseq.camera_motion import (
    CAMERA_CLASSES,
    camera_path,
    read_source,
    render_clip,
    source_clips,
    window_flow,
    write_camera_motion_clips,
    write_split_manifest,
)
from videoseq.flow import FlowEstimator
from videoseq.manifest import read_manifest


def field_statistics(flow: np.ndarray) -> tuple[float, float, float, float]:
    """Mean x, mean y, divergence and curl (image coordinates, y down) of a flow field ``(H, W, 2)``."""
    du_dy, du_dx = np.gradient(flow[..., 0])
    dv_dy, dv_dx = np.gradient(flow[..., 1])
    return flow[..., 0].mean(), flow[..., 1].mean(), (du_dx + dv_dy).mean(), (dv_dx - du_dy).mean()


@pytest.mark.parametrize("label", CAMERA_CLASSES)
def test_paths_stay_inside_the_source_and_move_as_named(label):
    rng = np.random.default_rng(3)
    path = camera_path(label, rng, frames=20, size=64, source_hw=(240, 320))
    corners = path.corners(64)  # (T, 4, 2) in source pixels
    assert corners[..., 0].min() >= 0 and corners[..., 0].max() <= 319
    assert corners[..., 1].min() >= 0 and corners[..., 1].max() <= 239
    mx, my, div, curl = field_statistics(window_flow(path, 5, 7, 64))
    expected = {  # what the content does when the camera does `label`
        "PanLeft": mx > 0.5, "PanRight": mx < -0.5, "TiltUp": my > 0.5, "TiltDown": my < -0.5,
        "ZoomIn": div > 0.02, "ZoomOut": div < -0.02,
        "RotateClockwise": curl < -0.02, "RotateCounterClockwise": curl > 0.02,  # content turns the other way
        "Static": max(abs(mx), abs(my), abs(div), abs(curl)) < 1e-6,
    }
    assert expected[label]


@pytest.mark.parametrize("label", ["PanRight", "ZoomIn", "RotateClockwise"])
def test_rendered_clips_carry_the_window_flow(label):
    still = np.repeat(texture(size=200, seed=4)[None], 3, axis=0)  # a still scene: only the window moves
    path = camera_path(label, np.random.default_rng(0), frames=3, size=64, source_hw=(200, 200))
    clip = render_clip(still, path, 64)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]
    measured = FlowEstimator("dis_fast")(grey[0], grey[2])[8:-8, 8:-8]
    truth = window_flow(path, 0, 2, 64)[8:-8, 8:-8]
    assert np.linalg.norm(measured - truth, axis=-1).mean() < 0.3


def test_real_sources_give_clips_of_every_class(shared_video):
    frames, fps = read_source(shared_video("ucf_like_320x240.avi"))
    assert frames.shape[1] == 240 and fps == pytest.approx(25.0)
    clips = source_clips(frames, fps, per_class=1, frames=8, size=48, seed=0)
    assert [label for label, _ in clips] == list(CAMERA_CLASSES)
    assert all(clip.shape == (8, 48, 48, 3) and clip.dtype == np.uint8 for _, clip in clips)


def test_manifest_is_split_by_source(shared_video, tmp_path):
    sources = [shared_video("ucf_like_320x240.avi"), shared_video("short_32frames.mp4")]
    clips = write_camera_motion_clips(tmp_path / "clips", sources, per_class=2, frames=6, size=32, progress=False)
    manifest_csv = write_split_manifest(tmp_path / "split", tmp_path / "clips", clips, ["short_32frames"],
                                        val_every=2)
    manifest = read_manifest(manifest_csv)
    assert manifest.classes == list(CAMERA_CLASSES)
    with open(manifest_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows if r["group"] == "short_32frames"} == {"test"}
    assert {r["split"] for r in rows if r["group"] == "ucf_like_320x240"} == {"train", "val"}
    assert len(manifest.videos("test")) == len(manifest.videos("train")) + len(manifest.videos("val")) == 18
    with pytest.raises(ValueError, match="not among the written sources"):
        write_split_manifest(tmp_path / "bad", tmp_path / "clips", clips, ["vtest"])


def test_synth_camera_motion_command_writes_a_manifest(shared_video, tmp_path, capsys):
    from videoseq.cli import main

    sources = [str(shared_video("ucf_like_320x240.avi")), str(shared_video("short_32frames.mp4"))]
    code = main(["synth", "camera-motion", str(tmp_path / "cam"), *sources, "--test-sources", "ucf_like_320x240",
                 "--per-class", "1", "--frames", "6", "--size", "32", "--val-every", "0"])
    assert code == 0 and "manifest.csv" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "cam" / "manifest.csv")
    assert manifest.splits() == {"train": 9, "test": 9}
    assert all(Path(path).is_file() for path, _ in manifest.videos("test"))
