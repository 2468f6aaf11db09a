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

from videoseq import distributed
from videoseq.checkpoint import build_model_from_config, checkpoint_payload, save_checkpoint
from videoseq.config import Config, TrainConfig, save_config
from videoseq.datasets import ClipDataset, Manifest, make_loader, write_csv
from videoseq.features import HeadOnly, feature_datasets
from videoseq.metrics import aggregate_by_video, classification_metrics, plot_curves
from videoseq.models import VideoClassifier
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


def amp_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` asks for on ``device``: None off CUDA or when off.

    ``true`` is bf16 where the GPU supports it, else fp16; ``bf16`` / ``fp16`` force one.
    """
    if device.type != "cuda" or amp is False:
        return None
    if amp == "fp16" or (amp is True and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast_for(device: torch.device, amp: bool | str):
    """Autocast to ``amp_dtype`` on CUDA; a no-op on CPU or when off."""
    dtype = amp_dtype(device, amp)
    return nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


def model_input(video: torch.Tensor, model: nn.Module, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` as the model takes it.

    uint8 clips ``(B, T, 3, H, W)`` are normalised with the backbone's mean/std there;
    cached features ``(B, T, D[, h, w])`` (float16) only become float32.
    """
    x = video.to(device, non_blocking=True)
    if x.dtype != torch.uint8:
        return x.float()
    backbone = distributed.unwrap(model).backbone
    return normalize_clip(x, backbone.mean, backbone.std)  # (B, T, 3, H, W)


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
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs} train", leave=False, dynamic_ncols=True,
               disable=not distributed.is_main())
    for batch in bar:
        bad.add("train", loader.dataset, batch["errors"])
        if batch["video"].numel() == 0:
            continue
        clips = model_input(batch["video"], model, device)  # (B, T, 3, H, W) or features
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

    Returns ``scores`` (N, C) softmax probabilities, ``logits``, ``labels`` and
    ``video`` (N,) per clip, ``loss``, and the metric dicts ``clip`` and ``video``.
    Under torchrun each rank scores its shard of the loader; the clips of all ranks
    are gathered and keyed by dataset item, so each counts once, in item order.
    """
    model.eval()
    logits_all, labels_all, videos_all, items_all = [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not distributed.is_main()):
        if bad is not None:
            bad.add(split, loader.dataset, batch["errors"])
        if batch["video"].numel() == 0:
            continue
        clips = model_input(batch["video"], model, device)
        with autocast_for(device, amp):
            logits_all.append(model(clips).float().cpu())
        labels_all.append(batch["label"])
        videos_all.append(batch["index"])
        items_all.append(batch["item"])
    parts = [torch.cat(x).numpy() if x else None for x in (logits_all, labels_all, videos_all, items_all)]
    logits_np, labels_np, videos_np = gather_clips(*parts)
    if logits_np is None:
        raise RuntimeError(f"no {split} clip could be decoded; see the errors above")
    logits = torch.from_numpy(logits_np)
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(labels_np)).item()
    scores = logits.softmax(1).numpy()
    video_ids, video_scores = aggregate_by_video(scores, videos_np)
    first = {v: labels_np[np.flatnonzero(videos_np == v)[0]] for v in video_ids}
    video_labels = np.array([first[v] for v in video_ids])
    return {
        "logits": logits_np, "scores": scores, "labels": labels_np, "video": videos_np, "loss": loss,
        "clip": classification_metrics(scores, labels_np),
        "video_ids": video_ids, "video_scores": video_scores, "video_labels": video_labels,
        "video_metrics": classification_metrics(video_scores, video_labels),
    }


