import numpy as np
import pytest

from videoseq.fusion import fuse_scores


def test_fusion_is_the_weighted_mean_and_can_overturn_a_stream():
    rgb = np.array([[0.6, 0.4], [0.2, 0.8]])
    flow = np.array([[0.3, 0.7], [0.1, 0.9]])
    fused = fuse_scores([rgb, flow], [1.0, 1.5])
    assert np.allclose(fused, (rgb + 1.5 * flow) / 2.5) and np.allclose(fused.sum(1), 1.0)
    assert fused.argmax(1).tolist() == [1, 1]  # the flow stream's weight overturns RGB on the first video
    assert np.allclose(fuse_scores([rgb, flow], [1.0, 0.0]), rgb)


@pytest.mark.parametrize("weights,message", [([1.0], "one weight per stream"), ([-1.0, 2.0], ">= 0"),
                                             ([0.0, 0.0], "positive sum")])
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        fuse_scores([np.ones((2, 3)), np.ones((2, 3))], weights)


def test_streams_must_score_the_same_videos():
    with pytest.raises(ValueError, match="different sets"):
        fuse_scores([np.ones((2, 3)), np.ones((3, 3))], [1.0, 1.5])
