"""``predict --stream --show`` in a real window on a virtual X display (Debian's xvfb)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, write_video

pytestmark = pytest.mark.slow


@pytest.fixture
def display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    name = f":{90 + os.getpid() % 9}"
    server = subprocess.Popen(["Xvfb", name, "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    if server.poll() is not None:
        pytest.skip(f"Xvfb could not start display {name}")
    yield name
    server.terminate()
    server.wait(timeout=10)


def green_text_pixels(image: np.ndarray) -> int:
    """Pixels of the top-1 label, drawn in pure green."""
    r, g, b = image[..., 0].astype(int), image[..., 1].astype(int), image[..., 2].astype(int)
    return int(((g > 200) & (r < 80) & (b < 80)).sum())


def test_show_draws_labels_scores_and_fps_in_a_real_window_and_ctrl_c_ends_it(display, tiny_run, tmp_path):
    from PIL import ImageGrab

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(40, 200, (60, 1, 1, 3), dtype=np.uint8), 3, axis=0)  # 180 frames
    video = write_video(tmp_path / "long.avi", np.broadcast_to(frames, (180, 240, 320, 3)).copy(), fps=25)
    env = {**os.environ, "DISPLAY": display, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "videoseq", "predict", str(tiny_run / "best.pt"), str(video), "--stream",
               "--show", "--csv", str(tmp_path / "live.csv")]
    # loop the file until the screenshot is taken: one run of 180 frames may end before the window is grabbed
    shot, deadline = None, time.time() + 120
    while shot is None and time.time() < deadline:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while process.poll() is None and time.time() < deadline:
            image = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))
            if green_text_pixels(image) > 20:
                shot = image
                break
            time.sleep(0.2)
        if shot is not None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = process.communicate(timeout=60)
    assert shot is not None, f"no window with labels appeared on {display}: {err}"
    from PIL import Image

    Image.fromarray(shot).save(tmp_path / "screenshot.png")
    colours = frames[:, 0, 0].astype(int)  # (60, 3): the flat colours of the video
    near = np.abs(shot[:, :, None, :].astype(int) - colours[None, None]).max(-1).min(-1) <= 12  # (H, W)
    assert near.sum() > 0.6 * 320 * 240  # the video frame is shown (the window holds one 320x240 frame)
    assert (shot[400:, 500:] == 0).all()  # the rest of the virtual screen stays black
    if process.returncode == 130:  # interrupted while running: the summary and the flushed CSV are there
        assert "interrupted" in out and (tmp_path / "live.csv").read_text().startswith("kind,time_s")
    else:
        assert process.returncode == 0, err
