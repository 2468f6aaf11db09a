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
from videoseq.metrics import aggregate_by_video, caption_metrics, classification_metrics, plot_curves
from videoseq.prepare import resolve_manifest
from videoseq.text import PAD_ID, Vocabulary, normalize_caption, pad_sequences
from videoseq.transforms import ClipEvalPreset, ClipTrainPreset, normalize_clip

HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_clip_acc", "val_video_acc",
    "val_top5", "val_mean_class_acc", "seconds",
)
CAPTION_COLUMNS_KEYS = ("bleu1", "bleu4", "cider_d", "meteor")  # validation caption scores of caption runs


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


class ClassifyObjective:
    """Cross-entropy on the class logits; counts the clips classified right."""

    def __init__(self, criterion: nn.Module) -> None:
        self.criterion = criterion

    def __call__(self, model: nn.Module, clips: torch.Tensor, batch: dict) -> tuple[torch.Tensor, int, int]:
        """Loss, number right and number counted for one batch of normalised clips ``(B, T, 3, H, W)``."""
        labels = batch["label"].to(clips.device, non_blocking=True)
        logits = model(clips)  # (B, num_classes)
        loss = self.criterion(logits.float(), labels)
        return loss, int((logits.argmax(1) == labels).sum()), len(labels)


class CaptionObjective:
    """Word cross-entropy under teacher forcing, for one reference drawn per clip per epoch.

    ``references[v]`` holds the token id lists (``<bos> ... <eos>``) of video ``v`` of
    the training set. Scheduled sampling ramps linearly from 0 at the first epoch to
    ``scheduled_sampling`` at the last. With task ``both`` the class loss is added and
    the accuracy counted is the class accuracy; otherwise it is the word accuracy.
    """

    def __init__(self, references: list[list[list[int]]], *, label_smoothing: float, scheduled_sampling: float,
                 loss_weight: float = 1.0, class_criterion: nn.Module | None = None, seed: int = 0) -> None:
        self.references = references
        self.label_smoothing, self.final_sampling = label_smoothing, scheduled_sampling
        self.loss_weight, self.class_criterion = loss_weight, class_criterion
        self.seed, self.sampling = seed, 0.0
        self.rng = np.random.default_rng(seed)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.sampling = self.final_sampling * epoch / max(epochs - 1, 1)
        self.rng = np.random.default_rng([self.seed, epoch])

    def targets(self, videos: torch.Tensor) -> torch.Tensor:
        """One reference per clip, padded: ids ``(B, L)`` starting with ``<bos>``."""
        chosen = []
        for v in videos.tolist():
            refs = self.references[v]
            chosen.append(refs[int(self.rng.integers(len(refs)))])
        return pad_sequences(chosen)[0]

    def __call__(self, model: nn.Module, clips: torch.Tensor, batch: dict) -> tuple[torch.Tensor, int, int]:
        ids = self.targets(batch["index"]).to(clips.device)  # (B, L)
        class_logits, word_logits = model.forward_both(clips, ids[:, :-1], sampling=self.sampling)  # (B, L-1, V)
        target = ids[:, 1:]  # (B, L-1)
        loss = nn.functional.cross_entropy(word_logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD_ID,
                                           label_smoothing=self.label_smoothing)
        if class_logits is None:
            real = target != PAD_ID
            return loss, int(((word_logits.argmax(2) == target) & real).sum()), int(real.sum())
        labels = batch["label"].to(clips.device, non_blocking=True)
        loss = self.class_criterion(class_logits.float(), labels) + self.loss_weight * loss
        return loss, int((class_logits.argmax(1) == labels).sum()), len(labels)


