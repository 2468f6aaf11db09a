import numpy as np
import pytest

from videoseq.sampling import (
    dense_indices,
    fit_to_length,
    multi_view_indices,
    sample_indices,
    segment_indices,
    uniform_indices,
    window_starts,
)


def tsn_centre(num_frames: int, k: int) -> list[int]:
    """Independent formula: the middle frame of each of k equal segments."""
    return [int((2 * i + 1) * num_frames // (2 * k)) for i in range(k)]


@pytest.mark.parametrize("num_frames, k", [(39, 4), (8, 8), (100, 8), (17, 3), (300, 16), (9, 2)])
def test_segment_test_indices_are_segment_centres(num_frames, k):
    assert segment_indices(num_frames, k, train=False).tolist() == tsn_centre(num_frames, k)


def test_segment_worked_example_from_docstring():
    assert segment_indices(39, 4, train=False).tolist() == [4, 14, 24, 34]


@pytest.mark.parametrize("num_frames, k", [(39, 4), (100, 8), (10, 10)])
def test_segment_train_indices_stay_inside_their_segment(num_frames, k):
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = segment_indices(num_frames, k, train=True, rng=rng)
        length = num_frames / k
        lower = np.floor(length * np.arange(k))
        upper = np.ceil(length * np.arange(1, k + 1))
        assert np.all((lower <= idx) & (idx < upper)), idx


def test_segment_train_is_random_and_seeded():
    a = segment_indices(100, 8, train=True, rng=np.random.default_rng(1))
    b = segment_indices(100, 8, train=True, rng=np.random.default_rng(1))
    c = segment_indices(100, 8, train=True, rng=np.random.default_rng(2))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


@pytest.mark.parametrize("short, expected",
                         [("loop", [0, 1, 2, 0, 1, 2, 0, 1]), ("repeat_last", [0, 1, 2, 2, 2, 2, 2, 2])])
def test_short_videos_follow_the_policy(short, expected):
    assert segment_indices(3, 8, train=True, short=short).tolist() == expected
    assert uniform_indices(3, 8, short=short).tolist() == expected


def test_dense_short_video_policy_keeps_the_stride():
    assert dense_indices(10, 8, 2, train=False, short="loop").tolist() == [0, 2, 4, 6, 8, 0, 2, 4]
    assert dense_indices(10, 8, 2, train=False, short="repeat_last").tolist() == [0, 2, 4, 6, 8, 9, 9, 9]


def test_unknown_short_policy_fails():
    with pytest.raises(ValueError, match="repeat_last"):
        fit_to_length(np.arange(4), 2, "pad")


def test_uniform_spans_first_to_last():
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_indices(5, 5).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("num_frames, n, stride", [(40, 8, 2), (15, 8, 2), (100, 16, 4), (16, 16, 1)])
def test_dense_is_centred_at_test_with_fixed_stride(num_frames, n, stride):
    idx = dense_indices(num_frames, n, stride, train=False)
    span = (n - 1) * stride + 1
    assert np.all(np.diff(idx) == stride)
    assert idx[0] == (num_frames - span) // 2 and idx[-1] < num_frames


def test_dense_train_start_is_uniform_over_valid_starts():
    rng = np.random.default_rng(0)
    starts = {int(dense_indices(20, 4, 2, train=True, rng=rng)[0]) for _ in range(300)}
    assert starts == set(range(0, 20 - 7 + 1))


def test_multi_view_one_view_equals_the_single_test_clip():
    for method in ("segment", "uniform", "dense"):
        single = sample_indices(method, 50, 8, stride=2, train=False)
        assert multi_view_indices(50, 8, 1, method=method, stride=2)[0].tolist() == single.tolist()


def test_multi_view_dense_spreads_starts_from_first_to_last():
    views = multi_view_indices(40, 8, 3, method="dense", stride=2)
    assert views.shape == (3, 8)
    assert views[:, 0].tolist() == [0, 12, 25] and views[-1, -1] == 39


def test_multi_view_segment_views_differ_and_stay_in_segments():
    views = multi_view_indices(80, 8, 4, method="segment")
    assert len({tuple(v) for v in views.tolist()}) == 4
    assert np.all(np.floor(views * 8 / 80) == np.arange(8))


@pytest.mark.parametrize("n, window, step, expected",
                         [(25, 10, 8, [0, 8, 15]), (5, 10, 3, [0]), (20, 10, 5, [0, 5, 10])])
def test_window_starts_cover_the_tail(n, window, step, expected):
    assert window_starts(n, window, step).tolist() == expected


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        segment_indices(0, 4, train=False)
    with pytest.raises(ValueError):
        dense_indices(10, 4, 0, train=False)
    with pytest.raises(ValueError, match="sampling method"):
        sample_indices("random", 10, 4, train=False)
