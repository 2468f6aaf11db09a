"""Output files: refused when they would destroy something, whole under their name or not there at all."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from videoseq.outputs import OutputError, atomic_output, check_output, partial_path, remove_partial_outputs


def test_a_new_path_is_accepted_and_an_existing_one_needs_overwrite(tmp_path):
    new = tmp_path / "out" / "predictions.csv"
    assert check_output(new, flag="--csv") == new
    new.parent.mkdir()
    new.write_text("old")
    with pytest.raises(OutputError, match=r"--csv .*predictions.csv exists already; add --overwrite"):
        check_output(new, flag="--csv")
    assert check_output(new, flag="--csv", overwrite=True) == new


@pytest.mark.parametrize("case", ["folder", "under_a_file", "an_input"])
def test_paths_that_would_destroy_something_are_refused_even_with_overwrite(tmp_path, case):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"video bytes")
    target = {"folder": tmp_path, "under_a_file": video / "out.csv", "an_input": tmp_path / "." / "clip.mp4"}[case]
    message = {"folder": "is a folder", "under_a_file": "is a file, not a folder", "an_input": "one of the inputs"}
    with pytest.raises(OutputError, match=message[case]):
        check_output(target, flag="--csv", overwrite=True, inputs=[video])
    assert video.read_bytes() == b"video bytes"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "report.json"
    with atomic_output(target) as tmp:
        assert tmp.name == f".report.json.tmp-{os.getpid()}" and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(os.listdir(target.parent)) == ["report.json"]


KILLED_WRITER = """
import sys, time
from videoseq.outputs import atomic_output
with atomic_output(sys.argv[1]) as tmp:
    tmp.write_text("partial")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_sigkill_while_writing_leaves_no_file_under_its_name_and_the_partial_is_removed_later(tmp_path):
    target = tmp_path / "predictions.csv"
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = target.with_name(f".predictions.csv.tmp-{process.pid}")
    assert not target.exists() and partial.exists()
    mine = partial_path(target)  # a live process's own temporary file stays
    mine.write_text("being written")
    assert remove_partial_outputs(tmp_path) == [partial]
    assert sorted(os.listdir(tmp_path)) == [mine.name]


# --- SIGKILL part-way through the commands that write outputs ------------------------------

# Runs a videoseq command whose every commit (the rename of a finished temporary file) is
# announced on stdout and then held, so the test can SIGKILL it at an exact point of its writing.
HELD_COMMITS = """
import sys, time
import videoseq.outputs as outputs
from videoseq.cli import main

commit = outputs.commit

def announced(tmp, path):
    print("committing", path, flush=True)
    time.sleep(float(sys.argv[1]))
    return commit(tmp, path)

outputs.commit = announced
sys.exit(main(sys.argv[2:]))
"""


def run_until_commit(argv: list[str], number: int, cwd, name: str | None = None) -> tuple[list[str], subprocess.Popen]:
    """Start ``videoseq *argv`` and SIGKILL it while its ``number``-th output file (named ``name``, if given)
    waits to be renamed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", HELD_COMMITS, "0.2", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, cwd=cwd, env=env)
    committing = []
    for line in process.stdout:
        if line.startswith("committing "):
            committing.append(line.split(" ", 1)[1].strip())
            if len([c for c in committing if name in (None, Path(c).name)]) == number:
                process.send_signal(signal.SIGKILL)
                break
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"the command ended before its commit {number}: {committing}"
    return committing, process


def is_journal(path: Path) -> bool:
    return re.search(r"journal-\d+\.(jsonl|bin)$", path.name) is not None


def complete(path: Path) -> bool:
    """The file reads back whole by its kind."""
    import json

    import cv2
    import numpy as np
    import onnx
    import torch

    from videoseq.tables import read_csv

    suffix = path.suffix
    if suffix == ".csv":
        return bool(read_csv(path)[0])
    if suffix == ".json":
        return isinstance(json.loads(path.read_text()), dict)
    if suffix == ".png":
        return cv2.imread(str(path)) is not None
    if suffix == ".onnx":
        onnx.checker.check_model(onnx.load(str(path)))
        return True
    if suffix == ".npy":
        return np.load(path, mmap_mode="r").size > 0
    if suffix == ".pt":
        return isinstance(torch.load(path, weights_only=True), dict)
    return path.read_text().endswith("\n")


def commands(tiny_run, gestures, work: Path) -> dict[str, tuple[list[str], int]]:
    """Each command with the commit to be killed at (past the first, so some files are already whole)."""
    from videoseq.config import load_config
    from videoseq.prepare import resolve_manifest

    manifest = work / "data"
    resolve_manifest(load_config(tiny_run / "config.yaml").data, manifest)
    clips = sorted(str(p) for p in (gestures / "videos").glob("Grow/*.avi"))
    (work / "old.csv").write_text("path,label_1\nold,kept\n")
    return {
        "predict": (["predict", str(tiny_run / "best.pt"), *clips, "--csv", str(work / "old.csv"), "--overwrite"], 1),
        "eval": (["eval", str(tiny_run / "best.pt"), "--out", str(work / "eval"), "--workers", "0"], 3),
        "export": (["export", str(tiny_run / "best.pt"), "--out", str(work / "export" / "m.onnx"), "--streaming"], 2),
        "features": (["features", str(tiny_run / "best.pt"), "--manifest", str(manifest / "manifest.csv"),
                      "--out", str(work / "feats"), "--shard-videos", "4"], 4),
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "eval", "export", "features"])
def test_sigkill_part_way_leaves_only_whole_files_under_their_names(tiny_run, gestures, tmp_path, command):
    argv, number = commands(tiny_run, gestures, tmp_path)[command]
    name = "old.csv" if command == "predict" else None  # predict journals its videos before the CSV
    committing, process = run_until_commit(argv, number, tmp_path, name)
    killed = Path(committing[-1])
    # a journal (.jsonl / .bin) is appended to as videos finish, its torn tail cut on resume (tests/test_journal.py):
    # the whole-file rule is for the outputs
    finished = [Path(p) for p in committing[:-1] if not is_journal(Path(p))]
    partial = killed.with_name(f".{killed.name}.tmp-{process.pid}")
    assert partial.is_file(), "the file being written waits under its temporary name"
    if command == "predict":  # the CSV it replaces is still the old one, whole
        assert killed.read_text() == "path,label_1\nold,kept\n"
    else:
        assert not killed.exists()
    assert finished or number == 1
    assert all(complete(path) for path in finished), finished
    final_names = [p for p in tmp_path.rglob("*") if p.is_file() and ".tmp-" not in p.name]
    written = [p for p in final_names if p.parent.name in ("eval", "export", "feats") and not is_journal(p)]
    assert sorted(written) == sorted(finished), "only the files renamed before the kill are there"
    assert remove_partial_outputs(partial.parent) == [partial]  # the next run clears it
