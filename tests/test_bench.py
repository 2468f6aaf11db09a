"""The bench kinds: streaming vs window timings, the loader / training peers (same frames, our clip layout), serving."""

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from videoseq.bench import BENCH_KINDS
from videoseq.bench.loader import (
    bench_frame_cache,
    clip_readers,
    decode_ceiling,
    loader_rows,
    opencv_decode_all,
    pyav_decode_all,
    race,
)
from videoseq.bench.stream import bench_stream, load_predictor, step_flops, write_test_video
from videoseq.bench.train import R3D18
from videoseq.cli import build_parser, main
from videoseq.framecache import FrameCache
from videoseq.transforms import ClipTrainPreset


def tiny_bench_stream(tmp_path, data: str = "") -> dict:
    """``bench_stream`` of a small dense-sampling model (``data``: more data keys) on a 30-frame test video."""
    config = tmp_path / "tiny.yaml"
    config.write_text(f"data: {{frames: 4, size: 32, sampling: dense, stride: 2{data}}}\n"
                      "model: {backbone: mobilenet_v3_small, head: gru, head_args: {hidden: 8}}\n")
    video = write_test_video(tmp_path / "clip.avi", frames=30, width=64, height=48)
    return bench_stream(config, video, repeats=1)


def test_bench_stream_times_both_modes_on_the_same_steps(tmp_path, capsys):
    results = tiny_bench_stream(tmp_path)
    stream, window = results["stream"], results["window"]
    # 30 frames at stride 2 (the file's rate): 15 kept, the 4-frame buffer is full from the 4th
    assert (stream.frames, stream.steps) == (window.frames, window.steps) == (30, 12)
    # the first prediction comes at file frame 6 (the 4th kept); the steady state is the 23 frames after it
    assert stream.steady_frames == window.steady_frames == 23
    assert 0 < stream.steady_seconds < stream.seconds and 0 < window.steady_seconds < window.seconds
    printed = capsys.readouterr().out
    assert "stream" in printed and "window" in printed and "cheaper per frame" in printed
    assert "once the buffer is full (the last 23 frames)" in printed


