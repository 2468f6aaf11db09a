"""``videoseq predict`` over files: sources, rows, the journal and --resume, crash isolation, torchrun, timelines."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import srt
import webvtt
from crashing_decoder import read_or_crash

from videoseq.archive import ArchiveOptions
from videoseq.cli import main
from videoseq.events import EventOptions, detect_events, span_steps
from videoseq.journal import JournalError, part_paths, read_part
from videoseq.predict import Predictor
from videoseq.predict_files import PredictOptions, expand_sources, predict_to_csv
from videoseq.tables import read_csv

from conftest import REPO, brightness_frames, write_video

ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}


def rows_of(path):
    return read_csv(path)[1]


def options(window=None, **archive) -> PredictOptions:
    return PredictOptions(topk=2, device="cpu", window=window,
                          archive=ArchiveOptions(workers=1, progress=False, **archive))


@pytest.fixture
def clip(tmp_path):
    """12 frames at 12 fps, frame t of brightness 10 + 8 t."""
    return write_video(tmp_path / "clip.avi", brightness_frames(12, 48), fps=12.0)


def test_a_video_row_is_the_predictor_mean_over_its_views_and_a_broken_file_gets_its_error(tiny_run, clip, tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"")
    out = tmp_path / "p.csv"
    assert predict_to_csv(tiny_run / "best.pt", [str(clip), str(broken)], out, options()) == 1
    header, (good, bad) = read_csv(out)
    assert header == ["path", "label_1", "score_1", "label_2", "score_2", "error"]
    predictor = Predictor.from_checkpoint(tiny_run / "best.pt", device="cpu")
    probs = predictor.predict_video(clip)
    order = np.argsort(-probs)
    assert [good["label_1"], good["label_2"]] == [predictor.classes[i] for i in order[:2]]
    assert float(good["score_1"]) == round(float(probs[order[0]]), 6) and good["error"] == ""
    assert bad["label_1"] == "" and "broken.avi" in bad["error"] and "empty" in bad["error"]
    assert part_paths(out.with_name("p.csv.journal")) == []  # the journal goes once the CSV is whole


def test_sources_expand_folders_recursively_globs_and_manifests_and_keep_what_matches_nothing(tmp_path):
    for name in ("b/x.avi", "a/y.mp4", "a/deep/z.mkv", "a/.hidden.avi", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,label\nb/x.avi,x\n/abs/v.mp4,y\nb/x.avi,x\n")
    found = expand_sources([str(tmp_path / "a"), str(tmp_path / "b" / "*.avi"), "missing.avi",
                            str(tmp_path / "list.csv")])
    assert found == [str(tmp_path / "a" / "deep" / "z.mkv"), str(tmp_path / "a" / "y.mp4"),
                     str(tmp_path / "b" / "x.avi"), "missing.avi", str(tmp_path / "b" / "x.avi"), "/abs/v.mp4"]
    (tmp_path / "bad.csv").write_text("video,label\nb/x.avi,x\n")
    with pytest.raises(ValueError, match="bad.csv has no 'path' column"):
        expand_sources([str(tmp_path / "bad.csv")])


def test_without_a_csv_the_rows_go_to_stdout_in_input_order(tiny_run, clip, tmp_path, capsys):
    other = write_video(tmp_path / "other.avi", brightness_frames(20, 40), fps=10.0)
    assert predict_to_csv(tiny_run / "best.pt", [str(other), str(clip)], None, options()) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "path,label_1,score_1,label_2,score_2,error"
    assert [line.split(",")[0] for line in lines[1:]] == [str(other), str(clip)]


def test_a_worker_that_segfaults_on_one_file_costs_only_that_files_row(tiny_run, gestures, tmp_path):
    videos = sorted((gestures / "videos").rglob("*.avi"))[:4]
    crashing = tmp_path / "CRASH_clip.avi"
    shutil.copy(videos[1], crashing)
    sources = [str(videos[0]), str(crashing), str(videos[2]), str(videos[3])]
    out, plain = tmp_path / "crash.csv", tmp_path / "plain.csv"
    assert predict_to_csv(tiny_run / "best.pt", sources, out, options(), read=read_or_crash) == 1
    assert predict_to_csv(tiny_run / "best.pt", sources, plain, options()) == 0
    crashed, normal = rows_of(out), rows_of(plain)
    assert [r["path"] for r in crashed] == sources
    assert crashed[1]["label_1"] == "" and "the worker process died (SIGSEGV)" in crashed[1]["error"]
    assert [crashed[i] for i in (0, 2, 3)] == [normal[i] for i in (0, 2, 3)]  # the others as without the crash


def test_a_file_that_hangs_the_decoder_gets_a_timeout_row(tiny_run, gestures, tmp_path):
    good = sorted((gestures / "videos").rglob("*.avi"))[0]
    hanging = tmp_path / "HANG_clip.avi"
    shutil.copy(good, hanging)
    out = tmp_path / "hang.csv"
    opts = PredictOptions(topk=1, device="cpu", archive=ArchiveOptions(workers=1, timeout=3, progress=False))
    assert predict_to_csv(tiny_run / "best.pt", [str(hanging), str(good)], out, opts, read=read_or_crash) == 1
    hung, fine = rows_of(out)
    assert "took longer than 3 s and was stopped" in hung["error"] and fine["error"] == "" and fine["label_1"]


def run_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "videoseq", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def journal_entries(base) -> int:
    return sum(len(read_part(p).entries) for p in part_paths(base))


def signal_part_way(args: list[str], journal, entries: int, signum: int) -> tuple[int, str]:
    """Run ``videoseq ARGS``, send ``signum`` to it and its workers once the journal holds ``entries`` videos."""
    process = run_cli(*args)
    deadline = time.monotonic() + 300
    while journal_entries(journal) < entries and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signum) if signum == signal.SIGKILL else process.send_signal(signum)
    _, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.mark.slow
def test_sigkill_part_way_then_resume_gives_the_same_bytes_as_an_uninterrupted_run(tiny_run, gestures, tmp_path):
    sources = [str(gestures / "videos")] * 4  # 144 videos
    whole, killed = tmp_path / "whole.csv", tmp_path / "killed.csv"
    args = ["predict", str(tiny_run / "best.pt"), *sources, "--topk", "3", "--workers", "2"]
    done = run_cli(*args, "--csv", str(whole))
    assert done.wait(timeout=600) == 0, done.stderr.read()[-2000:]
    journal = tmp_path / "killed.csv.journal"
    signal_part_way(args + ["--csv", str(killed)], journal, 20, signal.SIGKILL)  # the command and its workers
    kept = journal_entries(journal)
    assert 20 <= kept < 144 and not killed.exists()
    again = run_cli(*args, "--csv", str(killed))  # no --resume: refused, nothing touched
    assert again.wait(timeout=300) == 2 and "--resume" in again.stderr.read()
    resumed = run_cli(*args, "--csv", str(killed), "--resume")
    assert resumed.wait(timeout=600) == 0
    assert f"{kept} of 144 videos done before" in resumed.stderr.read()
    assert killed.read_bytes() == whole.read_bytes()
    assert part_paths(journal) == []


def test_a_stopped_run_resumes_only_with_the_same_options_and_inputs(tiny_run, gestures, tmp_path):
    videos = [str(p) for p in sorted((gestures / "videos").rglob("*.avi"))]
    out = tmp_path / "r.csv"
    args = ["predict", str(tiny_run / "best.pt"), *videos, "--csv", str(out), "--workers", "1", "--topk", "2"]
    code, err = signal_part_way(args, tmp_path / "r.csv.journal", 1, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and not out.exists(), err[-2000:]
    assert "stopped by SIGTERM" in err and "run the same command with --resume" in err
    with pytest.raises(JournalError, match="other settings .*header"):
        predict_to_csv(tiny_run / "best.pt", videos, out, PredictOptions(topk=3, device="cpu",
                                                                         archive=ArchiveOptions(resume=True)))
    with pytest.raises(JournalError, match="other inputs .*#0 was .*, is now"):
        predict_to_csv(tiny_run / "best.pt", videos[1:], out, options(resume=True))
    with pytest.raises(JournalError, match="unfinished run.*--resume"):
        predict_to_csv(tiny_run / "best.pt", videos, out, options())
    assert predict_to_csv(tiny_run / "best.pt", videos, out, options(resume=True)) == 0
    assert [r["path"] for r in rows_of(out)] == videos
    with pytest.raises(ValueError, match="exists already; add --overwrite"):
        predict_to_csv(tiny_run / "best.pt", videos, out, options(resume=True))
    assert predict_to_csv(tiny_run / "best.pt", videos[:2], out, options(overwrite=True)) == 0
    assert len(rows_of(out)) == 2


def timeline_run(tiny_run, videos, tmp_path):
    out, timeline = tmp_path / "windows.csv", tmp_path / "timeline"
    code = main(["predict", str(tiny_run / "best.pt"), *map(str, videos), "--window", "1", "--stride", "0.5",
                 "--csv", str(out), "--topk", "9", "--timeline", str(timeline), "--threshold", "0.15",
                 "--smooth", "2", "--workers", "1", "--device", "cpu"])
    assert code == 0
    return rows_of(out), timeline


def test_timeline_segments_merge_the_csv_windows_and_parse_as_srt_webvtt_and_json(tiny_run, shared_video,
                                                                                   tmp_path):
    videos = [shared_video("vtest.avi"), shared_video("ucf_like_320x240.avi")]
    windows, timeline = timeline_run(tiny_run, videos, tmp_path)
    classes = Predictor.from_checkpoint(tiny_run / "best.pt", device="cpu").classes
    table = rows_of(timeline / "segments.csv")
    document = json.loads((timeline / "segments.json").read_text())
    assert [v["path"] for v in document["videos"]] == [str(v) for v in videos]
    assert document["settings"]["events"]["threshold"] == 0.15
    for video, in_json in zip(videos, document["videos"]):
        mine = [r for r in table if r["path"] == str(video)]
        expected = independent_segments(windows, str(video), classes)
        assert [(r["label"], float(r["start_s"]), float(r["end_s"])) for r in mine] == expected and expected
        assert [(s["label"], s["start_s"], s["end_s"], s["peak"], s["mean"]) for s in in_json["segments"]] == [
            (r["label"], float(r["start_s"]), float(r["end_s"]), float(r["peak"]), float(r["mean"])) for r in mine]
        subtitles = list(srt.parse((timeline / f"{video.stem}.srt").read_text()))
        assert [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subtitles] == [
            (float(r["start_s"]), float(r["end_s"]), f"{r['label']} ({float(r['peak']):.2f})") for r in mine]
        cues = webvtt.read(str(timeline / f"{video.stem}.vtt"))
        assert [(c.start, c.end, c.text) for c in cues] == [
            (vtt_time(s.start), vtt_time(s.end), s.content) for s in subtitles]
        assert all(float(r["mean"]) <= float(r["peak"]) for r in mine)
        figure = timeline / f"{video.stem}.png"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def vtt_time(delta) -> str:
    return srt.timedelta_to_srt_timestamp(delta).replace(",", ".")


def independent_segments(windows, path, classes):
    """The segments of a video from its CSV windows (every class's score, 6 decimals), by the event detector."""
    rows = [r for r in windows if r["path"] == path]
    probs = np.array([[float(r[f"score_{i}"]) for i in range(1, 10)] for r in rows])
    labels = [[r[f"label_{i}"] for i in range(1, 10)] for r in rows]
    ordered = np.zeros_like(probs)
    for n, (scores, names) in enumerate(zip(probs, labels)):
        ordered[n, [classes.index(name) for name in names]] = scores
    spans = np.array([[float(r["start_s"]), float(r["end_s"])] for r in rows])
    events = detect_events(classes, span_steps(ordered, spans), EventOptions(smooth=2, threshold=0.15))
    return [(e.label, round(e.start_s, 3), round(e.end_s, 3)) for e in events]


@pytest.mark.slow
def test_two_gloo_ranks_under_torchrun_give_exactly_the_single_process_output(tiny_run, gestures, shared_video,
                                                                               tmp_path):
    sources = [str(gestures / "videos"), str(shared_video("corrupted.mp4")), str(shared_video("vtest.avi"))]
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    common = [str(tiny_run / "best.pt"), *sources, "--device", "cpu", "--workers", "1", "--topk", "3"]
    single = run_cli("predict", *common, "--csv", str(one))
    assert single.wait(timeout=600) == 1  # corrupted.mp4 fails
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "videoseq", "predict", *common, "--csv", str(two)]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode != 0 and "1 input(s) failed" in done.stderr  # rank 0 reports the failed input
    assert two.read_bytes() == one.read_bytes()
    assert len(rows_of(two)) == 38 and part_paths(tmp_path / "two.csv.journal") == []


