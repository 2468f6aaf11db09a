"""Manifests: the CSV and the class list round-trip; a malformed one names its file, line and fix."""

import csv

import pytest

from videoseq.manifest import Manifest, ManifestError, ManifestRow, read_manifest, write_manifest


def write_rows(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_manifest_round_trip(tmp_path):
    rows = [ManifestRow("a/x.avi", "a", "train", "g1", ""), ManifestRow("b/y.avi", "b", "test", "g2", "a cap")]
    manifest = Manifest(rows=rows, classes=["b", "a"], root=tmp_path)
    write_manifest(manifest, tmp_path / "out")
    back = read_manifest(tmp_path / "out" / "manifest.csv")
    assert back.classes == ["b", "a"]
    assert [(r.label, r.split, r.group, r.caption) for r in back.rows] == [
        ("a", "train", "g1", ""), ("b", "test", "g2", "a cap")]
    assert back.videos("train") == [(str(tmp_path / "a" / "x.avi"), 1)]


def test_several_caption_rows_give_one_video(tmp_path):
    rows = [ManifestRow("v.avi", "a", "train", caption=c) for c in ("one", "two")]
    assert len(Manifest(rows, ["a"], tmp_path).videos("train")) == 1


@pytest.mark.parametrize(
    "header, rows, message",
    [(["path", "label"], [["a.avi", "x"]], "lacks column"),
     (["path", "label", "split"], [["a.avi", "zzz", "train"]], "not in the class list"),
     (["path", "label", "split"], [["", "x", "train"]], "line 2: empty 'path'")],
)
def test_bad_manifests_name_the_file_and_problem(tmp_path, header, rows, message):
    write_rows(tmp_path / "manifest.csv", header, rows)
    (tmp_path / "classes.txt").write_text("x\n")
    with pytest.raises(ManifestError, match=message) as err:
        read_manifest(tmp_path / "manifest.csv")
    assert "manifest.csv" in str(err.value)


def test_missing_class_list_and_duplicates(tmp_path):
    write_rows(tmp_path / "manifest.csv", ["path", "label", "split"], [])
    with pytest.raises(ManifestError, match="classes.txt"):
        read_manifest(tmp_path / "manifest.csv")
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(ManifestError, match="more than once"):
        read_manifest(tmp_path / "manifest.csv")
