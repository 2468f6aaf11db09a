"""``videoseq eval`` and ``metrics``: a checkpoint on one split, with files people can read.

``eval`` writes into the eval folder:

- ``predictions.csv``: one row per video (``view`` = ``video``): path, true label, the
  top-k labels and scores; ``--per-view`` adds one row per test view (``view`` =
  ``t<clip>c<crop>``);
- ``classes.txt``: the class list, so ``videoseq metrics`` sees classes nobody predicted;
- ``report.json``: every metric (video and clip level, single view beside multi-view)
  and the run's config;
- ``per_class.csv``, ``per_class.png``, ``confusion.csv``, ``confusion.png``;
- ``report.html``: figures and tables in one self-contained page.

Every metric is computed from the ranked top-k predictions that ``predictions.csv``
holds (scores rounded to 6 decimals), so ``videoseq metrics predictions.csv``
recomputes exactly what ``eval`` reported.

A caption model writes its captions (path, label, generated caption, its references
joined by " | ") to ``predictions.csv`` (``model.task: caption``, which writes no class
files) or, beside the class predictions, to ``captions.csv`` (``model.task: both``), and
puts BLEU-1..4 (CIDEr-D and METEOR where they can run) under ``caption`` in ``report.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from videoseq.checkpoint import open_source
from videoseq.config import Config
from videoseq.datasets import ClipDataset, LoaderOptions, make_loader
from videoseq.engine.loops import BadVideos, evaluate, evaluate_captions
from videoseq.errors import InputError, UsageError
from videoseq.manifest import Manifest, read_classes, read_manifest
from videoseq.metrics import (
    AGGREGATIONS,
    aggregate_views,
    plot_confusion,
    plot_per_class,
    rank_classes,
    ranked_metrics,
)
from videoseq.misclassified import clip_strips, misclassified_rows
from videoseq.modality import eval_preset, motion_input
from videoseq.models.decoding import Decoding
from videoseq.outputs import check_output_folder, write_text
from videoseq.prepare import resolve_manifest
from videoseq.report import format_summary, summary, summary_rows, write_html_report
from videoseq.runtime import available_workers, select_device, set_threads
from videoseq.sampling import ClipSampling
from videoseq.tables import read_csv, write_csv
from videoseq.text import Vocabulary
from videoseq.video.geometry import EVAL_CROPS

TOPK = 5
SCORE_DECIMALS = 6
VIDEO_ROW = "video"


@dataclass
class Predictions:
    """Ranked predictions, one row per video or per view, as in ``predictions.csv``."""

    classes: list[str]
    paths: list[str]
    views: list[str]  # "video" for a whole video, "t<clip>c<crop>" for one test view
    labels: np.ndarray  # (N,) true class ids
    ranked: np.ndarray  # (N, k) class ids, best first
    scores: np.ndarray  # (N, k) their scores, rounded to SCORE_DECIMALS

    def select(self, video_rows: bool) -> Predictions:
        """The whole-video rows, or the per-view rows."""
        keep = np.array([(v == VIDEO_ROW) == video_rows for v in self.views], dtype=bool)
        return Predictions(self.classes, [p for p, k in zip(self.paths, keep) if k],
                           [v for v, k in zip(self.views, keep) if k], self.labels[keep], self.ranked[keep],
                           self.scores[keep])

    def metrics(self) -> dict:
        return ranked_metrics(self.labels, self.ranked, self.scores[:, 0], self.classes)


def from_scores(scores: np.ndarray, labels: np.ndarray, paths: list[str], views: list[str],
                classes: list[str]) -> Predictions:
    """Rank (N, C) scores, keep the top-k and round their scores as the CSV stores them."""
    ranked = rank_classes(scores, min(TOPK, len(classes)))
    kept = np.round(np.take_along_axis(scores, ranked, axis=1), SCORE_DECIMALS)
    return Predictions(classes, paths, views, np.asarray(labels), ranked, kept)


def parse_views(text: str | int) -> tuple[int, int]:
    """``"10x3"`` -> (10 temporal clips, 3 spatial crops); ``"5"`` -> (5, 1)."""
    parts = str(text).lower().split("x")
    try:
        temporal, crops = (int(parts[0]), int(parts[1]) if len(parts) == 2 else 1)
        ok = len(parts) <= 2 and temporal >= 1 and crops in EVAL_CROPS
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--views {text!r}: expected CLIPSxCROPS such as 10x3 or 5x1 "
                         f"(clips >= 1, crops in {list(EVAL_CROPS)})")
    return temporal, crops


def prediction_table(preds: Predictions) -> tuple[list[str], list[list]]:
    """Header and rows of ``predictions.csv``: path, label, view, label_1, score_1, ..., label_k, score_k."""
    k = preds.ranked.shape[1]
    header = ["path", "label", "view"] + [c for i in range(1, k + 1) for c in (f"label_{i}", f"score_{i}")]
    rows = []
    for path, view, label, ranked, scores in zip(preds.paths, preds.views, preds.labels.tolist(),
                                                 preds.ranked.tolist(), preds.scores.tolist()):
        cells = [v for j, s in zip(ranked, scores) for v in (preds.classes[j], s)]
        rows.append([path, preds.classes[label], view] + cells)
    return header, rows


def read_predictions(path: str | Path, classes: list[str] | None = None) -> Predictions:
    """Read a ``predictions.csv`` (from ``eval`` or made elsewhere with the same columns).

    Columns: ``path``, ``label`` (true class name), optional ``view`` (``video`` for a
    whole-video row; rows without the column are whole videos), and ``label_1``,
    ``score_1``, ... ``label_k``, ``score_k`` (best first). Classes come from
    ``classes`` or ``classes.txt`` beside the file, else from the names in it, sorted.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"predictions file {path} does not exist; write one with `videoseq eval`")
    header, records = read_csv(path)
    k = sum(1 for i in range(1, len(header) + 1) if f"label_{i}" in header and f"score_{i}" in header)
    missing = [c for c in ("path", "label", "label_1", "score_1") if c not in header]
    if missing or not records:
        raise InputError(f"{path}: needs columns path,label,label_1,score_1[,label_2,score_2...] and at least "
                         f"one row; missing {missing}")
    if classes is None and (path.parent / "classes.txt").is_file():
        classes = read_classes(path.parent / "classes.txt")
    if classes is None:
        classes = sorted({r[c] for r in records for c in ["label"] + [f"label_{i}" for i in range(1, k + 1)]})
    index = {name: i for i, name in enumerate(classes)}

    def class_id(record: dict, column: str, line: int) -> int:
        if record[column] not in index:
            raise InputError(f"{path} line {line}: {column} {record[column]!r} is not in the class list "
                             f"({len(classes)} classes); pass --classes with the full list")
        return index[record[column]]

    labels, ranked, scores = [], [], []
    for line, r in enumerate(records, start=2):
        labels.append(class_id(r, "label", line))
        ranked.append([class_id(r, f"label_{i}", line) for i in range(1, k + 1)])
        try:
            scores.append([float(r[f"score_{i}"]) for i in range(1, k + 1)])
        except ValueError as err:
            raise InputError(f"{path} line {line}: a score is not a number ({err})") from err
    views = [r.get("view") or VIDEO_ROW for r in records]
    return Predictions(classes, [r["path"] for r in records], views, np.array(labels, dtype=np.int64),
                       np.array(ranked, dtype=np.int64).reshape(len(records), k), np.array(scores).reshape(-1, k))


