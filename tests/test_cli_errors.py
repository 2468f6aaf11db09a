"""One error boundary: every user-caused failure is one line naming the culprit, with exit 2 (usage) or 1 (input).

``videoseq.errors`` holds the kinds; ``cli.main`` turns them into the line and the status.
Anything else is an internal error: one line that says to rerun with ``--debug``, status 70.

The matrix below is every case of the report that asked for this boundary (data loss,
tracebacks, unbounded memory, silent or misleading results), each run through the real
command line on real files: the exit status, a message naming the file, key or flag, no
traceback, and every file that was there before byte-identical afterwards (the workspace
and the dataset are hashed before and after; a case lists the new files it may write).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from videoseq import cli
from videoseq.config import load_config
from videoseq.engine.trainer import load_resume_checkpoint
from videoseq.errors import INTERNAL_STATUS, InputError, UsageError, one_line
from videoseq.evaluation import from_scores, prediction_table, read_predictions
from videoseq.tables import read_csv, write_csv

from conftest import brightness_frames, shared_clip, write_video

# --- the boundary itself ----------------------------------------------------------------


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


# --- the files of the matrix ---------------------------------------------------------------


class Evil:
    def __reduce__(self):  # unpickling it would run code
        return (print, ("this ran",))


def write_vfr(path: Path) -> Path:
    """A valid variable-frame-rate file: 15 frames whose timestamps run to 2 s (12 in the first 0.5 s)."""
    av = pytest.importorskip("av")
    pts = [0, 40, 80, 120, 160, 200, 240, 280, 320, 360, 400, 440, 1000, 1500, 1960]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for t, ms in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 10 + 15 * t, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def crafted(payload: dict, path: Path, **change) -> Path:
    torch.save({**payload, **change}, path)
    return path


@pytest.fixture(scope="module")
def assets(tiny_run, gestures, tmp_path_factory) -> Path:
    """Files the cases link into their workspace (made once): checkpoints, configs, videos, broken files."""
    folder = tmp_path_factory.mktemp("assets")
    payload = torch.load(tiny_run / "best.pt", weights_only=True)
    shutil.copy(tiny_run / "best.pt", folder / "model.pt")
    shutil.copytree(tiny_run, folder / "run")
    shutil.copy(next((gestures / "videos" / "Grow").glob("*.avi")), folder / "clip.avi")
    crafted({k: v for k, v in payload.items() if k != "config"}, folder / "noconfig.pt")
    data = {**payload["config"]["data"], "size": 20000}
    crafted(payload, folder / "size20000.pt", config={**payload["config"], "data": data})
    nan = {k: v * float("nan") if v.is_floating_point() else v for k, v in payload["model"].items()}
    crafted(payload, folder / "nan.pt", model=nan)
    (folder / "evil.pth").write_bytes(pickle.dumps(Evil()))
    (folder / "notes.txt").write_text("some notes, not weights\n")
    (folder / "junk.onnx").write_bytes(b"not an onnx model\n" * 8)
    (folder / "junk.pt").write_bytes(b"e" * 101)
    (folder / "binary.yaml").write_bytes(bytes(range(256)))
    config = (tiny_run / "config.yaml").read_text()
    (folder / "tiny.yaml").write_text(config)
    (folder / "dup.yaml").write_text(config + "train:\n  epochs: 3\n")
    real = shared_clip("flipping_a_pancake.mkv").read_bytes()
    (folder / "cut.mkv").write_bytes(real[: len(real) // 2])
    shutil.copy(shared_clip("corrupted.mp4"), folder / "corrupted.mp4")
    write_vfr(folder / "vfr.mkv")
    (folder / "old.csv").write_text("keep me\n")
    return folder


@dataclass
class Workspace:
    """A case's folder: ``put`` links an asset in; everything under it is hashed before and after."""

    root: Path
    assets: Path
    dataset: Path

    def put(self, name: str, as_name: str | None = None) -> str:
        target = self.root / (as_name or name)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = self.assets / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
        return str(target)

    def __truediv__(self, name: str) -> str:
        return str(self.root / name)


