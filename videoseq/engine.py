"""The training engine: ``train_one_epoch``, ``evaluate`` and ``fit``.

Batches arrive as uint8 clips and are normalised on the model's device. Videos that
fail to decode are skipped (``data.on_error: skip``), listed in the run folder's
``bad_videos.csv``, and the run stops with a clear message once more than
``data.max_bad_fraction`` of a split has failed.

A run can stop at any step and be resumed exactly (``fit(..., resume=True)``, see
``videoseq.resume``); a non-finite loss stops it naming the step and the batch's
videos (or skips the batch), and no checkpoint is ever written with NaN/inf weights.

Under torchrun (``videoseq.distributed``) every rank trains its shard of the clips;
evaluation gathers every rank's predictions, and rank 0 alone prints and writes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from videoseq import distributed
from videoseq.checkpoint import (
    build_model_from_config, checkpoint_payload, load_checkpoint, load_weights, remove_partial_checkpoints,
    save_checkpoint,
)
from videoseq.config import Config, TrainConfig, save_config
from videoseq.datasets import ClipDataset, Manifest, make_loader, write_csv
from videoseq.features import HeadOnly, feature_datasets
from videoseq.framecache import open_frame_cache
from videoseq.metrics import aggregate_by_video, caption_metrics, classification_metrics, plot_curves
from videoseq.models import VideoClassifier
from videoseq.prepare import resolve_manifest
from videoseq.resume import StopSignals, TrainingInterrupted, check_resumable, rng_state, set_rng_state
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


def whole_model(module: nn.Module) -> VideoClassifier:
    """The classifier inside a training module (DDP, ``torch.compile``, ``HeadOnly``): what checkpoints hold."""
    module = distributed.unwrap(module)
    return module.model if isinstance(module, HeadOnly) else module


class NonFiniteLoss(RuntimeError):
    """A training batch gave a NaN or infinite loss (``train.on_nonfinite: stop``)."""


@dataclass
class Progress:
    """Where a run stands, saved in every checkpoint so that a resumed run goes on from here.

    ``batch`` batches of epoch ``epoch`` (0-based; = epochs completed) are done; the
    running sums are those of that epoch so far, so its metrics row comes out the
    same whether or not the run was interrupted inside it.
    """

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch done (its sample order is fixed by (seed, epoch))
    step: int = 0  # batches done since the start of the run
    loss_sum: float = 0.0
    correct: int = 0
    counted: int = 0  # what ``correct`` is out of: clips, or words for a caption-only model
    seen: int = 0
    skipped: int = 0  # batches of this epoch skipped for a non-finite loss
    epoch_lr: float = 0.0  # learning rate when the current epoch began
    seconds: float = 0.0  # training seconds spent in the current epoch before this process
    best: float = -1.0  # best validation (or training) score so far, for best.pt
    history: list[dict] = field(default_factory=list)  # metrics rows of completed epochs

    def epoch_metrics(self) -> dict[str, float]:
        return {"train_loss": self.loss_sum / max(self.seen, 1), "train_acc": self.correct / max(self.counted, 1)}

    def finish_epoch(self) -> None:
        self.epoch, self.batch = self.epoch + 1, 0
        self.loss_sum, self.correct, self.counted, self.seen, self.skipped, self.seconds = 0.0, 0, 0, 0, 0, 0.0

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> Progress:
        return cls(**state)


class ModelEma:
    """Exponential moving average of a model's weights, updated after every optimizer step.

    ``ema = decay * ema + (1 - decay) * weights`` for floating-point parameters and
    buffers; integer buffers (BatchNorm's batch counter) are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for average, current in zip(self.module.state_dict().values(), model.state_dict().values()):
            if average.is_floating_point():
                average.lerp_(current, 1.0 - self.decay)
            else:
                average.copy_(current)


StopCheck = Callable[[Progress], bool]


class ClassifyObjective:
    """Cross-entropy on the class logits; counts the clips classified right."""

    def __init__(self, criterion: nn.Module) -> None:
        self.criterion = criterion

    def __call__(self, model: nn.Module, clips: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Loss, number right and number counted for one batch of model inputs (clips ``(B, T, 3, H, W)``)."""
        labels = batch["label"].to(clips.device, non_blocking=True)
        logits = model(clips)  # (B, num_classes)
        loss = self.criterion(logits.float(), labels)
        return loss, (logits.argmax(1) == labels).sum(), len(labels)


class CaptionObjective:
    """Word cross-entropy under teacher forcing, on one reference drawn per clip per epoch
    or on every reference of every clip (``all_references``).

    ``references[v]`` holds the token id lists (``<bos> ... <eos>``) of video ``v`` of
    the training set. The reference of a clip is drawn from ``(seed, epoch, item)``
    alone, so a resumed run (or another rank) draws the same. With ``all_references``
    the clip is encoded once and the decoder is taught all its references from that
    encoding: the words' loss is the mean over every reference word, so the decoder
    learns the spread of the references, not one draw of it. Scheduled sampling ramps
    linearly from 0 at the first epoch to ``scheduled_sampling`` at the last. With task
    ``both`` the class loss is added and the accuracy counted is the class accuracy;
    otherwise it is the word accuracy.
    """

    def __init__(self, references: list[list[list[int]]], *, label_smoothing: float, scheduled_sampling: float,
                 loss_weight: float = 1.0, class_criterion: nn.Module | None = None, seed: int = 0,
                 all_references: bool = False) -> None:
        self.references = references
        self.label_smoothing, self.final_sampling = label_smoothing, scheduled_sampling
        self.loss_weight, self.class_criterion = loss_weight, class_criterion
        self.seed, self.epoch, self.sampling = seed, 0, 0.0
        self.all_references = all_references

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch
        self.sampling = self.final_sampling * epoch / max(epochs - 1, 1)

    def targets(self, videos: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The references taught, padded: ids ``(R, L)`` starting with ``<bos>``, and the clip
        (row of the batch) of each, ``(R,)``; None when there is one reference per clip (``R = B``)."""
        if self.all_references:
            rows = [row for row, v in enumerate(videos.tolist()) for _ in self.references[v]]
            return pad_sequences([ref for v in videos.tolist() for ref in self.references[v]])[0], torch.tensor(rows)
        chosen = []
        for v, item in zip(videos.tolist(), items.tolist()):
            refs = self.references[v]
            pick = np.random.default_rng([self.seed, self.epoch, item]).integers(len(refs))
            chosen.append(refs[int(pick)])
        return pad_sequences(chosen)[0], None

    def __call__(self, model: nn.Module, clips: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        ids, rows = self.targets(batch["index"], batch["item"])  # (R, L), (R,) or None
        ids, rows = ids.to(clips.device), None if rows is None else rows.to(clips.device)
        class_logits, word_logits = model.forward_both(clips, ids[:, :-1], sampling=self.sampling,
                                                       rows=rows)  # (R, L-1, V)
        target = ids[:, 1:]  # (R, L-1)
        loss = nn.functional.cross_entropy(word_logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD_ID,
                                           label_smoothing=self.label_smoothing)
        if class_logits is None:
            real = target != PAD_ID
            return loss, ((word_logits.argmax(2) == target) & real).sum(), int(real.sum())
        labels = batch["label"].to(clips.device, non_blocking=True)
        loss = self.class_criterion(class_logits.float(), labels) + self.loss_weight * loss
        return loss, (class_logits.argmax(1) == labels).sum(), len(labels)


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
    progress: Progress | None = None,
    ema: ModelEma | None = None,
    should_stop: StopCheck | None = None,
) -> dict[str, float]:
    """Train on the batches of ``loader``, updating ``progress`` after each one.

    ``criterion``: a loss on class logits, or an objective (:class:`ClassifyObjective`,
    :class:`CaptionObjective`) that returns the loss of a batch.

    Returns early, after a complete step, once ``should_stop(progress)`` is true; the
    caller then saves a checkpoint at ``progress``. A non-finite loss raises
    ``NonFiniteLoss`` naming the step and the batch's videos, or skips the batch
    (``cfg.on_nonfinite``).
    """
    progress = progress if progress is not None else Progress(epoch=epoch)
    objective = criterion if isinstance(criterion, (ClassifyObjective, CaptionObjective)) else ClassifyObjective(criterion)
    model.train()
    total = progress.batch + len(loader)
    bar = tqdm(_batches(loader, progress, should_stop), desc=f"epoch {epoch + 1}/{cfg.epochs} train",
               total=total, initial=progress.batch, leave=False, dynamic_ncols=True, disable=not distributed.is_main())
    for batch in bar:
        bad.add("train", loader.dataset, batch["errors"])
        if batch["video"].numel():
            train_step(model, batch, objective, optimizer, scheduler, device=device, cfg=cfg, scaler=scaler,
                       progress=progress, ema=ema, dataset=loader.dataset)
        progress.batch += 1
        progress.step += 1
        bar.set_postfix(loss=f"{progress.loss_sum / max(progress.seen, 1):.3f}",
                        acc=f"{progress.correct / max(progress.counted, 1):.3f}")
        if should_stop is not None and should_stop(progress):
            break
    return progress.epoch_metrics()


def _batches(loader: torch.utils.data.DataLoader, progress: Progress, should_stop: StopCheck | None):
    """The loader's batches; a loader whose workers died after a stop request just ends."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except RuntimeError:  # e.g. workers that took the terminal's Ctrl-C before ignoring it
            if should_stop is not None and should_stop(progress):
                return
            raise
        yield batch


def train_step(
    model: nn.Module, batch: dict, objective: Objective, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, *, device: torch.device, cfg: TrainConfig,
    scaler: torch.amp.GradScaler, progress: Progress, ema: ModelEma | None, dataset: ClipDataset,
) -> None:
    """One optimizer step on one batch; adds its loss and hits to ``progress``."""
    clips = model_input(batch["video"], model, device)  # (B, T, 3, H, W) or cached features
    # The forward pass updates BatchNorm statistics: keep a copy to undo them if the batch is skipped.
    buffers = {name: b.clone() for name, b in model.named_buffers()} if cfg.on_nonfinite == "skip" else {}
    with autocast_for(device, cfg.amp):
        loss, right, count = objective(model, clips, batch)
    if not torch.isfinite(loss):
        videos = [dataset.videos[i][0] for i in batch["index"].tolist()]
        message = (f"non-finite loss {loss.item()} at step {progress.step + 1} (epoch {progress.epoch + 1}, "
                   f"batch {progress.batch + 1}); videos of the batch: {videos}")
        if cfg.on_nonfinite == "stop":
            raise NonFiniteLoss(f"{message}. The last checkpoint holds the weights before it; lower train.lr, "
                                "keep train.clip_grad, check these videos, or set train.on_nonfinite: skip")
        tqdm.write(f"skipping the batch: {message}")
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        progress.skipped += 1
        return
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.clip_grad:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    if ema is not None:
        ema.update(whole_model(model))
    progress.loss_sum += loss.item() * len(clips)
    progress.correct += int(right)
    progress.counted += count
    progress.seen += len(clips)


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
    Under torchrun each rank scores its shard of the loader; the clips of all ranks
    are gathered and keyed by dataset item, so each counts once, in item order.
    """
    model.eval()
    logits_all, labels_all, videos_all, views_all, items_all = [], [], [], [], []
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
        views_all.append(batch["view"])
        items_all.append(batch["item"])
    logits_np, labels_np, videos_np, items_np, views_np = (
        torch.cat(x).numpy() if x else None for x in (logits_all, labels_all, videos_all, items_all, views_all))
    logits_np, labels_np, videos_np, views_np = gather_clips(logits_np, labels_np, videos_np, items_np, views_np)
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
        "view": views_np,
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
        clips = model_input(batch["video"][rows], model, device)  # (b, T, 3, H, W)
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


def gather_clips(logits, labels, videos, items, views=None):
    """Every rank's clip results, each dataset item once, in item order (as they are in one process).

    Arguments are this rank's arrays (None when it scored no clip); returns
    ``(logits, labels, videos, views)`` of all ranks, or Nones when no rank scored a clip.
    """
    if not distributed.is_distributed():
        return logits, labels, videos, views
    parts = [p for p in distributed.gather_objects((logits, labels, videos, items, views)) if p[0] is not None]
    if not parts:
        return None, None, None, None
    logits, labels, videos, items = (np.concatenate(column) for column in list(zip(*parts))[:4])
    views = None if parts[0][4] is None else np.concatenate([p[4] for p in parts])
    _, first = np.unique(items, return_index=True)  # sorted by item, duplicates dropped
    return logits[first], labels[first], videos[first], None if views is None else views[first]


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
    """Train and validation datasets of a manifest, with the presets of the config (or of its feature cache).

    With ``data.frame_cache`` the clips' frames are read from that cache instead of decoded.
    """
    if config.data.features:
        return feature_datasets(config, manifest)
    d = config.data
    index = {name: i for i, name in enumerate(manifest.classes)}
    unknown = sorted((set(d.flip_swap) | set(d.flip_swap.values())) - set(index))
    if unknown:
        raise ValueError(f"data.flip_swap names labels not in the class list: {unknown}")
    swap = {index[a]: index[b] for a, b in d.flip_swap.items()}
    train_videos, val_videos = manifest.videos(d.train_split), manifest.videos(d.val_split)
    cache = open_frame_cache(d, train_videos + val_videos) if d.frame_cache else None
    common = dict(clip_len=d.frames, sampling=d.sampling, stride=d.stride, short=d.short_video,
                  seed=config.train.seed, on_error=d.on_error, cache=cache)
    train_set = ClipDataset(
        train_videos, train=True, **common,
        transform=ClipTrainPreset(size=d.size, crop_scale=d.crop_scale, color_jitter=d.color_jitter,
                                  flip=d.flip, flip_swap=swap),
    )
    val_set = ClipDataset(
        val_videos, train=False, views=d.test_views, **common,
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
                            loss_weight=c.loss_weight, seed=cfg.seed, all_references=c.all_references,
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


@dataclass
class Trainer:
    """Everything a training run carries from step to step, and its checkpoints.

    ``payload`` gathers it into a checkpoint and ``restore`` puts it back, so that a
    run resumed from ``last.pt`` computes exactly what the uninterrupted run would.
    ``model`` is the whole classifier (what checkpoints hold); ``trained`` is what the
    optimiser steps through (see ``training_module``: DDP, head only, compiled). With
    ``train.ema`` the checkpoint's ``model`` is the averaged weights (what ``eval`` and
    ``predict`` load) and ``train_model`` the raw ones. Under torchrun every rank keeps
    a Trainer; rank 0 alone prints and writes. ``objective`` is the training loss of
    ``model.task``; caption models carry their ``vocab`` (saved in every checkpoint)
    and the validation ``references``, and keep as ``best.pt`` the highest validation BLEU-4.
    """

    config: Config
    classes: list[str]
    run_dir: Path
    device: torch.device
    model: VideoClassifier
    trained: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEma | None
    steps_per_epoch: int
    bad: BadVideos
    progress: Progress = field(default_factory=Progress)
    objective: Objective | None = None
    vocab: Vocabulary | None = None
    references: list[list[str]] = field(default_factory=list)  # validation captions per video

    @classmethod
    def create(cls, config: Config, classes: list[str], run_dir: Path, device: torch.device,
               steps_per_epoch: int, *, objective: Objective | None = None, vocab: Vocabulary | None = None,
               references: list[list[str]] | None = None) -> Trainer:
        cfg = config.train
        model = build_model_from_config(config, len(classes), vocab_size=len(vocab) if vocab else None).to(device)
        trained = training_module(model, config, device)
        optimizer = build_optimizer(model, cfg)
        scaler = torch.amp.GradScaler(enabled=amp_dtype(device, cfg.amp) == torch.float16)
        return cls(config, classes, run_dir, device, model, trained, optimizer,
                   build_scheduler(optimizer, cfg, steps_per_epoch), scaler,
                   ModelEma(model, cfg.ema) if cfg.ema else None, steps_per_epoch,
                   BadVideos(config.data.max_bad_fraction), Progress(epoch_lr=optimizer.param_groups[0]["lr"]),
                   objective or ClassifyObjective(nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)),
                   vocab, list(references or []))

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of ``metrics.csv``: caption runs add their validation caption scores."""
        return HISTORY_COLUMNS + tuple(f"val_{k}" for k in CAPTION_COLUMNS_KEYS) * (self.vocab is not None)

    @property
    def saved_model(self) -> VideoClassifier:
        """The weights checkpoints give ``eval`` and ``predict``: the average with ``train.ema``."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def eval_model(self) -> nn.Module:
        """What validation runs: ``saved_model``, fed as in training (its head alone on cached features)."""
        if isinstance(distributed.unwrap(self.trained), HeadOnly):
            return self.saved_model.head  # what HeadOnly runs: (B, T, D[, h, w]) features in
        return self.saved_model

    def payload(self) -> dict:
        p = self.progress
        state = dict(epoch=p.epoch, batch_in_epoch=p.batch, step=p.step,
                     metrics=p.history[-1] if p.history else {}, progress=p.state_dict(),
                     optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                     scaler=self.scaler.state_dict(), rng=rng_state(),
                     bad_videos={split: dict(found) for split, found in self.bad.failures.items()})
        if self.ema is not None:
            state["train_model"] = self.model.state_dict()
        return checkpoint_payload(self.saved_model, self.config, self.classes,
                                  vocab=self.vocab.to_list() if self.vocab else None, **state)

    def restore(self, payload: dict, path: Path) -> None:
        """Put back the state of a checkpoint written by ``payload`` (RNGs last)."""
        load_weights(self.model, payload.get("train_model", payload["model"]), path)
        if self.ema is not None:
            load_weights(self.ema.module, payload["model"], path)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.progress = Progress.from_state_dict(payload["progress"])
        self.bad.failures = {split: dict(found) for split, found in payload["bad_videos"].items()}
        set_rng_state(payload["rng"])

    def save(self, name: str, payload: dict) -> None:
        if distributed.is_main():
            save_checkpoint(self.run_dir / name, payload)

    def train(self, train_set: ClipDataset, val_set: ClipDataset, signals: StopSignals) -> None:
        """Epochs until ``train.epochs``, or until a signal or ``train.stop_after_steps`` stops the run.

        The loaders are built once; each epoch (or a resumed one, mid-epoch) only moves
        their samplers on, so ``data.persistent_workers`` keeps the workers alive.
        """
        cfg = self.config.train
        options = loader_options(self.config)
        train_loader = make_loader(train_set, shuffle=True, pad=True, **options)
        val_loader = make_loader(val_set, shuffle=False, pad=False, **options)

        def should_stop(progress: Progress) -> bool:
            # ``==``: a run resumed from its stop_after_steps checkpoint (same config.yaml) goes on
            return signals.requested or progress.step == cfg.stop_after_steps

        while self.progress.epoch < cfg.epochs:
            start = time.time()
            self.train_epoch(train_loader, should_stop)
            self.progress.seconds += time.time() - start
            if self.progress.batch < self.steps_per_epoch:  # stopped inside the epoch
                self.save("last.pt", self.payload())
                return self.stopped(signals)
            self.end_epoch(val_loader)
            if should_stop(self.progress):
                return self.stopped(signals)
        distributed.check_in_sync(self.model, self.run_dir / "ranks.json")

    def train_epoch(self, loader: torch.utils.data.DataLoader, should_stop: StopCheck) -> None:
        """The rest of epoch ``progress.epoch``: its fixed order from batch ``progress.batch`` on."""
        p, cfg = self.progress, self.config.train
        if p.batch == 0:
            p.epoch_lr = self.optimizer.param_groups[0]["lr"]
        loader.sampler.set_epoch(p.epoch, skip=p.batch * cfg.batch_size)
        if isinstance(self.objective, CaptionObjective):
            self.objective.set_epoch(p.epoch, cfg.epochs)
        train_one_epoch(self.trained, loader, self.objective, self.optimizer, self.scheduler, device=self.device, epoch=p.epoch, cfg=cfg,
                        scaler=self.scaler, bad=self.bad, progress=p, ema=self.ema, should_stop=should_stop)
        distributed.broadcast_buffers(self.model)  # one set of BatchNorm statistics for evaluation and checkpoints

    def end_epoch(self, val_loader: torch.utils.data.DataLoader) -> None:
        """Validate, record the epoch's row, write last.pt (and best.pt), metrics.csv and curves.png."""
        p, cfg, d = self.progress, self.config.train, self.config.data
        row = {"epoch": p.epoch + 1, "lr": p.epoch_lr, **distributed.mean_over_ranks(p.epoch_metrics())}
        # best.pt: the best validation score, or the best training accuracy in a run without a
        # validation split; an epoch not validated (train.eval_every) does not compete.
        score = None if val_loader.dataset.videos else row["train_acc"]
        start = time.time()
        if val_loader.dataset.videos and ((p.epoch + 1) % cfg.eval_every == 0 or p.epoch + 1 == cfg.epochs):
            row |= validate(self.eval_model, val_loader, self.config, device=self.device, bad=self.bad,
                            references=self.references, vocab=self.vocab)
            score = row["val_bleu4"] if self.vocab is not None else row["val_video_acc"]
        row["seconds"] = round(p.seconds + time.time() - start, 3)
        p.history.append(row)
        p.finish_epoch()
        improved = score is not None and score > p.best
        p.best = p.best if score is None else max(p.best, score)
        if not distributed.is_main():
            return
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        payload = self.payload()
        self.save("last.pt", payload)
        if improved:
            self.save("best.pt", payload)
        columns = self.columns
        write_csv(self.run_dir / "metrics.csv", columns, [[h.get(k, "") for k in columns] for h in p.history])
        plot_curves(p.history, self.run_dir / "curves.png")

    def stopped(self, signals: StopSignals) -> None:
        last = self.run_dir / "last.pt"
        if signals.signum is not None:
            raise TrainingInterrupted(signals.signum, str(last), self.progress.step)
        if distributed.is_main():
            print(f"stopped after step {self.progress.step} (train.stop_after_steps); resumable checkpoint {last}. "
                  f"Continue with: videoseq train CONFIG --resume {self.run_dir}")


def fit(config: Config, run_dir: str | Path, *, resume: bool = False) -> Path:
    """Train a model as ``config`` says; returns the run folder.

    The run folder gets ``config.yaml`` (resolved), ``classes.txt``, ``metrics.csv``,
    ``curves.png``, ``best.pt`` and ``last.pt``, and ``bad_videos.csv`` when any failed.
    Caption models (``model.task`` caption / both) also get ``vocab.txt``, and keep as
    ``best.pt`` the epoch of the highest validation BLEU-4 (greedy decoding).
    ``resume=True`` continues the run in ``run_dir`` from its ``last.pt`` (written at
    an epoch end, on SIGINT/SIGTERM, or at ``train.stop_after_steps``) and ends with
    the same weights as a run that was never interrupted. SIGINT or SIGTERM save a
    resumable ``last.pt`` after the current step and raise ``TrainingInterrupted``.
    Under torchrun every rank trains its shard; rank 0 alone writes, and adds ``ranks.json``.
    """
    run_dir = Path(run_dir)
    device, joined = distributed.setup(select_device(config.train.device))
    main = distributed.is_main()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            for partial in remove_partial_checkpoints(run_dir):
                print(f"removed {partial}: a checkpoint write that was killed before it finished")
        saved = load_resume_checkpoint(run_dir, config) if resume else None
        seed_everything(config.train.seed)
        manifest = resolve_manifest(config.data, run_dir if main else None)
        if saved is not None and list(saved["classes"]) != manifest.classes:
            raise ValueError(f"cannot resume {run_dir}: its classes {saved['classes'][:5]}... differ from the "
                             f"manifest's {manifest.classes[:5]}...")
        if main:
            save_config(config, run_dir / "config.yaml")
            (run_dir / "classes.txt").write_text("".join(f"{c}\n" for c in manifest.classes))
        train_set, val_set = build_datasets(config, manifest)
        vocab = caption_vocabulary(config, manifest)
        if main and vocab is not None:
            (run_dir / "vocab.txt").write_text("".join(f"{w}\n" for w in vocab.words))
        shard = math.ceil(len(train_set) / distributed.world_size())  # padded: every rank as many clips
        trainer = Trainer.create(config, manifest.classes, run_dir, device,
                                 math.ceil(shard / config.train.batch_size),
                                 objective=build_objective(config, manifest, vocab), vocab=vocab,
                                 references=manifest.captions(config.data.val_split))
        if saved is not None:
            trainer.restore(saved, run_dir / "last.pt")
        p = trainer.progress
        where = f", resuming at epoch {p.epoch + 1} batch {p.batch + 1} (step {p.step})" if saved is not None else ""
        if main:
            print(f"training {config.model.backbone}+{config.model.head} ({config.model.task}) on {device} "
                  f"x{distributed.world_size()}: {len(train_set.videos)} train / {len(val_set.videos)} "
                  f"{config.data.val_split} videos, {len(manifest.classes)} classes"
                  + (f", {len(vocab)} words" if vocab else "") + f" -> {run_dir}{where}")
        try:
            with StopSignals() as signals:
                trainer.train(train_set, val_set, signals)
        finally:
            if main and any(trainer.bad.failures.values()):
                trainer.bad.write(run_dir / "bad_videos.csv")
    finally:
        distributed.teardown(joined)
    return run_dir


def load_resume_checkpoint(run_dir: Path, config: Config) -> dict:
    """``run_dir/last.pt``, checked to hold resume state written with a compatible config."""
    path = run_dir / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume in {run_dir}: it has no last.pt; start the run without --resume")
    payload = load_checkpoint(path)
    if "progress" not in payload or "rng" not in payload:
        raise ValueError(f"{path} holds no resume state (written by an older videoseq); start a new run")
    check_resumable(payload["config"], config.to_dict(), str(path))
    return payload


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