def predictions_report(preds: Predictions) -> dict:
    """Video-level metrics of the whole-video rows and clip-level ones of the per-view rows, if any."""
    videos = preds.select(video_rows=True)
    report = {"classes": preds.classes, "video": videos.metrics(),
              "misclassified": misclassified_rows(videos.paths, videos.classes, videos.labels, videos.ranked,
                                                  videos.scores)}
    clips = preds.select(video_rows=False)
    if len(clips.paths):
        report.setdefault("clip", clips.metrics())
    return report


@dataclass(frozen=True)
class EvalOptions:
    """What ``run_eval`` measures and how; ``videoseq eval`` fills it from its flags."""

    split: str = "test"
    views: str | int | None = None  # "CLIPSxCROPS" test views per video (None: the config's test_views x 1)
    aggregate: str = "mean_softmax"  # how the views' scores make the video's (metrics.AGGREGATIONS)
    per_view: bool = False  # also one predictions.csv row per view
    batch_size: int = 8
    num_workers: int | None = None  # DataLoader workers (None: every available CPU core)
    device: str = "auto"
    threads: int | str = "auto"  # CPU threads of the main process (runtime.thread_policy)
    beam: int | None = None  # caption models: beam size (None: the config's caption.beam)

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATIONS:
            raise UsageError(f"--aggregate {self.aggregate!r} is not one of {list(AGGREGATIONS)}")
        if self.views:
            parse_views(self.views)

    def workers(self) -> int:
        return available_workers() if self.num_workers is None else self.num_workers


