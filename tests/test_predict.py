"""Predictions from a checkpoint alone: views, windows, sources, rows and their CSV."""

import numpy as np
import pytest

from videoseq.checkpoint import open_source
from videoseq.predict import Predictor, expand_sources, predict_to_csv, prediction_rows, topk
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


def test_a_broken_file_gets_an_error_row_and_the_others_are_predicted(predictor, clip, tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"")
    table = prediction_rows(predictor, [str(clip), str(broken)], k=2)
    assert table.header == ["path", "label_1", "score_1", "label_2", "score_2", "error"]
    good, bad = table.rows
    assert good[0] == str(clip) and good[1] in predictor.classes and good[2] >= good[4] and good[-1] == ""
    assert bad[:-1] == [str(broken), "", "", "", ""] and "broken.avi" in bad[-1] and "empty" in bad[-1]
    assert table.failures == 1


def test_sources_expand_folders_recursively_and_globs_and_keep_what_matches_nothing(tmp_path):
    for name in ("b/x.avi", "a/y.mp4", "a/deep/z.mkv", "a/.hidden.avi", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = expand_sources([str(tmp_path), str(tmp_path / "b" / "*.avi"), "missing.avi"])
    assert found == [str(tmp_path / "a" / "deep" / "z.mkv"), str(tmp_path / "a" / "y.mp4"),
                     str(tmp_path / "b" / "x.avi"), str(tmp_path / "b" / "x.avi"), "missing.avi"]


def test_topk_ranks_by_score():
    assert topk(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], 2) == [("b", pytest.approx(0.7)), ("c", pytest.approx(0.2))]


def test_without_a_csv_the_table_goes_to_stdout(tiny_run, clip, capsys):
    assert predict_to_csv(tiny_run / "best.pt", [str(clip)], None, k=1, device="cpu") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "path,label_1,score_1,error" and lines[1].startswith(f"{clip},")


def test_a_config_is_not_a_trained_checkpoint(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {head: mean}\n")
    with pytest.raises(ValueError, match="is a config, not a trained checkpoint"):
        Predictor.from_source(open_source(config))
