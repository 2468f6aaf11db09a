"""``videoseq compare`` on two hand-made evaluations whose differences are counted by hand."""

import pytest

from videoseq.cli import main
from videoseq.compare import compare_evals
from videoseq.errors import InputError
from videoseq.tables import write_csv

HEADER = ["path", "label", "view", "label_1", "score_1", "label_2", "score_2"]


def write_eval(folder, predicted: dict[str, str]):
    """An eval folder: four videos, true labels a, a, b, b; ``predicted`` maps each to its top class."""
    truth = {"v1.avi": "a", "v2.avi": "a", "v3.avi": "b", "v4.avi": "b"}
    rows = [[path, truth[path], "video", top, 0.9, "b" if top == "a" else "a", 0.1] for path, top in predicted.items()]
    write_csv(folder / "predictions.csv", HEADER, rows)
    (folder / "classes.txt").write_text("a\nb\n")
    return folder


def test_compare_counts_the_differences_the_recall_changes_and_the_discordant_videos(tmp_path, capsys):
    # A is right on v1 and v3 (top-1 0.5); B is right on v1, v2 and v3 (0.75): B gains v2, of class a
    a = write_eval(tmp_path / "a", {"v1.avi": "a", "v2.avi": "b", "v3.avi": "b", "v4.avi": "a"})
    b = write_eval(tmp_path / "b", {"v1.avi": "a", "v2.avi": "a", "v3.avi": "b", "v4.avi": "a"})
    result = compare_evals(a, b)
    assert result["metrics"]["top1"] == (0.5, 0.75, 0.25)
    assert result["gains"] == [(0.5, "a", 2)] and result["losses"] == []  # recall of a: 1/2 -> 2/2
    # one discordant video, right in B only: the exact two-sided binomial p-value of 1 of 1 is 1
    assert {k: result["mcnemar"][k] for k in ("videos", "a_only", "b_only")} == {"videos": 4, "a_only": 0, "b_only": 1}
    assert result["mcnemar"]["p_value"] == pytest.approx(1.0)
    capsys.readouterr()
    assert main(["compare", str(a), str(b / "predictions.csv")]) == 0
    printed = capsys.readouterr().out
    assert "top1" in printed and "+0.2500" in printed and "a +0.500 (n=2)" in printed
    assert "McNemar (exact) on 4 shared videos: only A right 0, only B right 1" in printed


def test_compare_refuses_evaluations_of_different_videos(tmp_path):
    a = write_eval(tmp_path / "a", {"v1.avi": "a", "v2.avi": "b", "v3.avi": "b", "v4.avi": "a"})
    other = tmp_path / "other"
    write_csv(other / "predictions.csv", HEADER, [["w.avi", "a", "video", "a", 0.9, "b", 0.1]])
    (other / "classes.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="share no video path"):
        compare_evals(a, other)
