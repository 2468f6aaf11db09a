"""One error boundary: every user-caused failure is one line naming the culprit, with exit 2 (usage) or 1 (input).

``videoseq.errors`` holds the kinds; ``cli.main`` turns them into the line and the status.
Anything else is an internal error: one line that says to rerun with ``--debug``, status 70.
"""

from __future__ import annotations

import pytest

from videoseq import cli
from videoseq.errors import INTERNAL_STATUS, InputError, UsageError, one_line


def broken_command(error: Exception):
    def run(args) -> int:
        raise error
    return run


@pytest.mark.parametrize(("error", "status", "line"), [
    (UsageError("--topk: must be >= 1\n  got -1"), 2, "videoseq demo: error: --topk: must be >= 1 got -1"),
    (InputError("cannot decode a.mp4: broken"), 1, "videoseq demo: error: cannot decode a.mp4: broken"),
    (PermissionError(13, "Permission denied", "/data/x.mp4"), 1,
     "videoseq demo: error: /data/x.mp4: Permission denied; check that it exists and that you may use it"),
    (KeyError("config"), INTERNAL_STATUS, "videoseq demo: internal error: KeyError: 'config'; rerun with --debug"),
])
def test_every_failure_is_one_line_and_a_status(monkeypatch, capsys, error, status, line):
    monkeypatch.setattr(cli, "cmd_demo", broken_command(error))
    monkeypatch.delenv("VIDEOSEQ_DEBUG", raising=False)
    assert cli.main(["demo"]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line) and "Traceback" not in err


@pytest.mark.parametrize("how", ["flag", "flag-after-command", "environment"])
def test_debug_shows_the_traceback_too(monkeypatch, capsys, how):
    monkeypatch.setattr(cli, "cmd_demo", broken_command(KeyError("config")))
    monkeypatch.delenv("VIDEOSEQ_DEBUG", raising=False)
    argv = {"flag": ["--debug", "demo"], "flag-after-command": ["demo", "--debug"], "environment": ["demo"]}[how]
    if how == "environment":
        monkeypatch.setenv("VIDEOSEQ_DEBUG", "1")
    assert cli.main(argv) == INTERNAL_STATUS
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in run" in err
    assert err.strip().splitlines()[-1].startswith("videoseq demo: internal error: KeyError")


def test_one_line_joins_lines_and_cuts_long_messages():
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 50, limit=10) == "xxxxxxx..."