@dataclass
class EvalRun:
    """A checkpoint opened for evaluation on one split: the model on its device and what it is scored on."""

    model: torch.nn.Module
    config: Config
    classes: list[str]
    manifest: Manifest
    videos: list[tuple[str, int]]
    options: EvalOptions
    device: torch.device
    vocab: list[str] | None = None
    bad: BadVideos = field(default_factory=lambda: BadVideos(max_fraction=1.0))

    def loader(self, temporal: int, crops: int) -> torch.utils.data.DataLoader:
        """A loader of ``temporal`` x ``crops`` test views of every video."""
        d, o = self.config.data, self.options
        dataset = ClipDataset(self.videos, clips=ClipSampling.from_data(d), train=False, views=temporal, crops=crops,
                              transform=eval_preset(d, crops), motion=motion_input(d), on_error="skip")
        return make_loader(dataset, LoaderOptions(batch_size=o.batch_size, num_workers=o.workers(), timeout=d.timeout),
                           shuffle=False)

    def evaluate_views(self, temporal: int, crops: int) -> tuple[dict, ClipDataset]:
        """Run the model on ``temporal`` x ``crops`` test views of every video (``engine.loops.evaluate``)."""
        loader = self.loader(temporal, crops)
        result = evaluate(self.model, loader, device=self.device, amp=self.config.train.amp, bad=self.bad,
                          split=self.options.split, desc=f"eval {temporal}x{crops} views")
        return result, loader.dataset

    @property
    def failed_videos(self) -> int:
        return len(self.bad.failures.get(self.options.split, {}))


def open_eval(checkpoint: str | Path, manifest: str | Path | None, options: EvalOptions) -> EvalRun:
    """The checkpoint's model and config, and the videos of ``options.split`` of ``manifest``
    (default: the manifest it was trained on), checked to have the checkpoint's classes."""
    source = open_source(checkpoint)
    model, config, payload = source.model(), source.config, source.payload
    classes = list(payload["classes"])
    data = read_manifest(manifest) if manifest else resolve_manifest(config.data)
    if data.classes != classes:
        raise InputError(f"the manifest's classes differ from the checkpoint's ({len(data.classes)} vs "
                         f"{len(classes)}, first {data.classes[:3]} vs {classes[:3]}); "
                         "evaluate with a matching manifest")
    videos = data.videos(options.split)
    if not videos:
        raise UsageError(f"no videos in split {options.split!r}; the manifest has {data.splits()}")
    device = select_device(options.device)
    return EvalRun(model.to(device), config, classes, data, videos, options, device, vocab=payload.get("vocab"))


REPORT_FILES = ("report.json", "report.html", "per_class.csv", "confusion.csv", "confusion.png", "per_class.png")
EVAL_FILES = ("predictions.csv", "captions.csv", "classes.txt", "bad_videos.csv", *REPORT_FILES)


