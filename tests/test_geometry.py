"""The eval geometry with OpenCV alone: the pixels albumentations gives, in a fraction of the time."""

import albumentations as A
import cv2
import numpy as np
import pytest

from videoseq.video.geometry import eval_crop, eval_resize, resize_short_side, short_side_shape


@pytest.mark.parametrize("height, width", [(240, 320), (720, 1280), (129, 171), (100, 90), (37, 500), (3, 7)])
def test_short_side_resize_gives_the_pixels_of_albumentations_smallest_max_size(height, width):
    frames = np.random.default_rng(height).integers(0, 256, (4, height, width, 3), dtype=np.uint8)
    for short_side in (37, 112, 128, 256):  # down and up
        expected = np.asarray(A.SmallestMaxSize(max_size=short_side)(images=frames)["images"])
        got = resize_short_side(frames, short_side)
        assert got.shape == expected.shape and min(got.shape[1:3]) == short_side
        assert np.array_equal(got, expected)
    assert resize_short_side(frames, min(height, width)) is frames  # already there: no copy


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_short_side_resize_of_motion_images_with_other_channel_counts(channels):
    images = np.random.default_rng(channels).integers(0, 256, (3, 120, 160, channels), dtype=np.uint8)
    expected = np.asarray(A.SmallestMaxSize(max_size=64)(images=images)["images"])
    assert np.array_equal(resize_short_side(images, 64), expected) and expected.shape == (3, 64, 85, channels)


def test_the_area_resize_shrinks_with_the_area_filter_and_enlarges_bilinearly():
    frames = np.random.default_rng(3).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    small = resize_short_side(frames, 73, area=True)
    assert np.array_equal(small, np.stack([cv2.resize(f, (97, 73), interpolation=cv2.INTER_AREA) for f in frames]))
    assert not np.array_equal(small, resize_short_side(frames, 73))  # bilinear aliases: other pixels
    assert np.array_equal(resize_short_side(frames, 480, area=True), resize_short_side(frames, 480))


def test_eval_crop_is_the_resize_then_the_centre_or_one_of_three_crops():
    frames = np.random.default_rng(0).integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    assert short_side_shape(240, 320, eval_resize(112)) == (128, 171)
    centre = A.Compose([A.SmallestMaxSize(max_size=128), A.CenterCrop(112, 112)])(images=frames)["images"]
    assert np.array_equal(eval_crop(frames, 112), centre)
    resized = resize_short_side(frames, 112)  # three crops: short side at the crop size, (112, 149)
    assert np.array_equal(eval_crop(frames, 112, crops=3, crop=2), resized[:, :, -112:])
    with pytest.raises(ValueError, match="1, 3"):
        eval_crop(frames, 112, crops=2)
