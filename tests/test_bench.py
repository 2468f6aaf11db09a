"""The benchmark peers read the same frames as the decode-only ceiling; the r3d_18 peer takes our clips."""

import numpy as np
import torch

from videoseq.bench import R3D18, decode_ceiling, opencv_decode_all, pyav_decode_all, race


def test_peer_loaders_read_the_frames_of_the_ceiling(shared_video):
    path = str(shared_video("ucf_like_320x240.avi"))
    indices = np.array([3, 40, 41, 120, 163])
    ceiling = decode_ceiling(path, indices)
    assert ceiling.shape == (5, 240, 320, 3)
    assert np.array_equal(opencv_decode_all(path, indices), ceiling)
    # PyAV converts to RGB with its own swscale settings: the same frames, a few levels apart
    assert np.abs(pyav_decode_all(path, indices).astype(int) - ceiling).mean() < 3


def test_race_times_every_reader_and_r3d_takes_our_clip_layout():
    calls = {"a": 0, "b": 0}
    rates = race({"a": lambda: calls.__setitem__("a", calls["a"] + 1),
                  "b": lambda: calls.__setitem__("b", calls["b"] + 1)}, clips=3)
    assert calls == {"a": 4, "b": 4} and all(r > 0 for r in rates.values())
    assert R3D18(5)(torch.zeros(2, 4, 3, 32, 32)).shape == (2, 5)
