"""The command line: parse arguments, build a config, call one library function.

example: videoseq train configs/own_footage.yaml --set data.root=data/my_videos --out runs/mine
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from videoseq import __version__
from videoseq.cli_motion import add_camera_motion, add_fuse
from videoseq.cli_predict import (
    add_archive_arguments,
    add_stream_arguments,
    archive_options,
    cmd_stream,
    event_options,
    given,
)
from videoseq.errors import (
    DEBUG_VARIABLE,
    INPUT_STATUS,
    INTERNAL_STATUS,
    USAGE_STATUS,
    UsageError,
    VideoseqError,
    one_line,
)
from videoseq.flags import (
    fraction,
    integer,
    non_negative_int,
    positive_float,
    positive_int,
)


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        quiet = default is None or default is False or default == [] or default == argparse.SUPPRESS
        quiet = quiet or action.nargs == 0 or action.required
        if quiet or not action.option_strings or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"


class ExamplesFormatter(argparse.RawDescriptionHelpFormatter, DefaultsFormatter):
    """``DefaultsFormatter`` for a command whose description is a block of example lines, kept as written."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows the defaults (subcommands' parsers are of this class too) and whose
    usage errors are one line (exit 2), pointing at ``--help`` instead of printing the usage."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_STATUS, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def cmd_train(args: argparse.Namespace) -> int:
    from videoseq.config import load_config
    from videoseq.engine.trainer import fit
    from videoseq.resume import TrainingInterrupted

    threads = [] if args.threads is None else [f"train.threads={args.threads}"]
    config = load_config(args.config, args.set + threads)
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise UsageError(f"--resume {args.resume} continues that run folder; drop --out {args.out}")
    out = args.resume or args.out or f"runs/{Path(args.config).stem}"
    try:
        fit(config, out, resume=bool(args.resume), overwrite=args.overwrite)
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        return stop.exit_status
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from videoseq.evaluation import EvalOptions, run_eval

    run_eval(args.checkpoint, out_dir=args.out, manifest=args.manifest, options=EvalOptions(**given(args, EvalOptions)),
             overwrite=args.overwrite)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from videoseq.evaluation import run_metrics

    run_metrics(args.predictions, classes=args.classes, out_dir=args.out, overwrite=args.overwrite)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from videoseq.compare import compare_evals

    compare_evals(args.a, args.b, top=args.top)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from videoseq.archive import ArchiveInterrupted
    from videoseq.predict_files import PredictOptions, predict_to_csv

    if args.stream:
        return cmd_stream(args)
    if args.stride and not args.window:
        raise UsageError("--stride needs --window (both in seconds)")
    timeline = Path(args.timeline) if args.timeline else None
    options = PredictOptions(topk=args.topk, window=args.window, stride=args.stride, beam=args.beam,
                             device=args.device, threads="auto" if args.threads is None else args.threads,
                             timeline=timeline, events=event_options(args), archive=archive_options(args))
    try:
        failures = predict_to_csv(args.checkpoint, args.sources, args.csv, options)
    except ArchiveInterrupted as stop:
        print(stop, file=sys.stderr)
        return stop.exit_status
    return 1 if failures else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from videoseq.synth import write_gesture_dataset

    out = write_gesture_dataset(args.out, per_class=args.per_class, seed=args.seed, frames=args.frames,
                                size=args.size, captions=args.captions)
    print(f"wrote synthetic gestures to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from videoseq.demo import run_demo

    run_demo(args.out, config=args.config, overrides=args.set, per_class=args.per_class, seed=args.seed,
             task=args.task)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from videoseq.config import DataConfig
    from videoseq.prepare import prepare_dataset

    data = DataConfig(**given(args, DataConfig))  # root, format and the flags given
    _, summary = prepare_dataset(data, args.out, overwrite=args.overwrite)
    print(summary)
    print(f"wrote {Path(args.out) / 'manifest.csv'} and classes.txt")
    return 0


def cmd_prepare_videos(args: argparse.Namespace) -> int:
    from videoseq.transcode import TranscodeJob, transcode_tree

    job = TranscodeJob(kind=args.kind, short_side=args.short_side, fps=args.fps, quality=args.quality)
    failures = transcode_tree(args.root, args.out, job, workers=args.workers, timeout=args.timeout)
    return 1 if failures else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from videoseq.doctor import run_doctor

    report = run_doctor(args.target, out_dir=args.out, write_clean=args.write_clean, data_format=args.format,
                        splits_dir=args.splits_dir, fold=args.fold, root=args.root, min_frames=args.min_frames,
                        workers=args.workers, timeout=args.timeout, overwrite=args.overwrite)
    return 1 if report.errors() else 0


def cmd_features(args: argparse.Namespace) -> int:
    if args.frames:
        return cmd_frame_cache(args)
    from videoseq.features import extract_features

    if args.short_side:
        raise UsageError("--short-side sizes the frames of a frame cache: add --frames")
    extract_features(args.source, args.manifest, args.out, fps=args.fps, spatial=args.spatial, device=args.device,
                     shard_videos=args.shard_videos or 64, batch_frames=args.batch_frames, max_videos=args.max_videos,
                     workers=args.workers, overwrite=args.overwrite)
    return 0


def cmd_frame_cache(args: argparse.Namespace) -> int:
    from videoseq.framecache import extract_frames

    if args.spatial:
        raise UsageError("--spatial stores feature maps; a frame cache (--frames) stores frames: drop one of them")
    extract_frames(args.source, args.manifest, args.out, fps=args.fps, short_side=args.short_side,
                   shard_videos=args.shard_videos or 16, max_videos=args.max_videos, workers=args.workers,
                   overwrite=args.overwrite)
    return 0


def add_features(sub) -> None:
    p = sub.add_parser("features", help="a feature cache (a frozen backbone run once over every video) or, with "
                                        "--frames, a frame cache (resized uint8 frames) for train",
                       description="examples: videoseq features configs/ucf101_resnet18_gru.yaml --manifest "
                                   "data/ucf101_f1/manifest.csv --fps 8 --out data/ucf101_f1_feats, then train with "
                                   "--set data.features=data/ucf101_f1_feats; videoseq features "
                                   "configs/ucf101_resnet18_gru.yaml --manifest data/ucf101_f1/manifest.csv --frames "
                                   "--out data/ucf101_f1_frames, then train with "
                                   "--set data.frame_cache=data/ucf101_f1_frames; on 4 GPUs: torchrun "
                                   "--nproc_per_node=4 -m videoseq features runs/ucf/best.pt --manifest "
                                   "data/ucf101_f1/manifest.csv --device cuda --out data/ucf101_f1_feats (the same "
                                   "line again resumes a run that was stopped or killed)")
    p.add_argument("source", metavar="CONFIG_OR_CHECKPOINT",
                   help="YAML config (its model.pretrained) or a .pt checkpoint")
    p.add_argument("--manifest", required=True, help="manifest CSV: every video in it is extracted")
    p.add_argument("--out", required=True, help="cache folder; finished videos are journaled in it, so rerunning "
                                                "resumes where it stopped (under torchrun: a folder every rank sees)")
    p.add_argument("--overwrite", action="store_true", help="start the cache in --out afresh (or write it beside "
                                                            "other files there)")
    p.add_argument("--fps", type=positive_float, help="frame rate of the cache (default: every frame; with --frames: "
                                             "the config's data.fps, else every frame)")
    p.add_argument("--spatial", action="store_true", help="also store feature maps (ConvLSTM); size printed first")
    p.add_argument("--frames", action="store_true", help="store resized uint8 frames instead of features "
                                                         "(a frame cache: decoding once, augmentation still applies)")
    p.add_argument("--short-side", type=positive_int, help="--frames: short side of the stored frames (default: "
                                                  "data.size / 0.875, the eval preset's resize)")
    p.add_argument("--device", default="cpu", help="device of the backbone (features only)")
    p.add_argument("--shard-videos", type=positive_int, help="videos per shard (default: 64 for features, 16 with "
                                                             "--frames)")
    p.add_argument("--batch-frames", type=positive_int, default=64, help="frames per backbone batch (features only)")
    p.add_argument("--max-videos", type=positive_int, help="stop after this many new videos, run it again to go on "
                                                           "(default: every video)")
    p.add_argument("--workers", type=positive_int, default=2, help="decoding processes (of each torchrun rank); a "
                                                                   "file that crashes or hangs one costs only itself")
    p.set_defaults(func=cmd_features)


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="example: videoseq train configs/demo.yaml --set train.epochs=5 --out runs/demo")
    p.add_argument("config", help="YAML config (see configs/; configs/own_footage.yaml for a folder of class folders)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value as YAML, e.g. train.epochs=5 (repeatable; default: none)")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last.pt, exactly (default: start a new run)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run folder that holds a run (its checkpoints are replaced); without it, "
                        "such a folder needs --resume")
    p.add_argument("--threads", type=positive_int, help="CPU threads of torch and OpenCV, as train.threads (default: "
                                                        "the config's, auto: this process's share of the cores)")
    p.set_defaults(func=cmd_train)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a split",
                       description="example: videoseq eval runs/demo/best.pt --views 5x1 --out runs/demo/eval")
    p.add_argument("checkpoint", help="a .pt checkpoint written by videoseq train")
    p.add_argument("--manifest", help="manifest CSV (default: the data the checkpoint was trained on)")
    p.add_argument("--split", help="split of the manifest to evaluate (default: test, as evaluation.EvalOptions)")
    p.add_argument("--out", default="eval", help="folder for report.html, report.json, predictions.csv, figures")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier evaluation in --out")
    p.add_argument("--views", help="CLIPSxCROPS test views per video, e.g. 10x3 (crops 1 or 3; default: the "
                   "config's test_views x 1); more than one also reports single view beside")
    p.add_argument("--aggregate", choices=["mean_softmax", "mean_logits", "max"],
                   help="how the views' scores make the video's (default: mean_softmax)")
    p.add_argument("--per-view", action="store_true", help="also one predictions.csv row per view")
    p.add_argument("--batch-size", type=positive_int, help="clips per batch (default: 8)")
    p.add_argument("--workers", dest="num_workers", type=non_negative_int,
                   help="DataLoader workers (default: every available CPU core)")
    p.add_argument("--threads", type=positive_int, help="CPU threads of torch and OpenCV in the main process "
                                               "(default: auto, this process's share of the cores)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--beam", type=positive_int, help="caption models: beam size (default: the config's caption.beam)")
    p.set_defaults(func=cmd_eval)


