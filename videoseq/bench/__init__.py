"""Benchmarks behind ``videoseq bench KIND``; one entry per kind in :data:`BENCH_KINDS`.

Each kind lives in its own module (``bench/stream.py``, ``loader.py``, ``train.py``,
``heads.py``, ``captions.py``, ``decoders.py``, ``serve.py``, ``memory.py``, ``predict.py``, ``threads.py``,
``motion.py``),
imported only when that kind runs:
this registry names the kinds and their arguments and imports nothing heavy, so
building the command line costs no torch import.

Timings are medians, minima or totals of one run on this machine; compare the
ratios, which are measured side by side, rather than the absolute figures.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from videoseq.flags import non_negative_int, positive_float, positive_int


@dataclass(frozen=True)
class BenchKind:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _stream_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("example: videoseq bench stream configs/gestures.yaml --source clip.avi "
                     "(a checkpoint, an .onnx export, or a config with random weights)")
    p.add_argument("model", help="checkpoint .pt, exported .onnx, or a YAML config (random weights)")
    p.add_argument("--source", help="video file (default: a synthetic 320x240 25 fps clip)")
    p.add_argument("--frames", type=positive_int, default=300, help="length of the synthetic clip")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=positive_int, default=3, help="runs per mode; the fastest counts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of a YAML config (repeatable; default: none)")


def _stream_run(args: argparse.Namespace) -> int:
    from videoseq.bench.stream import bench_stream

    bench_stream(args.model, args.source, frames=args.frames, threads=args.threads, overrides=args.set,
                 repeats=args.repeats)
    return 0


def _loader_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "example: videoseq bench loader --clips 20; videoseq bench loader --motion-only"
    p.add_argument("--clips", type=positive_int, default=20, help="timed clips per video and clip length")
    p.add_argument("--motion-only", action="store_true",
                   help="only the motion table: RGB clips vs flow clips from a flow cache, on-the-fly flow cost")
    p.add_argument("--rss-clips", type=positive_int, default=1000, help="clips loaded while watching memory")


def _loader_run(args: argparse.Namespace) -> int:
    from videoseq.bench.loader import bench_loader

    bench_loader(clips=args.clips, rss_clips=args.rss_clips, motion_only=args.motion_only)
    return 0


TRAIN_PARTS = ("peers", "cache")


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("example: videoseq bench train --epochs 3; "
                     "videoseq bench train --parts cache --size 112 --per-class 20")
    p.add_argument("--epochs", type=positive_int, default=4, help="training epochs of each model")
    p.add_argument("--per-class", type=positive_int, default=6, help="synthetic gesture clips per class")
    p.add_argument("--size", type=positive_int, default=64, help="clip side in pixels (the issue's peers: 112)")
    p.add_argument("--frames", type=positive_int, default=8, help="frames per clip")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (model timings; AMP as train.amp on CUDA)")
    p.add_argument("--parts", nargs="+", choices=TRAIN_PARTS, default=list(TRAIN_PARTS),
                   help="peers: default model vs r3d_18; cache: feature-cache vs frozen end-to-end epochs")


def _train_run(args: argparse.Namespace) -> int:
    from videoseq.bench.train import bench_train

    bench_train(epochs=args.epochs, per_class=args.per_class, size=args.size, frames=args.frames, device=args.device,
                parts=tuple(args.parts))
    return 0


def _heads_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "example: videoseq bench heads --per-class 60 --out /tmp/bench_heads"
    p.add_argument("--out", default="/tmp/bench_heads", help="data, runs and evaluations (a finished run is reused)")
    p.add_argument("--per-class", type=positive_int, default=40, help="synthetic gesture clips per class")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo config (repeatable; default: none)")


def _heads_run(args: argparse.Namespace) -> int:
    from videoseq.bench.heads import bench_heads

    bench_heads(args.out, per_class=args.per_class, overrides=args.set)
    return 0


def _captions_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "example: videoseq bench captions --per-class 480 --seed 0 --out /tmp/bench_captions"
    p.add_argument("--out", default="/tmp/bench_captions", help="data, run and evaluation")
    p.add_argument("--per-class", type=positive_int, default=480,
                   help="synthetic clips per class (2/3 train, 1/3 test)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the synthetic clips and of the training run")
    p.add_argument("--config", help="caption config (default: the shipped configs/captions.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable; default: none)")


def _captions_run(args: argparse.Namespace) -> int:
    from videoseq.bench.captions import bench_captions

    bench_captions(args.out, per_class=args.per_class, seed=args.seed, config=args.config, overrides=args.set)
    return 0


def _decord_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("examples: videoseq bench decord --json /tmp/decord.json; "
                     "videoseq bench decord --compare /tmp/decord.json /tmp/decord2.json")
    p.add_argument("--videos", help="folder of real clips (default: the shared sample clips)")
    p.add_argument("--clips", type=positive_int, default=20, help="clips per video, clip length and decoder")
    p.add_argument("--threads", type=positive_int, default=1, help="decord decoding threads")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the clips' frame choice")
    p.add_argument("--json", help="write the results here (default: print only)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="compare two --json files instead of measuring (default: measure)")


def _decord_run(args: argparse.Namespace) -> int:
    from videoseq.bench.decoders import bench_decord, compare

    if args.compare:
        compare(*args.compare)
    else:
        bench_decord(args.videos, clips=args.clips, threads=args.threads, seed=args.seed, json_path=args.json)
    return 0


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("example: videoseq bench serve demo_out/run/best.pt (8 clients x 25 uploads + 4 streams for "
                     "30 s, all on 127.0.0.1)")
    p.add_argument("model", help="checkpoint .pt or exported .onnx to serve")
    p.add_argument("--clients", type=positive_int, default=8, help="upload clients at once")
    p.add_argument("--uploads", type=positive_int, default=25, help="uploads per client, one after another")
    p.add_argument("--streams", type=non_negative_int, default=4, help="webcam-like WebSocket streams")
    p.add_argument("--seconds", type=positive_float, default=30.0, help="how long each stream sends")
    p.add_argument("--stream-fps", type=positive_float, default=30.0, help="frames per second each stream sends")
    p.add_argument("--workers", type=non_negative_int, default=0, help="the server's model threads (0: its default)")


def _serve_run(args: argparse.Namespace) -> int:
    from videoseq.serve import missing_extra

    try:
        from videoseq.bench.serve import bench_serve
    except ImportError as err:
        raise missing_extra("videoseq bench serve", err) from err
    return bench_serve(args)


def _memory_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "example: videoseq bench memory (an 8K clip and a checkpoint asking for data.size: 20000)"
    p.add_argument("--width", type=positive_int, default=7680, help="width of the large clip")
    p.add_argument("--height", type=positive_int, default=4320, help="height of the large clip")
    p.add_argument("--frames", type=positive_int, default=2, help="frames of the large clip")
    p.add_argument("--size", type=positive_int, default=20000, help="data.size the crafted checkpoint asks for")
    p.add_argument("--limit-mb", type=positive_float, default=2048.0, help="peak RSS every case must stay under")


def _memory_run(args: argparse.Namespace) -> int:
    from videoseq.bench.memory import bench_memory

    peaks = bench_memory(width=args.width, height=args.height, frames=args.frames, size=args.size,
                         limit_mb=args.limit_mb)
    expected = [0, 0, 1]  # both clips predicted, the crafted checkpoint refused
    return 0 if all(p.rss_mb <= args.limit_mb for p in peaks) and [p.status for p in peaks] == expected else 1


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("example: videoseq bench predict --videos 500 --workers 2 --ranks 2 "
                     "(a folder of links to the real sample clips; configs/gestures.yaml with random weights)")
    p.add_argument("config", nargs="?", help="YAML config of the model (default: the shipped configs/gestures.yaml)")
    p.add_argument("--videos", type=positive_int, default=500,
                   help="files in the folder (links to the sample clips in turn)")
    p.add_argument("--workers", type=positive_int, default=2, help="decoding processes of the archive path")
    p.add_argument("--ranks", type=non_negative_int, default=2,
                   help="torchrun processes of the sharded run (0: leave it out)")
    p.add_argument("--warmup", type=non_negative_int, default=50, help="videos before memory growth is counted")
    p.add_argument("--out", help="folder for the links, the model and the CSVs (default: a new temporary folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable; default: none)")


def _predict_run(args: argparse.Namespace) -> int:
    from videoseq.bench.predict import bench_predict

    bench_predict(args.config, videos=args.videos, workers=args.workers, ranks=args.ranks, warmup=args.warmup,
                  out=args.out, overrides=args.set)
    return 0


MOTION_ROWS = ("rgb", "rgbdiff", "flow", "tsm_rgb", "tsm_flow", "fusion")
MOTION_TEST_SOURCES = ("vtest", "Megamind")


def _motion_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("example: nice -n 10 videoseq bench motion --out /tmp/bench_motion --rotate "
                     "(camera-motion clips of the real sample videos, split by source video)")
    p.add_argument("--out", default="/tmp/bench_motion", help="clips, runs and bench.json (finished runs are reused)")
    p.add_argument("--config", help="the recipe (default: the shipped configs/motion.yaml)")
    p.add_argument("--per-class", type=positive_int, default=24, help="clips per class per source")
    p.add_argument("--clip-frames", type=positive_int, default=20, help="frames per camera-motion clip")
    p.add_argument("--clip-size", type=positive_int, default=96, help="side of the square clips in pixels")
    p.add_argument("--test-sources", nargs=2, default=list(MOTION_TEST_SOURCES), help="file stems of the held-out pair")
    p.add_argument("--rotate", action="store_true", help="every held-out pair of the rotation, not one")
    p.add_argument("--rows", nargs="+", default=list(MOTION_ROWS), choices=MOTION_ROWS, help="models to train")
    p.add_argument("--fusion-weights", nargs=2, type=positive_float, default=[1.0, 1.5], metavar=("RGB", "FLOW"),
                   help="late-fusion weights of the RGB and flow streams (TSN's 1 : 1.5)")
    p.add_argument("--gestures", action="store_true", help="also train the rows on the synthetic gestures")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable; default: none)")


def _motion_run(args: argparse.Namespace) -> int:
    from videoseq.bench.motion import CONFIG, bench_motion

    args.config = args.config or str(CONFIG)
    bench_motion(args)
    return 0


def _threads_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("examples: videoseq bench threads; videoseq bench threads --steps 60 --repeats 2; "
                     "videoseq bench threads --settings before auto 1 --load-kind spin --load-session same")
    p.add_argument("--steps", type=positive_int, default=30,
                   help="training steps timed per setting (after the warm-up)")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="training steps before the timing starts")
    p.add_argument("--per-class", type=positive_int, default=20, help="synthetic gesture clips per class")
    p.add_argument("--repeats", type=positive_int, default=1, help="rounds per condition; the best round counts")
    p.add_argument("--load", type=non_negative_int,
                   help="processes of the competing load (default: one per core for train, two per core for spin)")
    p.add_argument("--load-kind", choices=("train", "spin"), default="train",
                   help="competing load: train (another resnet18 training job with torch's default threads) or "
                        "spin (a Python loop spinning on the CPU) (default: train)")
    p.add_argument("--load-session", choices=("own", "same"), default="own",
                   help="start the load in a session of its own, as other programs run, or in the benchmark's "
                        "session, where it competes thread by thread (default: own)")
    p.add_argument("--settings", nargs="+", metavar="SETTING",
                   help="before (no limits), auto (the default policy) and thread counts "
                        "(default: before, auto and every count from 1 to the cores)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo config (repeatable; default: none)")


def _threads_run(args: argparse.Namespace) -> int:
    from videoseq.bench.threads import bench_threads

    bench_threads(steps=args.steps, warmup=args.warmup, per_class=args.per_class, repeats=args.repeats,
                  load=args.load, load_kind=args.load_kind, load_session=args.load_session,
                  settings=args.settings, overrides=args.set)
    return 0


BENCH_KINDS: dict[str, BenchKind] = {
    "stream": BenchKind("streaming vs window re-run per frame, decoding included", _stream_arguments, _stream_run),
    "loader": BenchKind("clips/s: our loader vs decord ceiling, PyAV and OpenCV decode-all, frame cache; RSS",
                        _loader_arguments, _loader_run),
    "train": BenchKind("default model vs r3d_18; feature-cache vs frozen end-to-end epochs",
                       _train_arguments, _train_run),
    "heads": BenchKind("does the temporal head use time? mean vs the demo's head on synthetic gestures",
                       _heads_arguments, _heads_run),
    "captions": BenchKind("captions of held-out synthetic clips: BLEU and right motion/shape/colour words",
                          _captions_arguments, _captions_run),
    "decord": BenchKind("decode speed of sparse clips: decord beside OpenCV (compares two saved runs)",
                        _decord_arguments, _decord_run),
    "serve": BenchKind("load test of videoseq serve on loopback: concurrent uploads and webcam streams",
                       _serve_arguments, _serve_run),
    "memory": BenchKind("peak RSS of predict on an 8K clip and on a checkpoint crafted to exhaust memory",
                        _memory_arguments, _memory_run),
    "predict": BenchKind("videos/s over a folder of real clips: archive path vs a per-file loop vs torchrun; RSS",
                         _predict_arguments, _predict_run),
    "motion": BenchKind("motion on unseen real footage: RGB, rgbdiff, flow, TSM and two-stream, split by source",
                        _motion_arguments, _motion_run),
    "threads": BenchKind("training clips/s of the demo config per thread setting, idle and beside a competing "
                         "CPU load", _threads_arguments, _threads_run),
}
