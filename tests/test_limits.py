"""The cap on decoded pixels per frame: sizes kept within it, 8K decoded smaller, the variable checked."""

import cv2
import numpy as np
import pytest

from videoseq.errors import UsageError
from videoseq.video.decoder import VideoReader
from videoseq.video.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_VARIABLE, capped_size, fit_frame, pixel_limit

from conftest import write_video


@pytest.mark.parametrize(("size", "limit"), [((7680, 4320), DEFAULT_MAX_PIXELS), ((3840, 2160), DEFAULT_MAX_PIXELS),
                                             ((4096, 2160), DEFAULT_MAX_PIXELS), ((640, 480), 100 * 100),
                                             ((480, 640), 100 * 100), ((1000, 30), 64 * 64)])
def test_capped_sizes_fit_the_limit_keep_the_aspect_and_stay_even(size, limit):
    width, height = capped_size(*size, limit)
    if size[0] * size[1] <= limit:
        assert (width, height) == size
    else:
        assert width * height <= limit and width % 2 == height % 2 == 0
        aspect = size[0] / size[1]  # kept up to the rounding of each side down to an even number
        assert abs(width / height - aspect) <= aspect * (2 / height + 2 / width + 0.01)


def test_4k_passes_whole_and_8k_comes_out_under_the_cap():
    assert capped_size(3840, 2160, DEFAULT_MAX_PIXELS) == (3840, 2160)
    assert capped_size(7680, 4320, DEFAULT_MAX_PIXELS) == (3964, 2230)


def test_the_environment_variable_sets_the_cap_and_is_checked(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_VARIABLE, raising=False)
    assert pixel_limit() == DEFAULT_MAX_PIXELS
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "10000")
    assert pixel_limit() == 10000
    for bad in ("-5", "lots", "10"):
        monkeypatch.setenv(MAX_PIXELS_VARIABLE, bad)
        with pytest.raises(UsageError, match=MAX_PIXELS_VARIABLE):
            pixel_limit()


def test_fit_frame_shrinks_only_when_needed():
    frame = np.zeros((40, 60, 3), np.uint8)
    assert fit_frame(frame, (60, 40)) is frame and fit_frame(frame, (30, 20)).shape == (20, 30, 3)


def stripes(num_frames: int, height: int, width: int) -> np.ndarray:
    """Wide vertical stripes, brighter every frame: shrinking keeps them recognisable."""
    x = np.arange(width)[None, :, None]
    frames = [np.broadcast_to(((x // (width // 8)) % 2) * 200 + 10 * t, (height, width, 3)) for t in range(num_frames)]
    return np.stack(frames).astype(np.uint8)


@pytest.mark.parametrize("plan", ["decord", "opencv"])
def test_a_video_over_the_cap_is_decoded_at_the_capped_size_on_either_path(tmp_path, plan):
    frames = stripes(3, 240, 320)
    path = write_video(tmp_path / "big.avi", frames)
    with VideoReader(path, max_pixels=160 * 120) as reader:
        assert (reader.info.width, reader.info.height) == (160, 120)
        if plan == "opencv":
            reader._source.keyframes = np.array([0])  # one keyframe: the OpenCV pass
        got = reader.read([0, 2])
    assert got.shape == (2, 120, 160, 3)
    expected = cv2.resize(frames[2], (160, 120), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(got[1].astype(int) - expected).mean() < 12  # the picture, smaller (MJPG is lossy)


def test_a_transform_runs_on_the_frames_as_they_are_read(tmp_path):
    path = write_video(tmp_path / "clip.avi", stripes(40, 64, 64))
    seen = []

    def halve(chunk: np.ndarray) -> np.ndarray:
        seen.append(len(chunk))
        return chunk[:, ::2, ::2]

    with VideoReader(path) as reader:
        whole, halved = reader.read(range(0, 40, 2)), reader.read(range(0, 40, 2), transform=halve)
    assert halved.shape == (20, 32, 32, 3) and np.array_equal(halved, whole[:, ::2, ::2])
    assert max(seen) <= 16  # READ_CHUNK frames at a time (or one at a time on the OpenCV pass)