def run_eval(checkpoint: str | Path, *, out_dir: str | Path, manifest: str | Path | None = None,
             options: EvalOptions = EvalOptions(), overwrite: bool = False) -> dict:
    """Evaluate ``checkpoint`` on ``options.split`` of ``manifest`` (default: the one it was trained on).

    ``options.views`` is ``"CLIPSxCROPS"`` (default: the config's ``test_views`` x 1). With
    more than one view the single-view (1x1) result is measured too and reported beside
    it. Caption models caption the first view of each video; ``options.beam`` is their
    beam size (default: the config's ``caption.beam``).

    An ``out_dir`` that holds the files of an evaluation needs ``overwrite``; they are written
    once the checkpoint and the manifest have been opened, each whole (``outputs``).
    """
    inputs = [checkpoint] + ([manifest] if manifest else [])
    out = check_output_folder(out_dir, EVAL_FILES, flag="--out", overwrite=overwrite, inputs=inputs)
    set_threads(options.threads)
    run = open_eval(checkpoint, manifest, options)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "classes.txt", "".join(f"{c}\n" for c in run.classes))
    report: dict = {"checkpoint": str(checkpoint), "split": options.split}
    if run.config.model.captions:
        report["caption"] = eval_captions(run, out)
        if run.config.model.task == "caption":
            report |= {"failed_videos": run.failed_videos, "config": run.config.to_dict()}
            write_bad_videos(run, out)
            write_text(out / "report.json", json.dumps(report, indent=2))
            print(f"-> {out}")
            return report
    classes_report, strips = eval_classes(run, out)
    report |= classes_report
    write_bad_videos(run, out)
    write_report(out, report, strips)
    print(format_summary(report) + f"\n-> {out}")
    return report


def write_bad_videos(run: EvalRun, out: Path) -> None:
    """``bad_videos.csv`` of the videos that failed, or none (an earlier evaluation's list is removed)."""
    if run.failed_videos:
        run.bad.write(out / "bad_videos.csv")
    else:
        (out / "bad_videos.csv").unlink(missing_ok=True)


def eval_classes(run: EvalRun, out: Path) -> tuple[dict, dict[str, str]]:
    """Class metrics of the chosen views (and of one view beside them); writes ``predictions.csv``.

    Also returns the frame strips of the worst misclassified videos (``misclassified.clip_strips``).
    """
    o = run.options
    temporal, crops = parse_views(o.views) if o.views else (run.config.data.test_views, 1)
    result, dataset = run.evaluate_views(temporal, crops)
    preds, clips = view_predictions(result, dataset, run.classes, o.aggregate, o.per_view)
    report = {"views": f"{temporal}x{crops}", "aggregate": o.aggregate, "failed_videos": run.failed_videos,
              **predictions_report(preds)}
    report.setdefault("clip", clips.metrics())
    if (temporal, crops) != (1, 1):
        single, single_set = run.evaluate_views(1, 1)
        report["single_view"] = summary(view_predictions(single, single_set, run.classes, o.aggregate,
                                                         False)[0].metrics())
    report["config"] = run.config.to_dict()
    write_csv(out / "predictions.csv", *prediction_table(preds))
    return report, clip_strips(dataset, [row["path"] for row in report["misclassified"]])


def eval_captions(run: EvalRun, out: Path) -> dict:
    """Captions of the first view of every video, scored; written to ``predictions.csv`` or ``captions.csv``."""
    o, config = run.options, run.config
    temporal, crops = parse_views(o.views) if o.views else (config.data.test_views, 1)
    loader = run.loader(temporal, crops)
    decoding = Decoding.of(config.caption, o.beam)
    found = evaluate_captions(run.model, loader, references=run.manifest.captions(o.split),
                              vocab=Vocabulary(run.vocab), device=run.device, decoding=decoding,
                              amp=config.train.amp, bad=run.bad, split=o.split)
    name = "predictions.csv" if config.model.task == "caption" else "captions.csv"
    return write_captions(out / name, found, loader.dataset, run.classes, beam=decoding.beam)


