"""``videoseq eval``: a checkpoint on one split, with files people can read.

Writes into the eval folder:

- ``predictions.csv``: one row per video: path, true label, top-k labels and scores;
- ``per_class.csv``: precision, recall, F1 and support per class;
- ``confusion.csv`` and ``confusion.png`` (rows normalised in the picture);
- ``metrics.json``: clip- and video-level top-1, top-5 and mean class accuracy.

A caption model writes its captions (path, label, generated caption, its references
joined by " | ") to ``predictions.csv`` (``model.task: caption``) or, beside the class
predictions, to ``captions.csv`` (``model.task: both``), and puts BLEU-1..4 (CIDEr-D and METEOR where they
can run) under ``caption`` in ``metrics.json``; task ``caption`` writes no class files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from videoseq.checkpoint import load_checkpoint, model_from_checkpoint
from videoseq.datasets import ClipDataset, make_loader, read_manifest, write_csv
from videoseq.engine import BadVideos, evaluate, evaluate_captions, select_device
from videoseq.metrics import per_class_table, plot_confusion
from videoseq.prepare import resolve_manifest
from videoseq.text import Vocabulary
from videoseq.transforms import ClipEvalPreset


def prediction_table(paths: list[str], labels: np.ndarray, scores: np.ndarray, classes: list[str], k: int = 5):
    """Header and rows of ``predictions.csv`` (top-k labels and scores per video)."""
    k = min(k, len(classes))
    header = ["path", "label"] + [c for i in range(1, k + 1) for c in (f"label_{i}", f"score_{i}")]
    order = np.argsort(-scores, axis=1)[:, :k]
    rows = []
    for path, label, row_scores, top in zip(paths, labels, scores, order):
        cells = [v for j in top for v in (classes[j], round(float(row_scores[j]), 6))]
        rows.append([path, classes[label]] + cells)
    return header, rows


def run_eval(
    checkpoint: str | Path,
    *,
    out_dir: str | Path,
    manifest: str | Path | None = None,
    split: str = "test",
    views: int | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    device: str = "auto",
    beam: int | None = None,
) -> dict:
    """Evaluate ``checkpoint`` on ``split`` of ``manifest`` (default: the one it was trained on).

    ``beam``: beam size for caption models (default: the config's ``caption.beam``).
    """
    payload = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(payload, checkpoint)
    classes = list(payload["classes"])
    data = read_manifest(manifest) if manifest else resolve_manifest(config.data)
    if data.classes != classes:
        raise ValueError(f"the manifest's classes differ from the checkpoint's ({len(data.classes)} vs "
                         f"{len(classes)}, first {data.classes[:3]} vs {classes[:3]}); evaluate with a matching manifest")
    d = config.data
    dataset = ClipDataset(
        data.videos(split), clip_len=d.frames, transform=ClipEvalPreset(size=d.size), train=False,
        sampling=d.sampling, stride=d.stride, short=d.short_video, views=views or d.test_views, on_error="skip",
    )
    if not dataset.videos:
        raise ValueError(f"no videos in split {split!r}; the manifest has {data.splits()}")
    dev = select_device(device)
    bad = BadVideos(max_fraction=1.0)
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, timeout=d.timeout)
    info = dict(checkpoint=str(checkpoint), split=split)
    model = model.to(dev)
    if config.model.captions:
        c = config.caption
        found = evaluate_captions(model, loader, references=data.captions(split), vocab=Vocabulary(payload["vocab"]),
                                  device=dev, beam=beam or c.beam, max_words=c.max_words, alpha=c.length_penalty,
                                  amp=config.train.amp, bad=bad, split=split)
        name = "predictions.csv" if config.model.task == "caption" else "captions.csv"
        info["caption"] = write_caption_outputs(Path(out_dir) / name, found, dataset, classes, beam=beam or c.beam)
        if config.model.task == "caption":
            return write_summary(Path(out_dir), info, bad, split)
    result = evaluate(model, loader, device=dev, amp=config.train.amp, bad=bad, split=split)
    return write_eval_outputs(Path(out_dir), result, dataset, classes, bad, **info)


def write_caption_outputs(path: Path, found: dict, dataset: ClipDataset, classes: list[str], *, beam: int) -> dict:
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


def write_summary(out: Path, info: dict, bad: BadVideos, split: str) -> dict:
    """``metrics.json`` (and ``bad_videos.csv``) of a caption-only evaluation."""
    failed = bad.failures.get(split, {})
    if failed:
        bad.write(out / "bad_videos.csv")
    metrics = {**info, "failed_videos": len(failed)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def write_eval_outputs(out: Path, result: dict, dataset: ClipDataset, classes: list[str], bad: BadVideos,
                       **info) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    paths = [dataset.videos[v][0] for v in result["video_ids"]]
    labels, scores = result["video_labels"], result["video_scores"] / dataset.views
    header, rows = prediction_table(paths, labels, scores, classes)
    write_csv(out / "predictions.csv", header, rows)
    preds = scores.argmax(1)
    table = per_class_table(labels, preds, classes)
    write_csv(out / "per_class.csv", list(table[0]), [list(r.values()) for r in table])
    cm = confusion_matrix(labels, preds, labels=np.arange(len(classes)))
    write_csv(out / "confusion.csv", ["true\\pred"] + classes, [[c] + list(r) for c, r in zip(classes, cm.tolist())])
    plot_confusion(cm, classes, out / "confusion.png", title=f"{info.get('split', '')} confusion (rows normalised)")
    failed = bad.failures.get(info.get("split", "val"), {})
    if failed:
        bad.write(out / "bad_videos.csv")
    metrics = {**info, "videos": len(paths), "failed_videos": len(failed), "views": dataset.views,
               "clip": result["clip"], "video": result["video_metrics"]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    v = result["video_metrics"]
    print(f"top1={v['top1']:.4f} top5={v['top5']:.4f} mean_class_acc={v['mean_class_acc']:.4f} "
          f"({len(paths)} videos, {dataset.views} view(s); clip top1={result['clip']['top1']:.4f}) -> {out}")
    return metrics
