"""Tables: every CSV a command writes is formula-safe and parses back; nothing is written outside --out.

Class names and file names below are spreadsheet formulas on purpose. A training
run, ``videoseq eval`` and ``videoseq predict`` go through the real CLI.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from videoseq.cli import main
from videoseq.manifest import read_manifest, write_manifest
from videoseq.tables import CSV_INJECTION_PREFIXES, read_csv, safe_cell, write_csv

from conftest import brightness_frames, write_video

CLASSES = ['=HYPERLINK("http://example.com/x","click")', "@SUM(A1:A9)", "+1", "-x"]
FILES = ["=cmd.avi", "+1.avi", "-x.avi", "@SUM(A1).avi", "\tlead.avi"]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def assert_formula_safe(path: Path) -> list[list[str]]:
    """No cell of the file starts a formula; returns the parsed rows."""
    rows = read_rows(path)
    for row in rows:
        assert len(row) == len(rows[0]), f"{path.name}: ragged row {row}"
        for cell in row:
            is_negative_number = cell.startswith("-") and cell[1:].replace(".", "", 1).replace("e-", "", 1).isdigit()
            assert not cell.startswith(CSV_INJECTION_PREFIXES) or is_negative_number, f"{path.name}: {cell!r}"
    return rows


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def formula_data(tmp_path_factory) -> Path:
    """Videos named like formulas, in classes named like formulas, plus one broken test video."""
    root = tmp_path_factory.mktemp("formula_data")
    rows = []
    for c, label in enumerate(CLASSES):
        for i in range(3):
            name = f"c{c}{FILES[(c + i) % len(FILES)]}" if i else FILES[(c + i) % len(FILES)]
            frames = brightness_frames(8) if c % 2 else brightness_frames(8)[::-1].copy()
            write_video(root / f"class{c}" / name, frames)
            rows.append([f"class{c}/{name}", label, "test" if i == 2 else "train"])
    (root / "class0" / "=broken.avi").write_bytes(b"")
    rows.append(["class0/=broken.avi", CLASSES[0], "test"])
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    write_csv(root / "manifest.csv", ["path", "label", "split"], rows)
    return root


def test_injection_cells_are_neutralised_and_negative_numbers_stay_numbers(tmp_path):
    cells = ['=HYPERLINK("http://x","y")', "+1", "-x", "@SUM(A1)", "\tlead", "\rcr", -3, -2.5, "-7", "-1.5e-3", "ok"]
    rows = read_rows(write_csv(tmp_path / "x.csv", [f"c{i}" for i in range(len(cells))], [cells]))
    assert rows[1] == ['\'=HYPERLINK("http://x","y")', "'+1", "'-x", "'@SUM(A1)", "'\tlead", "'\rcr", "-3", "-2.5",
                       "-7", "-1.5e-3", "ok"]
    assert float(rows[1][6]) == -3 and float(rows[1][9]) == -0.0015


def test_manifest_with_formula_labels_and_paths_round_trips(formula_data, tmp_path):
    manifest = read_manifest(formula_data / "manifest.csv")
    assert manifest.classes == CLASSES and {r.label for r in manifest.rows} == set(CLASSES)
    assert "class0/=cmd.avi" in {r.path for r in manifest.rows}
    written = write_manifest(manifest, tmp_path / "copy")
    assert_formula_safe(written)
    again = read_manifest(written)
    assert [(Path(again.resolve(r.path)), r.label) for r in again.rows] == \
        [(Path(manifest.resolve(r.path)), r.label) for r in manifest.rows]


def test_commands_write_formula_safe_csvs_only_under_their_output_folder(formula_data, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"data: {{manifest: {formula_data / 'manifest.csv'}, frames: 4, size: 32, num_workers: 0, val_split: null}}\n"
        "model: {backbone: resnet18, stage: layer1, head: mean}\n"
        "train: {epochs: 1, batch_size: 4}\n"
    )
    before = files_under(tmp_path)

    assert main(["train", str(config), "--out", "run"]) == 0
    assert {p.parent for p in files_under(tmp_path) - before} == {cwd / "run"}
    assert_formula_safe(cwd / "run" / "metrics.csv")

    before = files_under(tmp_path)
    assert main(["eval", "run/best.pt", "--out", "eval", "--workers", "0"]) == 0
    assert {p.parent for p in files_under(tmp_path) - before} == {cwd / "eval"}
    predictions = assert_formula_safe(cwd / "eval" / "predictions.csv")
    assert {row[1] for row in predictions[1:]} <= {"'" + c for c in CLASSES}
    score = predictions[0].index("score_1")
    assert all(0 <= float(row[score]) <= 1 for row in predictions[1:])
    bad = assert_formula_safe(cwd / "eval" / "bad_videos.csv")
    assert bad[1][1].endswith("/class0/=broken.avi")  # an absolute path: starts with "/"
    for name in ("per_class.csv", "confusion.csv"):
        assert_formula_safe(cwd / "eval" / name)

    os.chdir(formula_data / "class0")  # relative sources: the path cells start with = + - @ or a tab
    sources = sorted(p.name for p in Path(".").iterdir())
    before = files_under(tmp_path)
    assert main(["predict", str(cwd / "run" / "best.pt"), "--csv", str(cwd / "pred" / "p.csv"), "--", *sources]) == 1
    assert files_under(tmp_path) - before == {cwd / "pred" / "p.csv"}
    rows = assert_formula_safe(cwd / "pred" / "p.csv")
    assert sorted(row[0] for row in rows[1:]) == sorted(
        "'" + s if s.startswith(CSV_INJECTION_PREFIXES) else s for s in sources)
    assert any("=broken.avi" in row[-1] for row in rows[1:])  # the broken file's error row


@pytest.mark.parametrize("cell, expected", [
    ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1x", "'+1x"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tlead", "'\tlead"), ("-1.5", "-1.5"), ("+3", "'+3"), ("plain", "plain"), (-2.0, -2.0)])
def test_csv_cells_are_neutralised(cell, expected):
    assert safe_cell(cell) == expected


def test_write_csv_round_trips(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["a", "b"], [["=1+1", -3], ["a,b \"q\"", "line\nbreak"]])
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["a", "b"], ["'=1+1", "-3"], ["a,b \"q\"", "line\nbreak"]]
    assert not (tmp_path / "x.csv.tmp").exists()


def test_read_csv_gives_back_the_cells_as_they_were_before_safe_cell(tmp_path):
    cells = ["=HYPERLINK(\"x\")", "+1", "-x", "-1.5", "plain", "@SUM(A1)"]
    header, rows = read_csv(write_csv(tmp_path / "x.csv", ["=h", "b", "c", "d", "e", "f"], [cells, cells[:2]]))
    assert header == ["=h", "b", "c", "d", "e", "f"]
    assert list(rows[0].values()) == cells
    assert rows[1] == {"=h": cells[0], "b": "+1", "c": "", "d": "", "e": "", "f": ""}  # a short row: empty cells