def test_step_flops_count_one_backbone_pass_per_stream_step_and_clip_len_per_window(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {frames: 16, size: 32}\nmodel: {backbone: resnet18, head: gru, head_args: {hidden: 8}}\n")
    predictor = load_predictor(config)
    stream, window = step_flops(predictor)
    head = stream - step_flops_of_one_frame(predictor)
    assert window == 16 * (stream - head) + head  # the window re-runs the backbone on all 16 frames
    assert window / stream > 12


def step_flops_of_one_frame(predictor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        predictor.model.forward_frames(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops()


def test_bench_is_a_group_of_kinds_on_the_command_line(tmp_path):
    assert "stream" in BENCH_KINDS
    args = build_parser().parse_args(["bench", "stream", "configs/gestures.yaml", "--set", "data.frames=4"])
    assert args.func is BENCH_KINDS["stream"].run and args.set == ["data.frames=4"]
    assert main(["bench", "stream", str(tmp_path / "missing.pt")]) == 1  # an input that fails


def test_set_only_applies_to_configs(tmp_path):
    with pytest.raises(ValueError, match="--set"):
        bench_stream(tmp_path / "model.pt", overrides=["data.frames=4"])


def test_peer_loaders_read_the_frames_of_the_ceiling(shared_video):
    path = str(shared_video("ucf_like_320x240.avi"))
    indices = np.array([3, 40, 41, 120, 163])
    ceiling = decode_ceiling(path, indices)
    assert ceiling.shape == (5, 240, 320, 3)
    assert np.array_equal(opencv_decode_all(path, indices), ceiling)
    # PyAV converts to RGB with its own swscale settings: the same frames, a few levels apart
    assert np.abs(pyav_decode_all(path, indices).astype(int) - ceiling).mean() < 3


def test_the_frame_cache_reader_loads_the_clips_our_loader_decodes(shared_video, tmp_path, capsys):
    path = shared_video("short_32frames.mp4")  # 32 frames of 340x256
    cache = bench_frame_cache([path], tmp_path / "c", short_side=256)  # every frame, as decoded (none resized)
    assert "frame cache of 1 videos, every frame, short side 256 px" in capsys.readouterr().out
    readers = clip_readers(path, 32, 8, cache, ClipTrainPreset(size=48))
    for _ in range(3):  # the k-th clip of each: the same frames through the same random crop and flip
        ours, cached = readers["ours"](), readers["cache"]()
        assert torch.equal(ours["video"], cached["video"]) and ours["video"].shape == (8, 3, 48, 48)
    ceiling = readers["ceiling"]()
    assert ceiling.shape == (8, 256, 340, 3)  # decode only: full frames
    rows = loader_rows([path], clips=1, cache=cache, size=48)
    assert [(r["video"], r["frames"], r["T"]) for r in rows] == [("short_32frames.mp4", 32, 8),
                                                                 ("short_32frames.mp4", 32, 16)]


def test_race_times_every_reader_and_r3d_takes_our_clip_layout():
    calls = {"a": 0, "b": 0}
    rates = race({"a": lambda: calls.__setitem__("a", calls["a"] + 1),
                  "b": lambda: calls.__setitem__("b", calls["b"] + 1)}, clips=3)
    assert calls == {"a": 4, "b": 4} and all(r > 0 for r in rates.values())
    assert R3D18(5)(torch.zeros(2, 4, 3, 32, 32)).shape == (2, 5)


def test_every_bench_kind_is_a_subcommand_of_bench():
    assert set(BENCH_KINDS) == {"stream", "loader", "train", "heads", "captions", "decord", "serve", "memory",
                                "predict", "threads", "motion"}
    args = build_parser().parse_args(["bench", "serve", "best.pt", "--clients", "2", "--seconds", "5"])
    assert args.func is BENCH_KINDS["serve"].run and (args.clients, args.seconds, args.streams) == (2, 5.0, 4)
    args = build_parser().parse_args(["bench", "threads", "--steps", "4", "--settings", "before", "auto"])
    assert args.func is BENCH_KINDS["threads"].run and (args.steps, args.settings, args.load) == (4, ["before", "auto"],
                                                                                                   None)
    assert (args.load_kind, args.load_session) == ("train", "own")  # another job, run as other programs run
    args = build_parser().parse_args(["bench", "loader", "--clips", "3", "--rss-clips", "10"])
    assert args.func is BENCH_KINDS["loader"].run and (args.clips, args.rss_clips) == (3, 10)
    args = build_parser().parse_args(["bench", "train", "--epochs", "2", "--per-class", "3"])
    assert args.func is BENCH_KINDS["train"].run and (args.epochs, args.per_class) == (2, 3)
    args = build_parser().parse_args(["bench", "heads", "--per-class", "5", "--set", "train.epochs=1"])
    assert args.func is BENCH_KINDS["heads"].run and (args.per_class, args.set) == (5, ["train.epochs=1"])
    args = build_parser().parse_args(["bench", "captions", "--seed", "1"])
    assert args.func is BENCH_KINDS["captions"].run and (args.seed, args.per_class) == (1, 480)
    args = build_parser().parse_args(["bench", "decord", "--compare", "a.json", "b.json"])
    assert args.func is BENCH_KINDS["decord"].run and args.compare == ["a.json", "b.json"]
    args = build_parser().parse_args(["bench", "memory", "--width", "640", "--height", "360"])
    assert args.func is BENCH_KINDS["memory"].run and (args.width, args.height, args.size) == (640, 360, 20000)
    args = build_parser().parse_args(["bench", "predict", "--videos", "40", "--ranks", "0"])
    assert args.func is BENCH_KINDS["predict"].run and (args.videos, args.ranks, args.workers) == (40, 0, 2)


def test_the_decoder_benchmark_decodes_the_same_frames_both_ways_and_compares_saved_runs(tmp_path, capsys):
    from videoseq.bench.decoders import compare, decode_decord, decode_opencv, write_synthetic

    mjpg = next(p for p in write_synthetic(tmp_path, num_frames=40) if p.suffix == ".avi")
    indices = [0, 7, 8, 21, 39]
    assert np.array_equal(decode_decord(mjpg, indices, 1), decode_opencv(mjpg, indices, 1))
    runs = [{"decord_version": v, "results": {"clip.avi": {"8": {"decord": rate, "opencv": 1.0}}}}
            for v, rate in (("0.6.0", 10.0), ("3.4.0", 15.0))]
    for name, run in zip(("a.json", "b.json"), runs):
        (tmp_path / name).write_text(json.dumps(run))
    compare(tmp_path / "a.json", tmp_path / "b.json")
    assert "geometric mean B/A: 1.50" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_serve_reports_uploads_streams_drops_and_memory(tiny_run, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("websockets")
    code = main(["bench", "serve", str(tiny_run / "best.pt"), "--clients", "2", "--uploads", "2", "--streams", "1",
                 "--seconds", "2", "--stream-fps", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "uploads: 4 ok, 0 errors" in out and "\nerrors: 0\n" in out
    sent, answered, dropped = map(int, re.search(r"stream 1: (\d+) frames sent .*?, (\d+) answered .*?(\d+) dropped",
                                                 out).groups())
    assert 30 <= sent <= 42 and answered > 0 and answered + dropped == sent
    start, end = map(float, re.search(r"server RSS: (\d+) MB at start, (\d+) MB at end", out).groups())
    assert 0 < start <= end * 1.5


def test_motion_rows_differ_only_in_input_and_shift_and_load_with_the_shipped_config():
    from videoseq.bench import motion
    from videoseq.config import load_config

    configs = {row: load_config(motion.CONFIG, settings) for row, settings in motion.ROWS.items()}
    assert {row: (c.data.modality, c.model.temporal_shift) for row, c in configs.items()} == {
        "rgb": ("rgb", None), "rgbdiff": ("rgbdiff", None), "flow": ("flow", None),
        "tsm_rgb": ("rgb", "bidirectional"), "tsm_flow": ("flow", "bidirectional")}
    models = {(c.model.backbone, c.model.stage, c.model.head, c.train.epochs) for c in configs.values()}
    assert models == {("resnet18", "layer2", "gru", configs["rgb"].train.epochs)}  # the demo's model, one budget
    assert set(motion.FUSION) <= set(motion.ROWS)


def test_the_shipped_motion_configs_are_the_flow_and_tsm_flow_rows():
    from videoseq.bench import motion
    from videoseq.config import load_config
    from videoseq.resources import CONFIGS

    for name, row in (("motion.yaml", "flow"), ("motion_tsm.yaml", "tsm_flow")):
        assert load_config(CONFIGS / name) == load_config(motion.CONFIG, motion.ROWS[row]), name


def test_the_motion_rotation_holds_every_source_out_twice():
    from collections import Counter
    from pathlib import Path

    from videoseq.bench import motion
    from videoseq.camera_motion import REAL_SOURCES

    held_out = Counter(name for pair in motion.ROTATION for name in pair)
    assert held_out == {Path(name).stem: 2 for name in REAL_SOURCES}
    assert all(len(set(pair)) == 2 for pair in motion.ROTATION)


def test_the_motion_table_prints_every_split_and_the_mean(capsys):
    from videoseq.bench.motion import print_table

    row = {"top1": 0.5, "train_wall_s": 100.0, "train_cpu_s": 90.0}
    results = {"a+b": {"rgb": row, "flow": dict(row, top1=0.9)}, "c+d": {"rgb": row, "flow": dict(row, top1=0.7)}}
    print_table(results, {"rgb": 4.0, "rgbdiff": 4.5, "flow": 14.0})
    lines = capsys.readouterr().out.strip().splitlines()
    assert "a+b" in lines[0] and "c+d" in lines[0] and "mean" in lines[0]
    flow = next(line for line in lines if line.startswith("flow")).split()
    assert flow[1:4] == ["0.900", "0.700", "0.800"] and flow[-1] == "10.0"


def test_bench_stream_reports_the_flow_cost_of_a_flow_model_apart(tmp_path, capsys):
    results = tiny_bench_stream(tmp_path, ", modality: flow, flow_size: 40")
    assert results["stream"].steps == 12
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("motion (flow"))
    flow_ms, step_ms = (float(v) for v in re.findall(r"([\d.]+) ms per kept frame", line))
    assert "15 kept frames" in line and 0 < flow_ms < step_ms  # the step includes its flow


def test_the_motion_table_sets_flow_clips_from_a_flow_cache_beside_rgb_clips(shared_video, tmp_path, capsys):
    from videoseq.bench.loader import motion_rows, print_motion_rows

    path = shared_video("short_32frames.mp4")
    frames = bench_frame_cache([path], tmp_path / "frames", short_side=128)
    rows = motion_rows([path], clips=1, frames=frames, folder=tmp_path / "flow")
    assert FrameCache(tmp_path / "flow").holds_motion
    (row,) = rows
    assert all(row[k] > 0 for k in ("rgb_cache", "flow_cache", "flow_fly", "flow_ms"))
    assert row["ratio"] == row["flow_cache"] / row["rgb_cache"]
    geo = print_motion_rows(rows)
    assert geo == row["ratio"] and "flow clips from the flow cache / RGB clips" in capsys.readouterr().out


@pytest.mark.slow  # three predict processes
def test_bench_memory_reads_each_predict_peak_and_refuses_the_crafted_checkpoint(capsys):
    from videoseq.bench.memory import bench_memory

    peaks = bench_memory(width=640, height=360, frames=2, size=5000)  # small, so the test runs in seconds
    assert [p.status for p in peaks] == [0, 0, 1]
    assert all(200 < p.rss_mb < 2048 for p in peaks)  # a whole Python with torch, within the limit
    assert "data.size: must be in [1, 1024], got 5000" in peaks[2].last_line
    printed = capsys.readouterr().out
    assert "peak RSS of videoseq predict" in printed and "640x360 clip, 2 frames" in printed


def test_bench_predict_times_the_loop_and_the_archive_path_on_the_same_links(tmp_path, capsys, shared_video):
    from videoseq.bench.predict import bench_predict, descendants

    shared_video("ucf_like_320x240.avi")  # skips without the sample clips
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {frames: 4, size: 32, test_views: 1}\n"
                      "model: {backbone: mobilenet_v3_small, head: gru, head_args: {hidden: 8}}\n")
    loop, archive = bench_predict(str(config), videos=6, workers=1, ranks=0, warmup=2, out=str(tmp_path / "b"))
    assert (loop.videos, archive.videos) == (6, 6) and loop.seconds > 0 and archive.seconds > 0
    assert loop.cpu_s > 0 and archive.cpu_s > 0  # the archive's counts its decoding workers too
    links = sorted((tmp_path / "b" / "videos").iterdir())
    assert len(links) == 6 and all(link.is_symlink() for link in links)
    loop_rows = [line.split(",")[0] for line in (tmp_path / "b" / "loop.csv").read_text().splitlines()[1:]]
    (archive_csv,) = (tmp_path / "b").glob("archive_*.csv")
    assert loop_rows == [line.split(",")[0] for line in archive_csv.read_text().splitlines()[1:]] == list(map(str,
                                                                                                           links))
    printed = capsys.readouterr().out
    assert "per-file loop" in printed and "archive path (1 decoding workers)" in printed and "1.00x" in printed
    assert "load average at start" in printed and "CPU s/video" in printed and "other work" in printed
    assert 0 <= loop.others <= os.cpu_count() and 0 <= archive.others <= os.cpu_count()
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in descendants(os.getpid()) and os.getpid() not in descendants(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_the_default_competing_load_is_a_training_job_per_core_or_two_spinning_processes():
    from videoseq.bench.threads import competing_load

    assert [competing_load(None, cores) for cores in (1, 2, 8)] == [1, 2, 8]
    assert [competing_load(None, cores, "spin") for cores in (1, 2, 8)] == [2, 4, 16]
    assert competing_load(1, 8) == 1 and competing_load(0, 2, "spin") == 0  # --load as given


def test_competing_load_runs_in_its_own_session_while_the_block_runs_and_is_gone_after():
    from videoseq.bench.threads import CompetingLoad

    with CompetingLoad(2, "spin") as load:
        assert [p.poll() for p in load.running] == [None, None]
        assert all(os.getsid(p.pid) == p.pid != os.getsid(0) for p in load.running)  # each leads a session
        processes = list(load.running)
    assert all(p.poll() is not None for p in processes) and load.running == []
    with CompetingLoad(1, "spin", own_session=False) as load:
        assert os.getsid(load.running[0].pid) == os.getsid(0)


def test_a_competing_load_that_does_not_start_is_an_error_with_its_own_message(monkeypatch):
    import videoseq.bench.threads as threads

    monkeypatch.setitem(threads.LOAD_KINDS, "spin", "import sys; sys.exit('no cores for you')")
    load = threads.CompetingLoad(2, "spin")
    with pytest.raises(RuntimeError, match="competing 'spin' load did not start:\n.*no cores for you"):
        load.__enter__()
    assert load.running == [] and load.logs == []  # the others were stopped


def test_the_training_job_load_trains_with_torchs_own_thread_defaults(monkeypatch):
    from videoseq.bench.threads import CompetingLoad, bench_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a limit of the tests; the load must not inherit it
    with CompetingLoad(1, "train") as load:  # returns once the job has done a training step
        job = load.running[0]
        environ = Path(f"/proc/{job.pid}/environ").read_bytes().split(b"\0")
        assert job.poll() is None and not any(v.startswith(b"OMP_NUM_THREADS=") for v in environ)
    assert job.poll() is not None
    with pytest.raises(ValueError, match="unknown load kind 'disk'.*spin"):
        CompetingLoad(1, "disk")
    with pytest.raises(ValueError, match="unknown load session 'other'.*own"):
        bench_threads(load_session="other")  # refused before anything is measured


@pytest.mark.slow
def test_bench_threads_measures_each_setting_in_a_fresh_process_idle_and_loaded(capsys, monkeypatch):
    from videoseq.bench.threads import bench_threads
    from videoseq.runtime import available_workers

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the tests; the children must not see it
    found = bench_threads(steps=2, warmup=1, per_class=5, settings=["before", "auto"], load=1, load_kind="spin")
    cores, out = available_workers(), capsys.readouterr().out
    before, auto = found["settings"]["before"], found["settings"]["auto"]
    assert before["threads"] == (cores, cores, 2, "spin")  # no limits: every core, OpenMP's spinning waits
    assert auto["threads"] == (cores, cores, 2, "passive")  # the policy: the cores, waits that sleep
    assert all(row[c] > 0 for row in (before, auto) for c in ("idle", "loaded"))
    assert found["default_vs_before_loaded"] == pytest.approx(auto["loaded"] / before["loaded"])
    assert "default / best idle:" in out and "default / before under load:" in out
    assert found["before_slowdown_loaded"] == pytest.approx(before["idle"] / before["loaded"])
    assert "the load slows the old default (before)" in out
    assert re.search(r"loaded: 1 spinning, own session; (the kernel (does not )?groups? sessions|session grouping)",
                     out)
    assert f"before: no limits (torch {cores}, OpenCV {cores}, in each of 2 workers too; spin waits)" in out
    assert f"auto (the default): {cores} main, 1 per worker; passive waits" in out