def add_metrics(sub) -> None:
    p = sub.add_parser("metrics", help="recompute every metric from a predictions.csv",
                       description="example: videoseq metrics runs/demo/eval/predictions.csv --out metrics/. "
                       "Columns: path,label[,view],label_1,score_1,...,label_k,score_k (see docs/evaluation.md)")
    p.add_argument("predictions", help="predictions.csv")
    p.add_argument("--classes", help="class list, one per line (default: classes.txt beside the file)")
    p.add_argument("--out", help="also write report.json, report.html, per-class and confusion files here "
                                 "(default: print the metrics only)")
    p.add_argument("--overwrite", action="store_true", help="replace report files already in --out")
    p.set_defaults(func=cmd_metrics)


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="compare two evaluations: metric differences, per-class changes, McNemar",
                       description="example: videoseq compare runs/a/eval runs/b/eval")
    p.add_argument("a", help="eval folder (or its predictions.csv)")
    p.add_argument("b", help="eval folder (or its predictions.csv)")
    p.add_argument("--top", type=positive_int, default=10, help="classes listed among gains and losses")
    p.set_defaults(func=cmd_compare)


PREDICT_EXAMPLES = """examples:
  videoseq predict runs/demo/best.pt clips/ "more/*.mp4" --csv out.csv --topk 3
  # an archive on 2 GPUs (or CPU processes), resumable: rerun the same line with --resume after a stop or a crash
  torchrun --nproc_per_node=2 -m videoseq predict runs/ucf/best.pt /archive/ --csv archive.csv --workers 4
  torchrun --nproc_per_node=2 -m videoseq predict runs/ucf/best.pt /archive/ --csv archive.csv --workers 4 --resume
  # a long video as labelled segments: subtitles (.srt, .vtt), a timeline figure, segments.csv / .json
  videoseq predict runs/gestures/best.pt match.mp4 --window 2 --stride 1 --csv windows.csv --timeline timeline/ \\
      --background Nothing --threshold 0.6 --min-duration 2
  mpv --sub-file=timeline/match.srt match.mp4
"""


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify files, folders, globs or manifests into a CSV; timelines of "
                                       "long videos; live streams",
                       description=PREDICT_EXAMPLES, formatter_class=ExamplesFormatter)
    p.add_argument("checkpoint", help="a .pt checkpoint, or an export of it: .onnx or .torchscript.pt")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="video file, folder, glob or manifest CSV (its path column); with --stream one file, "
                        "camera index (0) or URL")
    p.add_argument("--csv", help="output CSV, written whole when every video is done; finished videos are "
                                 "journaled beside it (default: print to stdout, no journal)")
    p.add_argument("--topk", type=positive_int, default=5, help="labels and scores per row")
    p.add_argument("--window", type=positive_float, help="window length in seconds: one row per window "
                                                         "(default: one row per whole video)")
    p.add_argument("--stride", type=positive_float, help="window step in seconds (default: --window)")
    p.add_argument("--timeline", metavar="DIR", help="with --window: merge the windows into segments (the event "
                   "options below) and write DIR/segments.csv, segments.json and per video .srt, .vtt and .png "
                   "(default: none)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (exports run on the CPU)")
    p.add_argument("--threads", type=positive_int, help="CPU threads of torch and OpenCV (default: auto, every core, "
                                                        "or $OMP_NUM_THREADS)")
    p.add_argument("--beam", type=positive_int, help="caption models: beam size of the caption column, 1 is greedy "
                                                     "(default: the config's caption.beam)")
    add_archive_arguments(p, "--csv (with --stream also --jsonl, --save-video)")
    add_stream_arguments(p)
    p.set_defaults(func=cmd_predict)