def view_predictions(result: dict, dataset: ClipDataset, classes: list[str], aggregate: str,
                     per_view: bool) -> Predictions:
    """Whole-video rows (views aggregated with ``aggregate``) followed by one row per view."""
    video_ids, video_scores = aggregate_views(result["logits"], result["video"], aggregate)
    first = {v: i for i, v in reversed(list(enumerate(result["video"].tolist())))}
    labels = np.array([result["labels"][first[v]] for v in video_ids.tolist()])
    paths = [dataset.videos[v][0] for v in video_ids.tolist()]
    preds = from_scores(video_scores, labels, paths, [VIDEO_ROW] * len(paths), classes)
    clips = from_scores(result["scores"], result["labels"], [dataset.videos[v][0] for v in result["video"].tolist()],
                        [f"t{v // dataset.crops}c{v % dataset.crops}" for v in result["view"].tolist()], classes)
    return concat(preds, clips) if per_view else preds, clips


def concat(a: Predictions, b: Predictions) -> Predictions:
    return Predictions(a.classes, a.paths + b.paths, a.views + b.views, np.concatenate([a.labels, b.labels]),
                       np.concatenate([a.ranked, b.ranked]), np.concatenate([a.scores, b.scores]))


def write_captions(path: Path, found: dict, dataset: ClipDataset, classes: list[str], *, beam: int) -> dict:
    """The captions CSV (path, label, caption, references joined by " | "); returns the caption metrics."""
    rows = [[dataset.videos[v][0], classes[dataset.videos[v][1]], caption, " | ".join(refs)]
            for v, caption, refs in zip(found["video_ids"], found["captions"], found["references"])]
    write_csv(path, ["path", "label", "caption", "references"], rows)
    m = found["metrics"]
    print(f"BLEU-1={m['bleu1']:.4f} BLEU-4={m['bleu4']:.4f}" + "".join(
        f" {k}={m[k]:.4f}" for k in ("cider_d", "meteor") if k in m) + f" (beam {beam}, {len(rows)} videos)")
    for metric, why in m.get("missing", {}).items():
        print(f"  {metric} not computed: {why}")
    return {**m, "beam": beam, "videos": len(rows)}


def write_report(out: Path, report: dict, strips: dict[str, str] | None = None) -> dict:
    """``report.json``, per-class and confusion tables and figures, and ``report.html``
    (with ``strips``, ``{path: image data URI}``, beside the misclassified videos)."""
    classes, video = report["classes"], report["video"]
    table = video["per_class"]
    write_csv(out / "per_class.csv", list(table[0]), [list(r.values()) for r in table])
    write_csv(out / "confusion.csv", ["true\\pred"] + classes,
              [[c] + list(r) for c, r in zip(classes, video["confusion"])])
    where = ", ".join(f"{report[k]}{suffix}" for k, suffix in (("split", ""), ("views", " views")) if report.get(k))
    where = f" ({where})" if where else ""
    plot_confusion(np.array(video["confusion"]), classes, out / "confusion.png",
                   title=f"confusion of videos{where}, rows normalised")
    plot_per_class(table, out / "per_class.png", title=f"per-class F1{where}, worst on top")
    write_text(out / "report.json", json.dumps(report, indent=2))
    write_html_report(out / "report.html", report, summary_rows(report),
                      {"confusion": out / "confusion.png", "per_class": out / "per_class.png"}, strips or {})
    return report


def run_metrics(predictions: str | Path, *, classes: str | Path | None = None, out_dir: str | Path | None = None,
                overwrite: bool = False) -> dict:
    """``videoseq metrics``: every metric from a ``predictions.csv`` alone; files too with ``out_dir``
    (report files already there need ``overwrite``)."""
    if out_dir:
        inputs = [predictions] + ([classes] if classes else [])
        check_output_folder(out_dir, REPORT_FILES, flag="--out", overwrite=overwrite, inputs=inputs)
    preds = read_predictions(predictions, read_classes(classes) if classes else None)
    report = {"predictions": str(predictions), **predictions_report(preds)}
    print(format_summary(report))
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_report(Path(out_dir), report)
        print(f"-> {out_dir}")
    return report