def tree(folder: Path) -> dict[str, str]:
    """Every file (its SHA-256) and folder under ``folder``, by relative path."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = "link to " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "folder"
        else:
            try:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:  # the case's unreadable file
                found[rel] = f"unreadable, {path.stat().st_size} bytes"
    return found


def locked(ws: Workspace, name: str) -> str:
    """A path nobody may read, not even root: a link to a write-only kernel file, or a file without rights."""
    path = ws.root / name
    if os.geteuid() == 0:
        if not os.path.exists("/proc/sys/vm/compact_memory"):
            pytest.skip("running as root, and no write-only file to stand for an unreadable one")
        path.symlink_to("/proc/sys/vm/compact_memory")
    else:
        path.write_bytes(b"secret")
        path.chmod(0)
    return str(path)


# --- the matrix ----------------------------------------------------------------------------


@dataclass
class Case:
    """``argv(ws)`` gives the command line; it must end with ``status`` and a line matching ``culprit``."""

    id: str
    argv: Callable[[Workspace], list[str]]
    status: int
    culprit: str
    new: tuple[str, ...] = ()  # files the command may write (everything else stays as it was)
    check: Callable[[Workspace], None] | None = None  # more to assert afterwards
    cwd: bool = False  # run in the workspace (default output folders)
    env: dict[str, str] = field(default_factory=dict)


def manifest_with_outsider(ws: Workspace) -> list[str]:
    """A manifest of the dataset's videos, plus a row for a file far outside it (/etc/hostname)."""
    rows = [("path", "label", "split")] + [(str(p), p.parent.name, "train")
                                           for p in sorted((Path(ws.dataset) / "videos").glob("*/*.avi"))[:6]]
    rows.append(("/etc/hostname", "Grow", "test"))
    write_csv(ws.root / "m" / "manifest.csv", rows[0], rows[1:])
    (ws.root / "m" / "classes.txt").write_text("".join(f"{c}\n" for c in sorted({r[1] for r in rows[1:]})))
    return ["doctor", ws / "m/manifest.csv", "--out", ws / "doc", "--workers", "1"]


def check_outsider_did_not_widen_the_scan(ws: Workspace) -> None:
    import json

    report = json.loads(Path(ws / "doc/doctor.json").read_text())
    assert report["stats"]["data_root"] == str((Path(ws.dataset) / "videos").resolve())
    outside = [f for f in report["findings"] if f["check"] == "outside_root"]
    assert [f["path"] for f in outside] == ["/etc/hostname"]
    assert not any(f["check"] == "unlisted" and not f["path"].startswith(report["stats"]["data_root"])
                   for f in report["findings"])


def vfr_manifest(ws: Workspace) -> list[str]:
    """Two ordinary clips and a variable-frame-rate one, doctored with --write-clean."""
    data = ws.root / "vfrdata"
    write_video(data / "Wave" / "v_Wave_g01_c01.avi", brightness_frames(12))
    write_video(data / "Clap" / "v_Clap_g01_c01.avi", brightness_frames(12))
    ws.put("vfr.mkv", "vfrdata/Wave/v_Wave_g02_c01.mkv")
    rows = [("Wave/v_Wave_g01_c01.avi", "Wave", "train"), ("Clap/v_Clap_g01_c01.avi", "Clap", "train"),
            ("Wave/v_Wave_g02_c01.mkv", "Wave", "train")]
    write_csv(data / "manifest.csv", ("path", "label", "split"), rows)
    (data / "classes.txt").write_text("Clap\nWave\n")
    return ["doctor", str(data / "manifest.csv"), "--out", ws / "doc", "--workers", "1",
            "--write-clean", str(data / "clean.csv")]


def check_vfr_kept(ws: Workspace) -> None:
    import json

    report = json.loads(Path(ws / "doc/doctor.json").read_text())
    vfr = [f for f in report["findings"] if f["path"].endswith("v_Wave_g02_c01.mkv")]
    assert [f["check"] for f in vfr] == ["variable_frame_rate"] and vfr[0]["severity"] == "warning"
    _, rows = read_csv(Path(ws / "vfrdata/clean.csv"))
    assert len(rows) == 3