def cmd_export(args: argparse.Namespace) -> int:
    from videoseq.export import export_command

    return export_command(args.checkpoint, args.out, args.format, args.streaming, overwrite=args.overwrite)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript, checked against PyTorch",
                       description="example: videoseq export runs/demo/best.pt --format onnx --streaming")
    p.add_argument("checkpoint", help="a .pt checkpoint written by videoseq train")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                   help="onnx (onnxruntime) or torchscript (torch.jit); videoseq predict runs both")
    p.add_argument("--out", help="output file (default: the checkpoint's name with .onnx / .torchscript.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace export files that exist already")
    p.add_argument("--streaming", action="store_true",
                   help="also write the per-frame backbone (OUT.frames.*) and the head over the buffer (OUT.head.*)")
    p.set_defaults(func=cmd_export)


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from videoseq.serve import missing_extra
    from videoseq.serve.limits import ServeLimits

    try:
        from videoseq.serve.app import serve_checkpoint
    except ImportError as err:
        raise missing_extra("videoseq serve", err) from err
    limits = ServeLimits(**{f.name: getattr(args, f.name) for f in fields(ServeLimits)})
    serve_checkpoint(args.checkpoint, host=args.host, port=args.port, limits=limits, device=args.device)
    return 0


def add_serve(sub) -> None:
    from dataclasses import fields

    from videoseq.serve.limits import ServeLimits

    p = sub.add_parser("serve", help="an HTTP API and a browser page for a model: uploads and live webcam",
                       description="example: videoseq serve demo_out/run/best.pt, then open http://127.0.0.1:8000/ "
                       "(API: POST /v1/predict, WS /v1/stream, GET /v1/model, /healthz, /metrics; "
                       "curl -F file=@clip.mp4 'http://127.0.0.1:8000/v1/predict?window=2&stride=1')")
    p.add_argument("checkpoint", help=".pt checkpoint or exported .onnx (streams need the --streaming parts)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=integer(1, 65535), default=8000, help="TCP port to listen on")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (exports run on the CPU)")
    for f in fields(ServeLimits):
        counts = non_negative_int if f.name == "workers" else positive_int  # workers 0: the default
        p.add_argument("--" + f.name.replace("_", "-"), type=counts if isinstance(f.default, int) else positive_float,
                       default=f.default,
                       help=f"{f.metadata['help']} (default {f.default})")
    p.set_defaults(func=cmd_serve)


