"""The loops: ``train_one_epoch`` (with ``train_step``), ``evaluate`` and ``evaluate_captions``.

Batches arrive as uint8 clips and are normalised on the model's device
(``model_input``). Videos that fail to decode are skipped and counted
(``BadVideos``); the run stops with a clear message once more than
``data.max_bad_fraction`` of a split has failed. A non-finite loss stops training
naming the step and the batch's videos (or skips the batch). Under torchrun every
rank scores its shard and ``gather_clips`` joins them, each clip once.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from videoseq import distributed
from videoseq.checkpoint import load_weights
from videoseq.config import TrainConfig
from videoseq.datasets import ClipDataset
from videoseq.engine.objectives import ClassifyObjective, Objective
from videoseq.errors import InputError, VideoseqError
from videoseq.metrics import aggregate_by_video, caption_metrics, classification_metrics
from videoseq.models import VideoClassifier
from videoseq.models.decoding import Decoding
from videoseq.progress import progress_bar
from videoseq.runtime import autocast_for
from videoseq.tables import write_csv
from videoseq.text import Vocabulary, normalize_caption
from videoseq.transforms import normalize_clip


class TooManyBadVideos(InputError, RuntimeError):
    """More than the allowed fraction of a split failed to decode."""


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


def model_input(video: torch.Tensor, model: nn.Module, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` as the model takes it.

    uint8 clips ``(B, T, C, H, W)`` are normalised with the backbone's mean/std there;
    cached features ``(B, T, D[, h, w])`` (float16) only become float32.
    """
    x = video.to(device, non_blocking=True)
    if x.dtype != torch.uint8:
        return x.float()
    backbone = distributed.unwrap(model).backbone
    return normalize_clip(x, backbone.mean, backbone.std)  # (B, T, C, H, W)


def whole_model(module: nn.Module) -> VideoClassifier:
    """The classifier inside a training module (DDP, ``torch.compile``, ``HeadOnly``): what checkpoints hold."""
    module = distributed.unwrap(module)
    return module.model if isinstance(module, HeadOnly) else module


class NonFiniteLoss(VideoseqError, RuntimeError):
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
    best_epoch: int = 0  # the epoch (1-based) of that score; 0 before the first
    stale: int = 0  # validations in a row without an improvement (train.early_stop)
    stopped_early: bool = False  # train.early_stop ended the run: a resumed run ends at once too
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


@dataclass
class Optimization:
    """What a training step updates besides the weights: optimizer, LR schedule, AMP loss scaler, weight average."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEma | None = None

    def step(self, loss: torch.Tensor, model: nn.Module, clip_grad: float | None) -> None:
        """Backpropagate ``loss`` and step: gradients clipped to ``clip_grad``, schedule and average moved on."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(whole_model(model))


StopCheck = Callable[[Progress], bool]


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    criterion: nn.Module | Objective,
    optimization: Optimization,
    *,
    device: torch.device,
    cfg: TrainConfig,
    bad: BadVideos,
    progress: Progress,
    should_stop: StopCheck | None = None,
) -> dict[str, float]:
    """Train epoch ``progress.epoch`` on the batches of ``loader``, updating ``progress`` after each one.

    ``criterion``: a loss on class logits, or an objective (:class:`ClassifyObjective`,
    :class:`CaptionObjective`) that returns the loss of a batch.

    Returns early, after a complete step, once ``should_stop(progress)`` is true; the
    caller then saves a checkpoint at ``progress``. A non-finite loss raises
    ``NonFiniteLoss`` naming the step and the batch's videos, or skips the batch
    (``cfg.on_nonfinite``).
    """
    objective = criterion if isinstance(criterion, Objective) else ClassifyObjective(criterion)
    model.train()
    total = progress.batch + len(loader)
    bar = progress_bar(_batches(loader, progress, should_stop), desc=f"epoch {progress.epoch + 1}/{cfg.epochs} train",
                       total=total, initial=progress.batch, disable=not distributed.is_main())
    for batch in bar:
        bad.add("train", loader.dataset, batch["errors"])
        if batch["video"].numel():
            train_step(model, batch, objective, optimization, device=device, cfg=cfg, progress=progress,
                       dataset=loader.dataset)
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


def train_step(model: nn.Module, batch: dict, objective: Objective, optimization: Optimization, *,
               device: torch.device, cfg: TrainConfig, progress: Progress, dataset: ClipDataset) -> None:
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
    optimization.step(loss, model, cfg.clip_grad)
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
    for batch in progress_bar(loader, desc=desc, disable=not distributed.is_main()):
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
        raise InputError(f"no {split} clip could be decoded; see the errors above")
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
    decoding: Decoding = Decoding(),
    amp: bool = False,
    bad: BadVideos | None = None,
    split: str = "val",
) -> dict:
    """Caption the first view of every video (``decoding``: greedy by default) and score the captions.

    ``references[v]`` are the reference captions of video ``v`` of ``loader.dataset``.
    Returns ``video_ids``, ``captions`` and normalised ``references`` per video, and
    ``metrics`` (BLEU-1..4, CIDEr-D / METEOR where available) over the videos with references.
    """
    model.eval()
    captions: dict[int, str] = {}
    for batch in progress_bar(loader, desc="captions", disable=not distributed.is_main()):
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
            found = decoding.generate(model, clips)
        for r, ids in zip(rows, found):
            captions[int(batch["index"][r])] = vocab.decode(ids)
    if not captions:
        raise InputError(f"no {split} clip could be decoded; see the errors above")
    video_ids = sorted(captions)
    refs = [[normalize_caption(c) for c in references[v]] for v in video_ids]
    scored = [i for i, r in enumerate(refs) if r]
    if not scored:
        raise InputError(f"no {split} video has a reference caption; add a caption column to the manifest")
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


class HeadOnly(nn.Module):
    """The head of ``model`` fed cached features; the backbone takes the cache's weights and is frozen.

    The checkpoint stays that of the whole ``model``, so it classifies videos as usual.
    """

    def __init__(self, model: VideoClassifier, cache_dir: str | Path) -> None:
        super().__init__()
        state = torch.load(Path(cache_dir) / "backbone.pt", map_location="cpu", weights_only=True)
        load_weights(model.backbone, state["backbone"], Path(cache_dir) / "backbone.pt")
        model.backbone.requires_grad_(False)
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` or ``(B, T, D, h, w)`` -> ``(B, num_classes)``."""
        return self.model.head(features)