def gather_clips(logits, labels, videos, items):
    """Every rank's clip results, each dataset item once, in item order (as they are in one process).

    Arguments are this rank's arrays (None when it scored no clip); returns
    ``(logits, labels, videos)`` of all ranks, or Nones when no rank scored a clip.
    """
    if not distributed.is_distributed():
        return logits, labels, videos
    parts = [p for p in distributed.gather_objects((logits, labels, videos, items)) if p[0] is not None]
    if not parts:
        return None, None, None
    logits, labels, videos, items = (np.concatenate(column) for column in zip(*parts))
    _, first = np.unique(items, return_index=True)  # sorted by item, duplicates dropped
    return logits[first], labels[first], videos[first]


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
    """Train and validation datasets of a manifest, with the presets of the config (or of its feature cache)."""
    if config.data.features:
        return feature_datasets(config, manifest)
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
    Under torchrun every rank trains its shard; rank 0 alone writes, and adds ``ranks.json``.
    """
    run_dir = Path(run_dir)
    device, joined = distributed.setup(select_device(config.train.device))
    main = distributed.is_main()
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.train.seed)
    manifest = resolve_manifest(config.data, run_dir if main else None)
    if main:
        save_config(config, run_dir / "config.yaml")
        (run_dir / "classes.txt").write_text("".join(f"{c}\n" for c in manifest.classes))
    train_set, val_set = build_datasets(config, manifest)
    model = build_model_from_config(config, len(manifest.classes)).to(device)
    trained = training_module(model, config, device)
    cfg = config.train
    steps = math.ceil(math.ceil(len(train_set) / distributed.world_size()) / cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    scaler = torch.amp.GradScaler(enabled=amp_dtype(device, cfg.amp) == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bad = BadVideos(config.data.max_bad_fraction)
    history: list[dict] = []
    best = -1.0
    train_loader, val_loader = (make_loader(data, shuffle=shuffle, pad=shuffle, **loader_options(config))
                                for data, shuffle in ((train_set, True), (val_set, False)))
    if main:
        print(f"training {config.model.backbone}+{config.model.head} on {device} x{distributed.world_size()}: "
              f"{len(train_set.videos)} train / {len(val_set.videos)} {config.data.val_split} videos, "
              f"{len(manifest.classes)} classes -> {run_dir}")
    try:
        for epoch in range(cfg.epochs):
            start = time.time()
            train_loader.sampler.set_epoch(epoch)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
            row |= distributed.mean_over_ranks(train_one_epoch(
                trained, train_loader, criterion, optimizer, scheduler, device=device, epoch=epoch, cfg=cfg,
                scaler=scaler, bad=bad))
            distributed.broadcast_buffers(model)
            score = row["train_acc"]
            if val_set.videos and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                result = evaluate(distributed.unwrap(trained), val_loader, device=device, amp=cfg.amp, bad=bad,
                                  split=config.data.val_split, desc="validate")
                row |= {"val_loss": result["loss"], "val_clip_acc": result["clip"]["top1"],
                        "val_video_acc": result["video_metrics"]["top1"], "val_top5": result["video_metrics"]["top5"],
                        "val_mean_class_acc": result["video_metrics"]["mean_class_acc"]}
                score = row["val_video_acc"]
            row["seconds"] = round(time.time() - start, 1)
            history.append(row)
            if not main:
                continue
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
        distributed.check_in_sync(model, run_dir / "ranks.json")
    finally:
        if main and any(bad.failures.values()):
            bad.write(run_dir / "bad_videos.csv")
        distributed.teardown(joined)
    return run_dir


def loader_options(config: Config) -> dict:
    """``make_loader`` keywords from the config, with this rank's shard under torchrun."""
    d = config.data
    return dict(batch_size=config.train.batch_size, num_workers=d.num_workers, timeout=d.timeout,
                seed=config.train.seed, shard=(distributed.rank(), distributed.world_size()),
                persistent_workers=d.persistent_workers, prefetch_factor=d.prefetch_factor)


def training_module(model: VideoClassifier, config: Config, device: torch.device) -> nn.Module:
    """What the optimiser steps through, as ``train.*`` asks: DDP under torchrun, channels_last, compiled.

    With ``data.features`` it is the head alone (the backbone takes the cache's weights
    and is frozen), fed cached features; ``model`` stays whole for the checkpoints.
    """
    module: nn.Module = model
    if config.data.features:
        module = HeadOnly(model, config.data.features)
    if config.train.channels_last:
        module = module.to(memory_format=torch.channels_last)  # 4D conv weights NHWC: cuDNN picks NHWC kernels
    module = distributed.wrap_model(module, device, sync_bn=config.train.sync_bn)
    return torch.compile(module) if config.train.compile else module