def add_bench(sub) -> None:
    from videoseq.bench import BENCH_KINDS

    p = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCH_KINDS),
                       description="examples: videoseq bench stream configs/gestures.yaml --source clip.avi; "
                       "videoseq bench loader; videoseq bench train --epochs 3")
    kinds = p.add_subparsers(dest="kind", required=True)
    for name, kind in BENCH_KINDS.items():
        k = kinds.add_parser(name, help=kind.help)
        kind.add_arguments(k)
        k.set_defaults(func=kind.run)


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write synthetic datasets",
                       description="example: videoseq synth gestures data/gestures --per-class 40 --seed 0")
    kinds = p.add_subparsers(dest="kind", required=True)
    g = kinds.add_parser("gestures", help="UCF101-style tree of clips that differ only in temporal order",
                         description="example: videoseq synth gestures data/gestures --per-class 40 --seed 0")
    g.add_argument("out", help="folder for videos/<Class>/*.avi and splits/ (UCF101 layout)")
    g.add_argument("--per-class", type=positive_int, default=30, help="clips per class")
    g.add_argument("--seed", type=non_negative_int, default=0, help="seed of the clips' shapes, colours and motion")
    g.add_argument("--frames", type=positive_int, default=24, help="frames per clip")
    g.add_argument("--size", type=positive_int, default=112, help="frame side in pixels")
    g.add_argument("--captions", action="store_true",
                   help="also write captions.csv and manifest.csv (one row per reference caption)")
    g.set_defaults(func=cmd_synth)
    add_camera_motion(kinds)


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="synthesise, train, evaluate and predict in one go (CPU, minutes)",
                       description="examples: videoseq demo --out demo_out; "
                                   "videoseq demo --task caption --out demo_captions")
    p.add_argument("--out", default="demo_out", help="folder for data/, run/, eval/ and predictions.csv")
    p.add_argument("--config", help="config (default configs/demo.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the config (repeatable; default: none)")
    p.add_argument("--per-class", type=positive_int,
                   help="synthetic clips per class (default: 60; 480 with --task caption)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic clips")
    p.add_argument("--task", choices=("classify", "caption"), default="classify",
                   help="caption: synthesise captions and train configs/captions.yaml")
    p.set_defaults(func=cmd_demo)


