"""``videoseq bench motion``: motion that generalises to unseen real footage, camera-motion clips split by source.

    videoseq bench motion [--out /tmp/bench_motion] [--test-sources vtest Megamind]
        [--rows rgb rgbdiff flow tsm_rgb tsm_flow fusion] [--rotate] [--gestures] [--set train.epochs=6]

Clips are cut from the five real sources of ../shared/videos by a crop window that
pans, tilts, zooms, rotates or stays still (``videoseq/camera_motion.py``, 9 classes,
chance 11%); the real content keeps its own motion. Every model trains from scratch
with the same recipe and budget (``configs/motion.yaml``: the demo's resnet18 cut after
layer2 + GRU, only the input and the temporal shift differ per row) on clips of three
sources, and is scored after its last epoch on the clips of the two held-out sources
(no checkpoint is chosen on them; the ``val`` split, from the training sources, is
validated after the last epoch only). The two-stream row is the fused checkpoint of the
RGB and the flow models (``videoseq fuse``, weights ``--fusion-weights``; TSN: 1 : 1.5),
scored through ``eval`` like the others.

Prints the optical-flow methods' accuracy (end-point error against the window's exact
flow over still frames) and cost, the loading cost of a clip per modality, and a table:
test top-1 on the unseen videos, training wall and CPU time, flow cost per clip.
``--rotate`` trains the chosen rows on each of five held-out pairs (every source held
out twice); ``--gestures`` also trains the rows on the demo's synthetic gestures (goal:
test top-1 >= 0.98 with motion inputs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np

from videoseq.bench import MOTION_TEST_SOURCES
from videoseq.bench.captions import cpu_seconds
from videoseq.camera_motion import (
    CAMERA_CLASSES,
    REAL_SOURCES,
    camera_path,
    read_source,
    render_clip,
    window_flow,
    write_camera_motion_clips,
    write_split_manifest,
)
from videoseq.config import Config, load_config
from videoseq.datasets import ClipDataset
from videoseq.engine.trainer import fit
from videoseq.evaluation import EvalOptions, open_eval
from videoseq.flow import FlowEstimator, available_flow_methods
from videoseq.fusion import fuse_checkpoints
from videoseq.manifest import read_manifest
from videoseq.modality import eval_preset, motion_input
from videoseq.resources import CONFIGS, shared_videos
from videoseq.sampling import ClipSampling
from videoseq.video.geometry import resize_short_side

CONFIG = CONFIGS / "motion.yaml"
MODALITY = {"rgb": "rgb", "rgbdiff": "rgbdiff", "flow": "flow", "tsm_rgb": "rgb", "tsm_flow": "flow", "fusion": "flow"}
ROWS: dict[str, list[str]] = {  # every row sets both motion options, whatever the config file says
    "rgb": ["data.modality=rgb", "model.temporal_shift=null"],
    "rgbdiff": ["data.modality=rgbdiff", "model.temporal_shift=null"],
    "flow": ["data.modality=flow", "model.temporal_shift=null"],
    "tsm_rgb": ["data.modality=rgb", "model.temporal_shift=bidirectional"],
    "tsm_flow": ["data.modality=flow", "model.temporal_shift=bidirectional"],
}
FUSION = ("rgb", "flow")  # the two streams of the fusion row
ROTATION = [MOTION_TEST_SOURCES, ("flipping_a_pancake", "box"), ("ucf_like_320x240", "Megamind"),
            ("vtest", "box"), ("flipping_a_pancake", "ucf_like_320x240")]  # each source held out twice


def clip_tree(out: Path, *, per_class: int, frames: int, size: int) -> dict[str, list[tuple[str, str]]]:
    """The clips of every source (written once; ``clips.json`` lists them)."""
    listing = out / "clips.json"
    if listing.is_file():
        return {k: [tuple(r) for r in v] for k, v in json.loads(listing.read_text()).items()}
    sources = [shared_videos() / name for name in REAL_SOURCES]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise SystemExit(f"missing real sources {missing}: the benchmark needs ../shared/videos (or VIDEOSEQ_VIDEOS)")
    clips = write_camera_motion_clips(out, sources, per_class=per_class, frames=frames, size=size)
    listing.write_text(json.dumps(clips))
    return clips


def flow_method_table(size: int, short_side: int, pairs_per_source: int = 18, repeats: int = 5) -> dict[str, dict]:
    """End-point error (px) and milliseconds per frame pair of every available flow method.

    Still frames of each source seen through windows of every class: the only motion is
    the window's, whose flow is known exactly (``window_flow``); two output frames
    apart (the model's stride), at the flow resolution ``short_side``.
    """
    rng = np.random.default_rng(0)
    pairs = []
    for name in REAL_SOURCES:
        frames, _ = read_source(shared_videos() / name)
        for k in range(pairs_per_source):
            path = camera_path(CAMERA_CLASSES[k % len(CAMERA_CLASSES)], rng, frames=3, size=size,
                               source_hw=frames.shape[1:3])
            clip = resize_short_side(render_clip(np.repeat(frames[rng.integers(len(frames))][None], 3, 0), path, size),
                                     short_side, area=True)
            truth = cv2.resize(window_flow(path, 0, 2, size), (short_side, short_side)) * (short_side / size)
            pairs.append((cv2.cvtColor(clip[0], cv2.COLOR_RGB2GRAY), cv2.cvtColor(clip[2], cv2.COLOR_RGB2GRAY), truth))
    border = short_side // 8
    estimators = {method: FlowEstimator(method) for method in available_flow_methods()}
    table = {method: {"ms_per_pair": float("inf")} for method in estimators}
    for _ in range(repeats):  # methods interleaved, the fastest pass counts: robust to a shared machine
        for method, estimator in estimators.items():
            estimator(*pairs[0][:2])  # the first call creates the OpenCV object
            start = time.perf_counter()
            flows = [estimator(a, b) for a, b, _ in pairs]
            ms = 1000 * (time.perf_counter() - start) / len(pairs)
            errors = [np.linalg.norm(f - t, axis=-1)[border:-border, border:-border].mean()
                      for f, (_, _, t) in zip(flows, pairs)]
            table[method] = {"epe_px": float(np.mean(errors)), "ms_per_pair": min(ms, table[method]["ms_per_pair"])}
    return table


def clip_costs(config: Config, videos: list[tuple[str, int]], clips: int = 60) -> dict[str, float]:
    """Milliseconds to load one eval clip (decode, motion, preset) of each modality, in this process."""
    costs = {}
    for modality in ("rgb", "rgbdiff", "flow"):
        d = dataclasses.replace(config.data, modality=modality)
        dataset = ClipDataset(videos[:clips], clips=ClipSampling.from_data(d), transform=eval_preset(d), train=False,
                              motion=motion_input(d))
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        costs[modality] = 1000 * (time.perf_counter() - start) / len(dataset)
    return costs


def train_row(config: Config, run: Path) -> dict:
    """Train (or reuse a finished run of) one row; its wall and CPU seconds."""
    timing = run / "bench_row.json"
    if timing.is_file():
        return json.loads(timing.read_text())
    wall, cpu = time.time(), cpu_seconds()
    fit(config, run)
    result = {"train_wall_s": round(time.time() - wall, 1), "train_cpu_s": round(cpu_seconds() - cpu, 1)}
    timing.write_text(json.dumps(result))
    return result


def test_top1(checkpoint: Path, manifest: Path) -> float:
    """Top-1 of a checkpoint on the test videos of ``manifest`` (one clip per video)."""
    run_eval = open_eval(checkpoint, manifest, EvalOptions(split="test", device="cpu", num_workers=2))
    result, _ = run_eval.evaluate_views(1, 1)
    return float((result["video_scores"].argmax(1) == result["video_labels"]).mean())


def run_rows(folder: Path, data: list[str], rows: list[str], args) -> dict[str, dict]:
    """Train and score ``rows`` on one data set (``data``: its config settings), plus the fusion row.

    Each row's run is ``folder/ROW``; its test clips are those of ``data.manifest``, or of the manifest the
    run wrote (a dataset root).
    """
    results, manifest = {}, None
    for row in [r for r in rows if r in ROWS]:
        config = load_config(args.config, data + ROWS[row] + args.set)
        results[row] = train_row(config, folder / row)
        manifest = Path(config.data.manifest) if config.data.manifest else folder / row / "manifest.csv"
        results[row]["top1"] = test_top1(folder / row / "last.pt", manifest)
        print(f"{folder.name} {row}: test top-1 {results[row]['top1']:.3f} ({results[row]})")
    if "fusion" in rows and all(r in results for r in FUSION):
        fused = fuse_checkpoints([folder / r / "last.pt" for r in FUSION], args.fusion_weights, folder / "fusion.pt")
        results["fusion"] = {"top1": test_top1(fused, manifest),
                             **{k: total([results[r][k] for r in FUSION]) for k in ("train_wall_s", "train_cpu_s")}}
        print(f"{folder.name} fusion: test top-1 {results['fusion']['top1']:.3f} ({results['fusion']})")
    return results


def run_split(out: Path, clips: dict, test_sources: tuple[str, str], rows: list[str], args) -> dict[str, dict]:
    """Every row on one held-out pair of sources."""
    split = out / "splits" / "+".join(test_sources)
    manifest = write_split_manifest(split, out, clips, list(test_sources))
    return run_rows(split, [f"data.manifest={manifest}"], rows, args)


def gestures_check(out: Path, rows: list[str], args) -> dict[str, dict]:
    """The rows on the demo's synthetic gestures (60 clips per class, seed 0), scored after the last epoch."""
    from videoseq.demo import DEMO_PER_CLASS
    from videoseq.synth import FLIP_SWAP, write_gesture_dataset

    data = write_gesture_dataset(out / "gestures", per_class=DEMO_PER_CLASS["classify"], seed=0)
    swap = "{" + ", ".join(f"{a}: {b}" for a, b in FLIP_SWAP.items()) + "}"
    settings = [f"data.root={data / 'videos'}", "data.format=ucf101", "data.manifest=null",
                f"data.splits_dir={data / 'splits'}", "data.val_split=test", f"data.flip_swap={swap}"]
    return run_rows(out / "gestures_runs", settings, rows, args)


def total(values: list[float | None]) -> float | None:
    """The sum, or None when one of the values was not measured (a reused run without its CPU time)."""
    return None if any(v is None for v in values) else sum(values)


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def print_table(results: dict[str, dict[str, dict]], costs: dict[str, float]) -> None:
    """One row per model: test top-1 per held-out pair (and their mean), timings of the first pair, motion cost."""
    splits = list(results)
    rows = list(dict.fromkeys(r for split in results.values() for r in split))
    width = max(max(len(s) for s in splits), 6) + 2
    print("\nrow       " + "".join(f"{s:>{width}s}" for s in splits) + ("    mean" if len(splits) > 1 else "")
          + "  train wall s  train CPU s  motion ms/clip")
    for row in rows:
        tops = [results[s][row]["top1"] for s in splits if row in results[s]]
        first = results[splits[0]].get(row, {})
        motion_ms = costs[MODALITY[row]] - costs["rgb"]  # computed per clip, beyond decoding
        mean = f"{np.mean(tops):8.3f}" if len(splits) > 1 else ""
        print(f"{row:9s} " + "".join(f"{t:{width}.3f}" for t in tops) + mean
              + f"{seconds(first.get('train_wall_s')):>14s}{seconds(first.get('train_cpu_s')):>13s}{motion_ms:16.1f}")


def bench_motion(args: argparse.Namespace) -> dict:
    """Every row on the held-out pair(s), the flow methods and the loading cost per clip; prints the tables."""
    cv2.setNumThreads(1)
    out = Path(args.out)
    clips = clip_tree(out, per_class=args.per_class, frames=args.clip_frames, size=args.clip_size)
    config = load_config(args.config, args.set)
    short_side = config.data.flow_size or int(round(config.data.size / 0.875))
    methods = flow_method_table(args.clip_size, short_side)
    print(f"\nflow methods at {short_side} px, frames 2 apart (end-point error vs the exact window flow):")
    for method, r in methods.items():
        print(f"  {method:14s} EPE {r['epe_px']:.3f} px   {r['ms_per_pair']:.2f} ms per pair")
    splits = ROTATION if args.rotate else [tuple(args.test_sources)]
    results = {"+".join(s): run_split(out, clips, s, args.rows, args) for s in splits}
    manifest = out / "splits" / "+".join(splits[0]) / "manifest.csv"
    costs = clip_costs(config, read_manifest(manifest).videos("test"))
    print("\nloading one eval clip: " + ", ".join(f"{m} {ms:.1f} ms" for m, ms in costs.items())
          + f" (flow: {config.data.flow_method}, stack {config.data.flow_stack})")
    print_table(results, costs)
    summary = {"methods": methods, "costs": costs, "results": results}
    if args.gestures:
        summary["gestures"] = gestures_check(out, args.rows, args)
        print("\nsynthetic gestures (goal: >= 0.98 with motion inputs): "
              + ", ".join(f"{row} {r['top1']:.3f}" for row, r in summary["gestures"].items()))
    (out / "bench.json").write_text(json.dumps(summary, indent=2))
    return summary