def check_vfr_windows(ws: Workspace) -> None:
    _, rows = read_csv(Path(ws / "windows.csv"))
    assert float(rows[0]["start_s"]) == 0.0 and float(rows[-1]["end_s"]) == pytest.approx(2.0, abs=0.05)


def check_resume_still_accepted(ws: Workspace) -> None:
    run = Path(ws / "run")
    load_resume_checkpoint(run, load_config(run / "config.yaml"))  # the run's own config.yaml still fits


def check_prepared(ws: Workspace) -> None:
    _, rows = read_csv(Path(ws / "prep/manifest.csv"))
    assert rows and all((Path(ws / "prep") / r["path"]).is_file() for r in rows)
    assert all("/videos/" in r["path"] for r in rows)


def split_lists_with_missing(ws: Workspace) -> list[str]:
    """The dataset's split files plus listed videos that are not on disk (a quarter of the list)."""
    splits = ws.root / "splits"
    shutil.copytree(Path(ws.dataset) / "splits", splits)
    listed = (splits / "trainlist01.txt").read_text().splitlines()
    ghosts = [line.replace("_c01", "_c09") for line in listed[: len(listed) // 2]]
    (splits / "trainlist01.txt").write_text("\n".join(listed + ghosts) + "\n")
    return ["prepare", "ucf101", str(Path(ws.dataset)), "--splits-dir", str(splits), "--out", ws / "prep"]


def check_round_trip(ws: Workspace) -> None:
    preds = read_predictions(Path(ws / "rt/predictions.csv"))
    assert preds.classes == TRICKY_CLASSES and preds.paths == TRICKY_PATHS


TRICKY_CLASSES = ["=SUM(A1)", "+1", "-x", "@handle", "'quoted", "'=x", "''"]
TRICKY_PATHS = ["'lead.avi", "=cmd.avi", "''=both.avi", "-1.5", "plain.avi", "@a.avi", "+b.avi"]


def eval_predictions_with_tricky_names(ws: Workspace) -> list[str]:
    """predictions.csv as eval writes it (``prediction_table`` + ``write_csv``), with formula-like names."""
    n = len(TRICKY_CLASSES)
    scores = np.eye(n)[::-1] * 0.7 + 0.3 / n  # (N, C): each video's best class is another one
    preds = from_scores(scores, np.arange(n), TRICKY_PATHS, ["video"] * n, TRICKY_CLASSES)
    write_csv(ws.root / "rt" / "predictions.csv", *prediction_table(preds))
    (ws.root / "rt" / "classes.txt").write_text("".join(f"{c}\n" for c in TRICKY_CLASSES))
    return ["metrics", ws / "rt/predictions.csv"]


def p(*argv: str) -> Callable[[Workspace], list[str]]:
    """A command line whose ``%name%`` words are assets put into the workspace, ``<name>`` its own paths."""
    def build(ws: Workspace) -> list[str]:
        out = []
        for word in argv:
            for name in re.findall(r"%([^%]+)%", word):
                word = word.replace(f"%{name}%", ws.put(name))
            for name in re.findall(r"<([^>]+)>", word):
                word = word.replace(f"<{name}>", ws / name)
            out.append(word)
        return out
    return build


def with_run(*argv: str) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        ws.put("run")
        return p(*argv)(ws)
    return build


def in_runs(ws: Workspace) -> list[str]:
    ws.put("run", "runs/tiny")
    return ["train", ws.put("tiny.yaml")]


def unreadable(command: str) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        if command == "checkpoint":
            return ["predict", locked(ws, "locked.pt"), ws.put("clip.avi")]
        if command == "video":
            return ["predict", ws.put("model.pt"), locked(ws, "locked.avi")]
        if command == "config":
            return ["train", locked(ws, "locked.yaml"), "--out", ws / "new"]
        return ["metrics", locked(ws, "locked.csv")]
    return build


CASES = [
    # data loss: nothing existing is replaced unless asked
    Case("train-into-a-run-folder", with_run("train", "%tiny.yaml%", "--out", "<run>"), 2,
         r"--out .*run already holds \['last.pt', 'best.pt', 'metrics.csv'\]; add --resume"),
    Case("train-default-out-on-a-rerun", in_runs, 2, r"--out runs/tiny already holds .*--resume runs/tiny",
         cwd=True),
    Case("train-bad-set-leaves-the-run-resumable", with_run("train", "<run/config.yaml>", "--resume", "<run>",
                                                            "--set", "data.frames=[x"), 2,
         r"--set 'data.frames=\[x': the value is not valid YAML", check=check_resume_still_accepted),
    Case("train-overwrite-with-a-bad-set", with_run("train", "%tiny.yaml%", "--out", "<run>", "--overwrite",
                                                    "--set", "model.head_args={hidden: abc}"), 2,
         r"model.head_args.hidden: must be a whole number, got 'abc'"),
    Case("predict-csv-is-the-input-video", p("predict", "%model.pt%", "%clip.avi%", "--csv", "<clip.avi>",
                                             "--overwrite"), 2, r"--csv .*clip.avi is one of the inputs"),
    Case("predict-csv-is-the-checkpoint", p("predict", "%model.pt%", "%clip.avi%", "--csv", "<model.pt>",
                                            "--overwrite"), 2, r"--csv .*model.pt is one of the inputs"),
    Case("predict-csv-exists-and-every-input-fails", p("predict", "%model.pt%", "<gone.mp4>", "--csv",
                                                       "%old.csv%"), 2, r"--csv .*old.csv exists already"),
    Case("stream-csv-exists", p("predict", "%model.pt%", "<gone.mp4>", "--stream", "--csv", "%old.csv%"), 2,
         r"--csv .*old.csv exists already; add --overwrite"),
    Case("stream-overwrite-and-the-source-fails", p("predict", "%model.pt%", "%corrupted.mp4%", "--stream",
                                                    "--csv", "%old.csv%", "--overwrite"), 1,
         r"cannot decode .*corrupted.mp4: decoding frames"),
    # tracebacks: every user-caused failure is one typed line
    Case("doctor-row-outside-the-dataset", manifest_with_outsider, 1, r"/etc/hostname: .*decord cannot open it",
         new=("doc", "doc/doctor.json"),
         check=check_outsider_did_not_widen_the_scan),
    Case("predict-csv-is-a-folder", p("predict", "%model.pt%", "%clip.avi%", "--csv", "<empty>"), 2,
         r"--csv .*empty is a folder"),
    Case("predict-csv-under-a-file", p("predict", "%model.pt%", "%clip.avi%", "--csv", "%notes.txt%/out.csv"), 2,
         r"notes.txt is a file, not a folder"),
    Case("export-out-under-a-file", p("export", "%model.pt%", "--out", "%notes.txt%/m.onnx"), 2,
         r"--out .*notes.txt is a file, not a folder"),
    Case("set-unclosed-list", p("train", "%tiny.yaml%", "--out", "<new>", "--set", "data.frames=[x"), 2,
         r"--set 'data.frames=\[x'"),
    Case("set-unclosed-mapping", p("train", "%tiny.yaml%", "--out", "<new>", "--set", "data.flip_swap={a: b"), 2,
         r"--set 'data.flip_swap=\{a: b'"),
    Case("set-tab-in-a-value", p("train", "%tiny.yaml%", "--out", "<new>", "--set", "data.val_split=\tx"), 2,
         r"--set 'data.val_split=\\tx'.*'\\t'"),
    Case("set-frames-2.5", p("train", "%tiny.yaml%", "--out", "<new>", "--set", "data.frames=2.5"), 2,
         r"data.frames: must be a whole number, got 2.5"),
    Case("set-seed-abc", p("train", "%tiny.yaml%", "--out", "<new>", "--set", "train.seed=abc"), 2,
         r"train.seed: must be a whole number"),
    Case("set-hidden-abc", p("train", "%tiny.yaml%", "--out", "<new>", "--set", "model.head_args={hidden: abc}"),
         2, r"model.head_args.hidden: must be a whole number, got 'abc'"),
    Case("pretrained-is-a-text-file", p("train", "%tiny.yaml%", "--out", "<new>", "--set",
                                        "model.pretrained=%notes.txt%"), 1,
         r"model.pretrained weights file .*notes.txt cannot be read: it is not a PyTorch file"),
    Case("pretrained-is-a-pickle-payload", p("train", "%tiny.yaml%", "--out", "<new>", "--set",
                                             "model.pretrained=%evil.pth%"), 1,
         r"evil.pth holds objects other than tensors .* refused without unpickling"),
    Case("window-inf", p("predict", "%model.pt%", "%clip.avi%", "--window", "inf"), 2,
         r"argument --window: must be a finite number > 0, got 'inf'"),
    Case("group-pattern-not-a-regex", p("prepare", "folder", "%clip.avi%", "--out", "<prep>", "--group-pattern",
                                        "("), 2, r"--group-pattern\) '\(' is not a regular expression"),
    Case("checkpoint-without-config", p("predict", "%noconfig.pt%", "%clip.avi%"), 1,
         r"noconfig.pt is incomplete or damaged: missing or wrong config"),
    Case("junk-onnx", p("predict", "%junk.onnx%", "%clip.avi%"), 1, r"ONNX model .*junk.onnx cannot be read"),
    Case("unreadable-checkpoint", unreadable("checkpoint"), 1, r"locked.pt cannot be read: Permission denied"),
    Case("unreadable-video", unreadable("video"), 1, r"cannot decode .*locked.avi: permission denied"),
    Case("unreadable-config", unreadable("config"), 2, r"config file .*locked.yaml cannot be read"),
    Case("unreadable-predictions", unreadable("predictions"), 1, r"locked.csv: Permission denied"),
    # unbounded memory: refused before anything is allocated
    Case("checkpoint-asking-for-size-20000", p("predict", "%size20000.pt%", "%clip.avi%"), 1,
         r"size20000.pt holds a config videoseq refuses: data.size: must be in \[1, 1024\], got 20000"),
    # silent or misleading
    Case("prepare-videos-and-splits-layout", lambda ws: ["prepare", "ucf101", ws.dataset, "--out", ws / "prep"],
         0, r"", new=("prep", "prep/manifest.csv", "prep/classes.txt", "prep/summary.txt", "prep/notes.txt"),
         check=check_prepared),
    Case("prepare-lists-missing-files", split_lists_with_missing, 1, r"of the \d+ files .* are not on disk, e.g."),
    Case("metrics-reads-formula-like-labels-and-quotes", eval_predictions_with_tricky_names, 0, r"",
         check=check_round_trip),
    Case("doctor-variable-frame-rate", vfr_manifest, 0, r"", new=("doc", "doc/doctor.json", "vfrdata/clean.csv"),
         check=check_vfr_kept),
    Case("window-times-on-a-variable-frame-rate-file", p("predict", "%model.pt%", "%vfr.mkv%", "--window", "0.5",
                                                         "--csv", "<windows.csv>"), 0, r"",
         new=("windows.csv",), check=check_vfr_windows),
    Case("stream-truncated-file", p("predict", "%model.pt%", "%cut.mkv%", "--stream"), 1,
         r"cannot decode .*cut.mkv: the file is truncated"),
    Case("stream-broken-file", p("predict", "%model.pt%", "%corrupted.mp4%", "--stream"), 1,
         r"cannot decode .*corrupted.mp4: decoding frames"),
    Case("predict-an-empty-folder", p("predict", "%model.pt%", "<empty>"), 1,
         r"cannot decode .*empty: the folder holds no .* and no video files"),
    Case("stream-a-folder", p("predict", "%model.pt%", "<empty>", "--stream"), 2, r"SOURCE .*empty is a folder"),
    Case("stream-show-without-a-display", p("predict", "%model.pt%", "%clip.avi%", "--stream", "--show", "--csv",
                                            "<live.csv>"), 2, r"--show needs a display.*DISPLAY",
         env={"DISPLAY": "", "WAYLAND_DISPLAY": ""}),
    Case("topk--1", p("predict", "%model.pt%", "%clip.avi%", "--topk", "-1"), 2, r"argument --topk: .* got -1"),
    Case("topk-0", p("predict", "%model.pt%", "%clip.avi%", "--topk", "0"), 2, r"argument --topk: .* got 0"),
    Case("window-0", p("predict", "%model.pt%", "%clip.avi%", "--window", "0"), 2, r"argument --window"),
    Case("window--1", p("predict", "%model.pt%", "%clip.avi%", "--window", "-1"), 2, r"argument --window"),
    Case("stride-0", p("predict", "%model.pt%", "%clip.avi%", "--window", "1", "--stride", "0"), 2,
         r"argument --stride"),
    Case("max-frames--1", p("predict", "%model.pt%", "%clip.avi%", "--stream", "--max-frames", "-1"), 2,
         r"argument --max-frames"),
    Case("serve-port-out-of-range", p("serve", "%model.pt%", "--port", "70000"), 2,
         r"argument --port: must be a whole number in \[1, 65535\], got 70000"),
    Case("serve-max-streams-0", p("serve", "%model.pt%", "--max-streams", "0"), 2,
         r"argument --max-streams: must be a whole number >= 1, got 0"),
    Case("weight-decay--5", p("train", "%tiny.yaml%", "--out", "<new>", "--set", "train.weight_decay=-5"), 2,
         r"train.weight_decay: must be >= 0, got -5"),
    Case("duplicate-yaml-keys", p("train", "%dup.yaml%", "--out", "<new>"), 2, r"dup.yaml: key 'train' appears twice"),
    Case("messages-name-the-file-not-101", p("predict", "%junk.pt%", "%clip.avi%"), 1,
         r"checkpoint .*junk.pt cannot be read: it is not a PyTorch file"),
    Case("messages-name-the-key-not-less-than", p("train", "%tiny.yaml%", "--out", "<new>", "--set",
                                                  "train.warmup_epochs=abc"), 2,
         r"train.warmup_epochs: must be a number, got 'abc'"),
    Case("messages-name-the-key-not-float-conversion", p("train", "%tiny.yaml%", "--out", "<new>", "--set",
                                                         "train.lr=fast"), 2, r"train.lr: must be a number"),
    Case("messages-name-the-file-not-utf8", p("train", "%binary.yaml%", "--out", "<new>"), 2,
         r"config file .*binary.yaml is not UTF-8 text"),
    Case("messages-name-the-split-not-sklearn", lambda ws: ["prepare", "folder", str(Path(ws.dataset) / "videos"),
                                                             "--out", ws / "prep"], 1,
         r"(a 0.15 split holds out 1 of 7 folds|holding out 15% of each class \(1 in 7\)).*--val-fraction"),
    Case("checkpoint-with-nan-weights", p("predict", "%nan.pt%", "%clip.avi%"), 1,
         r"nan.pt holds NaN or infinite weights"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_case_is_one_line_naming_the_culprit_and_changes_no_file(case, assets, gestures, tmp_path,
                                                                      monkeypatch, capsys):
    ws = Workspace(tmp_path / "ws", assets, str(gestures))
    (ws.root / "empty").mkdir(parents=True)
    argv = case.argv(ws)
    before, dataset_before = tree(ws.root), tree(gestures)
    monkeypatch.delenv("VIDEOSEQ_DEBUG", raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if case.cwd:
        monkeypatch.chdir(ws.root)
        argv = [os.path.relpath(a, ws.root) if a.startswith(str(ws.root)) else a for a in argv]
    try:
        status = cli.main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        status = stop.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "%|" not in line]
    assert "Traceback" not in err + out, err
    assert status == case.status, err[-2000:]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) <= 1 and (not errors or errors[0] == lines[-1]), lines  # one line, the last one
    if case.culprit:
        assert any(re.search(case.culprit, line) for line in lines + out.splitlines()), lines[-3:]
    after = tree(ws.root)
    assert {k: after.get(k) for k in before} == before, "a file that was there changed or went away"
    assert sorted(set(after) - set(before)) == sorted(case.new), "the command wrote where it should not"
    assert tree(gestures) == dataset_before
    if case.check:
        case.check(ws)
