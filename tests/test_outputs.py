"""Output files: refused when they would destroy something, whole under their name or not there at all."""

import os
import signal
import subprocess
import sys

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