Objective = ClassifyObjective | CaptionObjective


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    criterion: nn.Module | Objective,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    epoch: int,
    cfg: TrainConfig,
    scaler: torch.amp.GradScaler,
    bad: BadVideos,
) -> dict[str, float]:
    """One pass over ``loader``. ``criterion``: a loss on class logits, or an objective
    (:class:`ClassifyObjective`, :class:`CaptionObjective`) that returns the loss of a batch."""
    model.train()
    objective = criterion if isinstance(criterion, (ClassifyObjective, CaptionObjective)) else ClassifyObjective(criterion)
    mean, std = model.backbone.mean, model.backbone.std
    total_loss, correct, counted, seen = 0.0, 0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs} train", leave=False, dynamic_ncols=True)
    for batch in bar:
        bad.add("train", loader.dataset, batch["errors"])
        if batch["video"].numel() == 0:
            continue
        clips = normalize_clip(batch["video"].to(device, non_blocking=True), mean, std)  # (B, T, 3, H, W)
        with autocast_for(device, cfg.amp):
            loss, right, count = objective(model, clips, batch)
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
        total_loss += loss.item() * len(clips)
        seen += len(clips)
        correct, counted = correct + right, counted + count
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / max(counted, 1):.3f}")
    return {"train_loss": total_loss / max(seen, 1), "train_acc": correct / max(counted, 1)}


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
    """
    model.eval()
    mean, std = model.backbone.mean, model.backbone.std
    logits_all, labels_all, videos_all = [], [], []
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
        "clip": classification_metrics(scores, labels_np),
        "video_ids": video_ids, "video_scores": video_scores, "video_labels": video_labels,
        "video_metrics": classification_metrics(video_scores, video_labels),
    }


@torch.no_grad()
def evaluate_captions(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    *,
    references: list[list[str]],
    vocab: Vocabulary,
    device: torch.device,
    beam: int = 1,
    max_words: int = 20,
    alpha: float = 0.0,
    amp: bool = False,
    bad: BadVideos | None = None,
    split: str = "val",
    desc: str = "captions",
) -> dict:
    """Caption the first view of every video and score the captions against ``references``.

    ``references[v]`` are the reference captions of video ``v`` of ``loader.dataset``.
    Returns ``video_ids``, ``captions`` and normalised ``references`` per video, and
    ``metrics`` (BLEU-1..4, CIDEr-D / METEOR where available) over the videos with references.
    """
    model.eval()
    mean, std = model.backbone.mean, model.backbone.std
    captions: dict[int, str] = {}
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        if bad is not None:
            bad.add(split, loader.dataset, batch["errors"])
        rows, taken = [], set(captions)
        for r, v in enumerate(batch["index"].tolist()):  # the first view of each video not yet captioned
            if v not in taken:
                rows.append(r)
                taken.add(v)
        if not rows:
            continue
        clips = normalize_clip(batch["video"][rows].to(device, non_blocking=True), mean, std)  # (b, T, 3, H, W)
        with autocast_for(device, amp):
            found = model.generate(clips, beam=beam, max_len=max_words + 1, alpha=alpha)
        for r, ids in zip(rows, found):
            captions[int(batch["index"][r])] = vocab.decode(ids)
    if not captions:
        raise RuntimeError(f"no {split} clip could be decoded; see the errors above")
    video_ids = sorted(captions)
    refs = [[normalize_caption(c) for c in references[v]] for v in video_ids]
    scored = [i for i, r in enumerate(refs) if r]
    if not scored:
        raise ValueError(f"no {split} video has a reference caption; add a caption column to the manifest")
    metrics = caption_metrics([captions[video_ids[i]] for i in scored], [refs[i] for i in scored])
    return {"video_ids": video_ids, "captions": [captions[v] for v in video_ids], "references": refs,
            "metrics": metrics}


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


def caption_vocabulary(config: Config, manifest: Manifest) -> Vocabulary | None:
    """The vocabulary of the training captions (None for a classify-only model)."""
    if not config.model.captions:
        return None
    train = [c for refs in manifest.captions(config.data.train_split) for c in refs]
    if not train:
        raise ValueError(f"model.task={config.model.task} needs captions: the manifest has none in split "
                         f"{config.data.train_split!r} (fill its caption column; several rows per video are fine)")
    return Vocabulary.build(train, min_freq=config.caption.min_freq)


def build_objective(config: Config, manifest: Manifest, vocab: Vocabulary | None) -> Objective:
    """The training loss of ``model.task``."""
    cfg, c = config.train, config.caption
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if vocab is None:
        return ClassifyObjective(criterion)
    refs = manifest.captions(config.data.train_split)
    missing = sum(not r for r in refs)
    if missing:
        raise ValueError(f"{missing} of {len(refs)} {config.data.train_split} videos have no caption; "
                         "give every training video at least one (or drop it from the split)")
    encoded = [[vocab.encode(text, c.max_words) for text in texts] for texts in refs]
    return CaptionObjective(encoded, label_smoothing=c.label_smoothing, scheduled_sampling=c.scheduled_sampling,
                            loss_weight=c.loss_weight, seed=cfg.seed,
                            class_criterion=criterion if config.model.task == "both" else None)


def validate(model: nn.Module, loader: torch.utils.data.DataLoader, config: Config, *, device: torch.device,
             bad: BadVideos, references: list[list[str]], vocab: Vocabulary | None) -> dict[str, float]:
    """The validation columns of one epoch: classification ones and/or (greedy) caption scores."""
    split, row = config.data.val_split, {}
    if config.model.task != "caption":
        result = evaluate(model, loader, device=device, amp=config.train.amp, bad=bad, split=split, desc="validate")
        row |= {"val_loss": result["loss"], "val_clip_acc": result["clip"]["top1"],
                "val_video_acc": result["video_metrics"]["top1"], "val_top5": result["video_metrics"]["top5"],
                "val_mean_class_acc": result["video_metrics"]["mean_class_acc"]}
    if vocab is not None:
        found = evaluate_captions(model, loader, references=references, vocab=vocab, device=device,
                                  max_words=config.caption.max_words, amp=config.train.amp, bad=bad, split=split)
        row |= {f"val_{k}": v for k, v in found["metrics"].items() if k in CAPTION_COLUMNS_KEYS}
    return row


def fit(config: Config, run_dir: str | Path) -> Path:
    """Train a model as ``config`` says; returns the run folder.

    The run folder gets ``config.yaml`` (resolved), ``classes.txt``, ``metrics.csv``,
    ``curves.png``, ``best.pt`` and ``last.pt``, and ``bad_videos.csv`` when any failed.
    Caption models (``model.task`` caption / both) also get ``vocab.txt``, and keep as
    ``best.pt`` the epoch of the highest validation BLEU-4 (greedy decoding).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.train.seed)
    manifest = resolve_manifest(config.data, run_dir)
    save_config(config, run_dir / "config.yaml")
    (run_dir / "classes.txt").write_text("".join(f"{c}\n" for c in manifest.classes))
    train_set, val_set = build_datasets(config, manifest)
    vocab = caption_vocabulary(config, manifest)
    if vocab is not None:
        (run_dir / "vocab.txt").write_text("".join(f"{w}\n" for w in vocab.words))
    objective = build_objective(config, manifest, vocab)
    val_refs = manifest.captions(config.data.val_split)
    device = select_device(config.train.device)
    model = build_model_from_config(config, len(manifest.classes), vocab_size=len(vocab) if vocab else None).to(device)
    cfg = config.train
    steps = math.ceil(len(train_set) / cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported())
    columns = HISTORY_COLUMNS + tuple(f"val_{k}" for k in CAPTION_COLUMNS_KEYS) * (vocab is not None)
    bad = BadVideos(config.data.max_bad_fraction)
    history: list[dict] = []
    best = -1.0
    print(f"training {config.model.backbone}+{config.model.head} ({config.model.task}) on {device}: "
          f"{len(train_set.videos)} train / {len(val_set.videos)} {config.data.val_split} videos, "
          f"{len(manifest.classes)} classes" + (f", {len(vocab)} words" if vocab else "") + f" -> {run_dir}")
    try:
        for epoch in range(cfg.epochs):
            start = time.time()
            loader_args = dict(batch_size=cfg.batch_size, num_workers=config.data.num_workers,
                               timeout=config.data.timeout, seed=cfg.seed, epoch=epoch)
            if isinstance(objective, CaptionObjective):
                objective.set_epoch(epoch, cfg.epochs)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
            row |= train_one_epoch(model, make_loader(train_set, shuffle=True, **loader_args), objective, optimizer,
                                   scheduler, device=device, epoch=epoch, cfg=cfg, scaler=scaler, bad=bad)
            score = row["train_acc"]
            if val_set.videos and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row |= validate(model, make_loader(val_set, shuffle=False, **loader_args), config, device=device,
                                bad=bad, references=val_refs, vocab=vocab)
                score = row["val_bleu4"] if vocab is not None else row["val_video_acc"]
            row["seconds"] = round(time.time() - start, 1)
            history.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            state = dict(epoch=epoch + 1, metrics=row, optimizer=optimizer.state_dict(),
                         scheduler=scheduler.state_dict(), scaler=scaler.state_dict())
            payload = checkpoint_payload(model, config, manifest.classes, vocab=vocab.to_list() if vocab else None,
                                         **state)
            save_checkpoint(run_dir / "last.pt", payload)
            if score > best:
                best = score
                save_checkpoint(run_dir / "best.pt", payload)
            write_csv(run_dir / "metrics.csv", columns, [[h.get(k, "") for k in columns] for h in history])
            plot_curves(history, run_dir / "curves.png")
    finally:
        if any(bad.failures.values()):
            bad.write(run_dir / "bad_videos.csv")
    return run_dir