def _add_transcode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="tree of videos (hidden files and folders are skipped)")
    p.add_argument("--out", required=True, help="output tree: same relative paths; nothing is written outside it")
    p.add_argument("--fps", type=positive_float, help="drop frames to this rate (default: keep every frame)")
    p.add_argument("--workers", type=positive_int, default=2, help="processes working in parallel")
    p.add_argument("--timeout", type=positive_float, default=600.0, help="seconds one video may take")
    p.set_defaults(func=cmd_prepare_videos)


def add_prepare(sub) -> None:
    from videoseq.config import DataConfig
    from videoseq.prepare import FORMATS

    p = sub.add_parser("prepare", help="dataset layouts -> manifest; re-encode or extract frames",
                       description="example: videoseq prepare ucf101 data/UCF-101 --fold 1 --out data/ucf101_f1")
    kinds = p.add_subparsers(dest="format", required=True)
    for name, dataset_format in FORMATS.items():
        f = kinds.add_parser(name, help=f"{name} layout -> manifest.csv + classes.txt",
                             description=f"example: videoseq prepare {name} {dataset_format.example} --out data/{name}")
        f.add_argument("root", help="dataset root")
        f.add_argument("--out", required=True, help="folder for manifest.csv, classes.txt, summary.txt, notes.txt")
        f.add_argument("--overwrite", action="store_true", help="replace the manifest files already in --out")
        f.add_argument("--splits-dir", help="annotation files (default: a usual place near ROOT)")
        f.add_argument("--fold", type=positive_int,
                       help=f"ucf101 / hmdb51 split number (1-3; default {DataConfig.fold})")
        f.add_argument("--group-pattern", help="folder: regex whose first group names a file's source video "
                                               f"(default: UCF's {DataConfig.group_pattern})")
        f.add_argument("--val-fraction", type=fraction, help=f"folder format (default {DataConfig.val_fraction})")
        f.add_argument("--test-fraction", type=fraction, help=f"folder format (default {DataConfig.test_fraction})")
        f.set_defaults(func=cmd_prepare)
    r = kinds.add_parser("resize", help="re-encode a tree with a smaller short side (same relative paths)",
                         description="example: videoseq prepare resize data/UCF-101 --short-side 128 --out data/ucf128")
    r.add_argument("--short-side", type=positive_int, required=True,
                   help="short side of the re-encoded videos in pixels")
    r.add_argument("--quality", type=non_negative_int, default=23,
                   help="encoder quality: x264 CRF / mpeg4 scale (lower is better)")
    _add_transcode_options(r)
    r.set_defaults(kind="resize")
    f = kinds.add_parser("frames", help="extract JPEG frame folders (ROOT/a/b.avi -> OUT/a/b/00001.jpg)",
                         description="example: videoseq prepare frames data/UCF-101 --size 128 --out data/ucf_frames")
    f.add_argument("--size", dest="short_side", type=positive_int, help="short side of the frames (default: unchanged)")
    f.add_argument("--quality", type=integer(1, 100), default=90, help="JPEG quality 1-100")
    _add_transcode_options(f)
    f.set_defaults(kind="frames")


