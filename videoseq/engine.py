"""The training engine: ``train_one_epoch``, ``evaluate`` and ``fit``.

Batches arrive as uint8 clips and are normalised on the model's device. Videos that
fail to decode are skipped (``data.on_error: skip``), listed in the run folder's
``bad_videos.csv``, and the run stops with a clear message once more than
``data.max_bad_fraction`` of a split has failed.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from videoseq.checkpoint import build_model_from_config, checkpoint_payload, save_checkpoint
from videoseq.config import Config, TrainConfig, save_config
from videoseq.datasets import ClipDataset, Manifest, make_loader, write_csv
from videoseq.metrics import aggregate_by_video, classification_metrics, plot_curves
from videoseq.prepare import resolve_manifest
from videoseq.transforms import ClipEvalPreset, ClipTrainPreset, normalize_clip

HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_clip_acc", "val_video_acc",
    "val_top5", "val_mean_class_acc", "seconds",
)


class TooManyBadVideos(RuntimeError):
    """More than the allowed fraction of a split failed to decode."""


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class BadVideos:
    """Videos that failed to decode, by split, with the allowed fraction enforced."""

    max_fraction: float
    failures: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, split: str, dataset: ClipDataset, errors: list[tuple[int, str]]) -> None:
        found = self.failures.setdefault(split, {})
        for index, message in errors:
            path = dataset.videos[index][0]
            if path not in found:
                tqdm.write(f"skipping {path}: {message}")
            found[path] = message
        limit = self.max_fraction * len(dataset.videos)
        if len(found) > limit:
            raise TooManyBadVideos(
                f"{len(found)} of {len(dataset.videos)} {split} videos failed to decode (more than "
                f"data.max_bad_fraction={self.max_fraction}); run `videoseq doctor` on the manifest, "
                f"fix or drop them, or raise the limit. First: {next(iter(found.items()))}"
            )

    def write(self, path: Path) -> None:
        rows = [(split, p, m) for split, found in self.failures.items() for p, m in sorted(found.items())]
        write_csv(path, ("split", "path", "error"), rows)


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when asked (fp16 where bf16 is unsupported); no-op on CPU."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    epoch: int,
    cfg: TrainConfig,
    scaler: torch.amp.GradScaler,
    bad: BadVideos,
) -> dict[str, float]:
    model.train()
    mean, std = model.backbone.mean, model.backbone.std
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs} train", leave=False, dynamic_ncols=True)
    for batch in bar:
        bad.add("train", loader.dataset, batch["errors"])
        if batch["video"].numel() == 0:
            continue
        clips = normalize_clip(batch["video"].to(device, non_blocking=True), mean, std)  # (B, T, 3, H, W)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast_for(device, cfg.amp):
            logits = model(clips)  # (B, num_classes)
            loss = criterion(logits.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {epoch + 1}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.clip_grad:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"train_loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1)}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    *,
    device: torch.device,
    amp: bool = False,
    bad: BadVideos | None = None,
    split: str = "val",
    desc: str = "eval",
) -> dict[str, np.ndarray | float]:
    """Scores of every clip, plus clip- and video-level metrics (video = summed clip scores).

    Returns ``scores`` (N, C) softmax probabilities, ``logits``, ``labels``, ``video``
    and ``view`` (N,) per clip, ``loss``, the metric dicts ``clip`` and ``video_metrics``,
    and ``video_ids``, ``video_scores`` (summed) and ``video_labels`` per video.
    """
    model.eval()
    mean, std = model.backbone.mean, model.backbone.std
    logits_all, labels_all, videos_all, views_all = [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        if bad is not None:
            bad.add(split, loader.dataset, batch["errors"])
        if batch["video"].numel() == 0:
            continue
        clips = normalize_clip(batch["video"].to(device, non_blocking=True), mean, std)
        with autocast_for(device, amp):
            logits_all.append(model(clips).float().cpu())
        labels_all.append(batch["label"])
        videos_all.append(batch["index"])
        views_all.append(batch["view"])
    if not logits_all:
        raise RuntimeError(f"no {split} clip could be decoded; see the errors above")
    logits = torch.cat(logits_all)
    labels = torch.cat(labels_all)
    loss = nn.functional.cross_entropy(logits, labels).item()
    scores = logits.softmax(1).numpy()
    labels_np, videos_np = labels.numpy(), torch.cat(videos_all).numpy()
    video_ids, video_scores = aggregate_by_video(scores, videos_np)
    first = {v: labels_np[np.flatnonzero(videos_np == v)[0]] for v in video_ids}
    video_labels = np.array([first[v] for v in video_ids])
    return {
        "logits": logits.numpy(), "scores": scores, "labels": labels_np, "video": videos_np, "loss": loss,
        "view": torch.cat(views_all).numpy(),
        "clip": classification_metrics(scores, labels_np),
        "video_ids": video_ids, "video_scores": video_scores, "video_labels": video_labels,
        "video_metrics": classification_metrics(video_scores, video_labels),
    }


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on biases and norm parameters (the usual split)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Linear warmup to 1, then cosine to 0 (or constant)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps=warmup, total_steps=total, schedule=cfg.schedule)
    )


def build_datasets(config: Config, manifest: Manifest) -> tuple[ClipDataset, ClipDataset]:
    """Train and validation datasets of a manifest, with the presets of the config."""
    d = config.data
    index = {name: i for i, name in enumerate(manifest.classes)}
    unknown = sorted((set(d.flip_swap) | set(d.flip_swap.values())) - set(index))
    if unknown:
        raise ValueError(f"data.flip_swap names labels not in the class list: {unknown}")
    swap = {index[a]: index[b] for a, b in d.flip_swap.items()}
    common = dict(clip_len=d.frames, sampling=d.sampling, stride=d.stride, short=d.short_video,
                  seed=config.train.seed, on_error=d.on_error)
    train_set = ClipDataset(
        manifest.videos(d.train_split), train=True, **common,
        transform=ClipTrainPreset(size=d.size, crop_scale=d.crop_scale, color_jitter=d.color_jitter,
                                  flip=d.flip, flip_swap=swap),
    )
    val_set = ClipDataset(
        manifest.videos(d.val_split), train=False, views=d.test_views, **common,
        transform=ClipEvalPreset(size=d.size),
    )
    if not train_set.videos:
        raise ValueError(f"the manifest has no videos in split {d.train_split!r} (data.train_split); "
                         f"it has {manifest.splits()}")
    return train_set, val_set


def fit(config: Config, run_dir: str | Path) -> Path:
    """Train a model as ``config`` says; returns the run folder.

    The run folder gets ``config.yaml`` (resolved), ``classes.txt``, ``metrics.csv``,
    ``curves.png``, ``best.pt`` and ``last.pt``, and ``bad_videos.csv`` when any failed.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.train.seed)
    manifest = resolve_manifest(config.data, run_dir)
    save_config(config, run_dir / "config.yaml")
    (run_dir / "classes.txt").write_text("".join(f"{c}\n" for c in manifest.classes))
    train_set, val_set = build_datasets(config, manifest)
    device = select_device(config.train.device)
    model = build_model_from_config(config, len(manifest.classes)).to(device)
    cfg = config.train
    steps = math.ceil(len(train_set) / cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported())
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bad = BadVideos(config.data.max_bad_fraction)
    history: list[dict] = []
    best = -1.0
    print(f"training {config.model.backbone}+{config.model.head} on {device}: {len(train_set.videos)} train / "
          f"{len(val_set.videos)} {config.data.val_split} videos, {len(manifest.classes)} classes -> {run_dir}")
    try:
        for epoch in range(cfg.epochs):
            start = time.time()
            loader_args = dict(batch_size=cfg.batch_size, num_workers=config.data.num_workers,
                               timeout=config.data.timeout, seed=cfg.seed, epoch=epoch)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
            row |= train_one_epoch(model, make_loader(train_set, shuffle=True, **loader_args), criterion, optimizer,
                                   scheduler, device=device, epoch=epoch, cfg=cfg, scaler=scaler, bad=bad)
            score = row["train_acc"]
            if val_set.videos and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                result = evaluate(model, make_loader(val_set, shuffle=False, **loader_args), device=device,
                                  amp=cfg.amp, bad=bad, split=config.data.val_split, desc="validate")
                row |= {"val_loss": result["loss"], "val_clip_acc": result["clip"]["top1"],
                        "val_video_acc": result["video_metrics"]["top1"], "val_top5": result["video_metrics"]["top5"],
                        "val_mean_class_acc": result["video_metrics"]["mean_class_acc"]}
                score = row["val_video_acc"]
            row["seconds"] = round(time.time() - start, 1)
            history.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            state = dict(epoch=epoch + 1, metrics=row, optimizer=optimizer.state_dict(),
                         scheduler=scheduler.state_dict(), scaler=scaler.state_dict())
            payload = checkpoint_payload(model, config, manifest.classes, **state)
            save_checkpoint(run_dir / "last.pt", payload)
            if score > best:
                best = score
                save_checkpoint(run_dir / "best.pt", payload)
            write_csv(run_dir / "metrics.csv", HISTORY_COLUMNS, [[h.get(k, "") for k in HISTORY_COLUMNS] for h in history])
            plot_curves(history, run_dir / "curves.png")
    finally:
        if any(bad.failures.values()):
            bad.write(run_dir / "bad_videos.csv")
    return run_dir