@pytest.mark.parametrize("window", [None, 0.5])
def test_a_flow_model_predicting_files_reads_the_motion_images_the_clip_path_reads(gestures, tmp_path, window):
    import torch

    from videoseq.checkpoint import checkpoint_payload, save_checkpoint
    from videoseq.config import load_config
    from videoseq.models.build import build_model_from_config

    config = load_config(None, ["data.modality=flow", "data.flow_stack=2", "model.stage=layer1", "data.frames=4",
                                "data.size=32", "data.sampling=dense", "data.test_views=2"])
    torch.manual_seed(0)
    model = build_model_from_config(config, 3)
    checkpoint = save_checkpoint(tmp_path / "flow.pt", checkpoint_payload(model, config, ["a", "b", "c"]))
    video = next((gestures / "videos").rglob("*.avi"))
    out = tmp_path / "p.csv"
    assert predict_to_csv(checkpoint, [str(video)], out, options(window)) == 0
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    if window is None:
        expected = [predictor.predict_video(video)]
    else:
        expected = [probs for _, _, probs in predictor.predict_windows(video, window, window)]
    rows = rows_of(out)
    assert len(rows) == len(expected) and len(expected) >= 1
    for row, probs in zip(rows, expected):
        order = np.argsort(-probs)
        assert row["label_1"] == predictor.classes[order[0]]
        assert abs(float(row["score_1"]) - float(probs[order[0]])) < 1e-5