def add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check a manifest or dataset root before training",
                       description="example: videoseq doctor data/ucf101_f1/manifest.csv --workers 4 "
                                   "--write-clean data/ucf101_f1/clean.csv")
    p.add_argument("target", metavar="MANIFEST_OR_ROOT", help="manifest CSV, its folder, or a dataset root")
    p.add_argument("--workers", type=positive_int, default=2, help="decoding processes")
    p.add_argument("--min-frames", type=positive_int, default=1, help="videos with fewer decodable frames are errors")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds one file may take to check")
    p.add_argument("--out", default=".", help="folder for doctor.json")
    p.add_argument("--write-clean", metavar="OUT.csv", help="write the manifest without the bad rows (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace doctor.json / the --write-clean file")
    p.add_argument("--format", help="read a dataset root as this format (default: ucf101 if classInd.txt is near, "
                                    "else folder)")
    p.add_argument("--splits-dir", help="annotation files of a dataset root (default: a usual place near it)")
    p.add_argument("--fold", type=positive_int, default=1, help="ucf101 / hmdb51 split number of a dataset root")
    p.add_argument("--root", help="tree to search for files no split lists (default: where the listed files are)")
    p.set_defaults(func=cmd_doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="videoseq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"videoseq {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train, add_eval, add_predict, add_synth, add_demo, add_prepare, add_doctor, add_features,
                add_metrics, add_compare, add_export, add_fuse, add_bench, add_serve):
        add(sub)
    add_debug_flag(sub)
    return parser


DEBUG_HELP = f"on an error, also print the traceback (or set {DEBUG_VARIABLE}=1)"


def add_debug_flag(sub) -> None:
    """``--debug`` on every subcommand too (``videoseq predict ... --debug``), kept when not given there."""
    for parser in sub.choices.values():
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                add_debug_flag(action)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure leaves as one line on stderr and an exit status (``videoseq.errors``).

    0 done, 1 an input failed, 2 a usage error, 130 interrupted, 70 an internal error
    (a bug: ``--debug`` or ``VIDEOSEQ_DEBUG=1`` shows its traceback).
    """
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the one boundary: typed errors are the user's, anything else a bug
        if debug:
            traceback.print_exception(err)
        status, message = describe_error(err)
        print(f"videoseq {args.command}: {message}", file=sys.stderr)
        return status


def describe_error(err: Exception) -> tuple[int, str]:
    """The exit status and the one line that report ``err``."""
    if isinstance(err, VideoseqError):
        return err.exit_status, f"error: {one_line(err)}"
    if isinstance(err, OSError) and err.filename:  # a file the system refused: permissions, disk full, ...
        where = err.filename + (f" -> {err.filename2}" if err.filename2 else "")
        return INPUT_STATUS, f"error: {where}: {err.strerror or err}; check that it exists and that you may use it"
    return INTERNAL_STATUS, (f"internal error: {type(err).__name__}: {one_line(err, 300)}; rerun with --debug "
                             f"(or {DEBUG_VARIABLE}=1) for the traceback, and report it")
