"""Progress: a redrawn bar on a terminal, whole lines every few seconds in a log."""

import subprocess
import sys

import videoseq.progress as progress
from videoseq.progress import progress_bar

from conftest import REPO


def test_off_a_terminal_progress_is_whole_lines_with_the_final_count(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # a line for every update
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    bar = progress_bar(range(4), desc="work", unit="clip")
    for i in bar:
        bar.set_postfix(loss=f"{i:.1f}")
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert lines[0].startswith("work:   0% 0/4") and lines[-1].startswith("work: 100% 4/4")
    assert "loss=3.0" in lines[-1] and len(lines) == 5


def test_off_a_terminal_lines_come_every_few_seconds_not_every_update(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 3600.0)
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    for _ in progress_bar(range(1000), desc="many"):
        pass
    bar = progress_bar(desc="stream", unit="frame")  # no total known: counts and rate only
    bar.update(7)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" [")[0] for line in lines] == ["many:   0% 0/1000", "many: 100% 1000/1000", "stream: 0",
                                                       "stream: 7"]


def test_a_command_logging_to_a_file_writes_lines_not_redraws(tmp_path):
    log = tmp_path / "synth.log"
    with log.open("w") as stderr:
        subprocess.run([sys.executable, "-m", "videoseq", "synth", "gestures", str(tmp_path / "g"), "--per-class",
                        "6", "--frames", "4", "--size", "32"], cwd=REPO, stderr=stderr, stdout=subprocess.DEVNULL,
                       check=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    text = log.read_text()
    assert "\r" not in text and text.splitlines()[-1].startswith("gesture clips: 100% 54/54")
