"""The Predictor: a checkpoint alone classifies views, windows and clips."""

import numpy as np
import pytest

from videoseq.checkpoint import open_source
from videoseq.predict import Predictor, topk
from videoseq.sampling import multi_view_indices
from videoseq.video.decoder import read_frames

from conftest import brightness_frames, write_video


@pytest.fixture(scope="module")
def predictor(tiny_run) -> Predictor:
    return Predictor.from_checkpoint(tiny_run / "best.pt", device="cpu")


@pytest.fixture
def clip(tmp_path):
    """12 frames at 12 fps, frame t of brightness 10 + 8 t."""
    return write_video(tmp_path / "clip.avi", brightness_frames(12, 48), fps=12.0)


def test_a_video_is_the_mean_of_its_test_views_each_classified_alone(predictor, clip):
    d = predictor.config.data
    indices = multi_view_indices(12, d.frames, 3, method=d.sampling, stride=d.stride, short=d.short_video)  # (3, T)
    frames = read_frames(clip, indices.reshape(-1)).reshape(3, d.frames, 48, 48, 3)
    alone = np.stack([predictor.predict_clip(view) for view in frames])  # (3, C)
    assert np.allclose(predictor.predict_video(clip, views=3), alone.mean(0), atol=1e-6)
    assert alone.shape == (3, len(predictor.classes)) and np.allclose(alone.sum(1), 1, atol=1e-5)


def test_windows_step_through_the_video_and_the_last_one_ends_at_its_end(predictor, clip):
    # 12 frames at 12 fps, windows of 6 frames every 4: starts 0, 4 and 6 (the tail is covered)
    spans = [(start, end) for start, end, _ in predictor.predict_windows(clip, window=0.5, stride=1 / 3)]
    assert np.allclose(spans, [(0.0, 0.5), (1 / 3, 5 / 6), (0.5, 1.0)])


def test_topk_ranks_by_score():
    assert topk(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], 2) == [("b", pytest.approx(0.7)), ("c", pytest.approx(0.2))]


def test_a_config_is_not_a_trained_checkpoint(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {head: mean}\n")
    with pytest.raises(ValueError, match="is a config, not a trained checkpoint"):
        Predictor.from_source(open_source(config))
