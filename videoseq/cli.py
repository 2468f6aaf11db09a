"""The command line: parse arguments, build a config, call one library function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videoseq import __version__


def cmd_train(args: argparse.Namespace) -> int:
    from videoseq.config import load_config
    from videoseq.engine import fit

    config = load_config(args.config, args.set)
    out = args.out or f"runs/{Path(args.config).stem}"
    fit(config, out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from videoseq.evaluation import run_eval

    run_eval(args.checkpoint, out_dir=args.out, manifest=args.manifest, split=args.split, views=args.views,
             batch_size=args.batch_size, num_workers=args.workers, device=args.device)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from videoseq.predict import predict_to_csv

    if args.stream:
        return cmd_stream(args)
    if args.stride and not args.window:
        raise ValueError("--stride needs --window (both in seconds)")
    failures = predict_to_csv(args.checkpoint, args.sources, args.csv, k=args.topk, window=args.window,
                              stride=args.stride, device=args.device)
    return 1 if failures else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from videoseq.synth import write_gesture_dataset

    out = write_gesture_dataset(args.out, per_class=args.per_class, seed=args.seed, frames=args.frames,
                                size=args.size, captions=args.captions)
    print(f"wrote synthetic gestures to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from videoseq.demo import run_demo

    run_demo(args.out, config=args.config, overrides=args.set, per_class=args.per_class, seed=args.seed)
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="example: videoseq train configs/demo.yaml --set train.epochs=5 --out runs/demo")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.set_defaults(func=cmd_train)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a split",
                       description="example: videoseq eval runs/demo/best.pt --split test --out runs/demo/eval")
    p.add_argument("checkpoint")
    p.add_argument("--manifest", help="manifest CSV (default: the data the checkpoint was trained on)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default="eval", help="folder for predictions.csv, per_class.csv, confusion.png")
    p.add_argument("--views", type=int, help="temporal test clips per video (default: the config's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify files, folders or globs into a CSV",
                       description="example: videoseq predict runs/demo/best.pt clips/ --csv out.csv --topk 3")
    p.add_argument("checkpoint")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="video file, folder or glob; with --stream one file, camera index (0) or URL")
    p.add_argument("--csv", help="output CSV (default: print to stdout)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--window", type=float, help="window length in seconds: one row per window")
    p.add_argument("--stride", type=float, help="window step in seconds (default: --window)")
    p.add_argument("--device", default="auto")
    add_stream_arguments(p)
    p.set_defaults(func=cmd_predict)


def cmd_stream(args: argparse.Namespace) -> int:
    from videoseq.events import EventOptions
    from videoseq.live import SourceOptions, StreamOptions, stream_to_outputs

    if len(args.sources) != 1:
        raise ValueError(f"--stream takes one SOURCE (a file, a camera index or a URL), got {len(args.sources)}")
    events = None
    if args.events:
        events = EventOptions(smooth=args.smooth, method=args.smooth_method, threshold=args.threshold,
                              background=args.background, min_duration=args.min_duration, refractory=args.refractory)
    source = SourceOptions(queue_size=args.queue, retries=args.retries, retry_delay=args.retry_delay,
                           max_frozen=args.max_frozen, stall_timeout=args.stall_timeout)
    options = StreamOptions(topk=args.topk, show=args.show, save_video=args.save_video, csv=args.csv,
                            jsonl=args.jsonl, events=events, max_frames=args.max_frames, source=source)
    return stream_to_outputs(args.checkpoint, args.sources[0], options, device=args.device)


def add_stream_arguments(p) -> None:
    g = p.add_argument_group("streaming (--stream)", "example: videoseq predict best.pt 0 --stream --show "
                             "--jsonl live.jsonl --events --background Nothing")
    g.add_argument("--stream", action="store_true",
                   help="run frame by frame on one SOURCE: a file, a camera index (0) or an rtsp/http URL")
    g.add_argument("--show", action="store_true", help="a window with the top labels, scores and fps (q quits)")
    g.add_argument("--save-video", metavar="OUT.mp4", help="write the annotated video")
    g.add_argument("--jsonl", help="one JSON line per inference step and per gesture event")
    g.add_argument("--max-frames", type=int, help="stop after this many frames")
    g.add_argument("--queue", type=int, default=4, help="reader queue length; a live source drops frames beyond it")
    g.add_argument("--retries", type=int, default=3, help="reopen a failing camera/stream this many times")
    g.add_argument("--retry-delay", type=float, default=1.0, help="seconds between retries")
    g.add_argument("--max-frozen", type=int, default=150, help="identical frames in a row that mean a frozen camera")
    g.add_argument("--stall-timeout", type=float, default=10.0, help="seconds without a frame before giving up")
    g.add_argument("--events", action="store_true", help="also write gesture events (start, end, label, peak)")
    g.add_argument("--smooth", type=int, default=3, help="events: steps in the smoothing window")
    g.add_argument("--smooth-method", choices=("mean", "majority"), default="mean")
    g.add_argument("--threshold", type=float, default=0.5, help="events: smoothed score an active step needs")
    g.add_argument("--background", help="events: the 'no gesture' class")
    g.add_argument("--min-duration", type=float, default=0.0, help="events: shortest event in seconds")
    g.add_argument("--refractory", type=float, default=0.0, help="events: seconds after an event with no new one")


def cmd_export(args: argparse.Namespace) -> int:
    from videoseq.export import export_command

    return export_command(args.checkpoint, args.out, args.format, args.streaming)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript, checked against PyTorch",
                       description="example: videoseq export runs/demo/best.pt --format onnx --streaming")
    p.add_argument("checkpoint")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", help="output file (default: the checkpoint's name with .onnx / .torchscript.pt)")
    p.add_argument("--streaming", action="store_true",
                   help="also write the per-frame backbone (OUT.frames.*) and the head over the buffer (OUT.head.*)")
    p.set_defaults(func=cmd_export)


def add_bench(sub) -> None:
    from videoseq.bench import BENCH_KINDS

    p = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCH_KINDS))
    kinds = p.add_subparsers(dest="kind", required=True)
    for name, kind in BENCH_KINDS.items():
        k = kinds.add_parser(name, help=kind.help)
        kind.add_arguments(k)
        k.set_defaults(func=kind.run)


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write synthetic datasets")
    kinds = p.add_subparsers(dest="kind", required=True)
    g = kinds.add_parser("gestures", help="UCF101-style tree of clips that differ only in temporal order",
                         description="example: videoseq synth gestures data/gestures --per-class 40 --seed 0")
    g.add_argument("out")
    g.add_argument("--per-class", type=int, default=30)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--frames", type=int, default=24)
    g.add_argument("--size", type=int, default=112)
    g.add_argument("--captions", action="store_true", help="also write captions.csv")
    g.set_defaults(func=cmd_synth)


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="synthesise, train, evaluate and predict in one go (CPU, minutes)")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--config", help="config (default configs/demo.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoseq", description=__doc__)
    parser.add_argument("--version", action="version", version=f"videoseq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train, add_eval, add_predict, add_synth, add_demo, add_export, add_bench):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"videoseq {args.command}: error: {err}", file=sys.stderr)
        return 2
