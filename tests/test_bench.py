import pytest

from videoseq.bench import BENCH_KINDS, bench_stream, write_test_video
from videoseq.cli import build_parser, main


def test_bench_stream_times_both_modes_on_the_same_steps(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {frames: 4, size: 32, sampling: dense, stride: 2}\n"
                      "model: {backbone: mobilenet_v3_small, head: gru, head_args: {hidden: 8}}\n")
    video = write_test_video(tmp_path / "clip.avi", frames=30, width=64, height=48)
    results = bench_stream(config, video, repeats=1)
    stream, window = results["stream"], results["window"]
    # 30 frames at stride 2 (the file's rate): 15 kept, the 4-frame buffer is full from the 4th
    assert (stream.frames, stream.steps) == (window.frames, window.steps) == (30, 12)
    printed = capsys.readouterr().out
    assert "stream" in printed and "window" in printed and "cheaper per frame" in printed


def test_bench_is_a_group_of_kinds_on_the_command_line(tmp_path):
    assert "stream" in BENCH_KINDS
    args = build_parser().parse_args(["bench", "stream", "configs/gestures.yaml", "--set", "data.frames=4"])
    assert args.func is BENCH_KINDS["stream"].run and args.set == ["data.frames=4"]
    assert main(["bench", "stream", str(tmp_path / "missing.pt")]) == 2


def test_set_only_applies_to_configs(tmp_path):
    with pytest.raises(ValueError, match="--set"):
        bench_stream(tmp_path / "model.pt", overrides=["data.frames=4"])
