"""The run: ``fit`` assembles datasets, model, optimizer and schedule, and ``Trainer`` drives the epochs.

A run can stop at any step and be resumed exactly (``fit(..., resume=True)``, see
``videoseq.resume``), and no checkpoint is ever written with NaN/inf weights.

Under torchrun (``videoseq.distributed``) every rank trains its shard of the clips;
evaluation gathers every rank's predictions, and rank 0 alone prints and writes.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

from videoseq import distributed
from videoseq.checkpoint import (
    checkpoint_payload,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from videoseq.config import Config, TrainConfig, save_config
from videoseq.datasets import ClipDataset, LoaderOptions, make_loader
from videoseq.engine.loops import (
    BadVideos,
    HeadOnly,
    ModelEma,
    Optimization,
    Progress,
    StopCheck,
    evaluate,
    evaluate_captions,
    train_one_epoch,
)
from videoseq.engine.objectives import (
    CaptionObjective,
    build_objective,
    caption_vocabulary,
    class_weights,
)
from videoseq.engine.records import RunRecords, closing_summary
from videoseq.engine.selection import Selection, select_split, stale_after, with_split
from videoseq.errors import InputError, UsageError
from videoseq.features import feature_datasets
from videoseq.framecache import open_frame_cache
from videoseq.manifest import Manifest, write_manifest
from videoseq.modality import eval_preset, motion_input, train_preset
from videoseq.models import VideoClassifier
from videoseq.models.build import build_model_from_config, check_model_names
from videoseq.models.decoding import Decoding
from videoseq.outputs import check_output_folder, remove_partial_outputs, write_text
from videoseq.prepare import resolve_manifest
from videoseq.resume import (
    TrainingInterrupted,
    check_resumable,
    rng_state,
    set_rng_state,
)
from videoseq.runtime import StopSignals, amp_dtype, seed_everything, select_device, set_threads
from videoseq.sampling import ClipSampling
from videoseq.text import Vocabulary
from videoseq.transforms import flip_swap_ids

HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_clip_acc", "val_video_acc",
    "val_top5", "val_mean_class_acc", "seconds",
)
CAPTION_COLUMNS_KEYS = ("bleu1", "bleu4", "cider_d", "meteor")  # validation caption scores of caption runs


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


def build_optimization(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int, device: torch.device) -> Optimization:
    """Optimizer, schedule, loss scaler (on for fp16 autocast only) and, with ``train.ema``, the weight average."""
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(enabled=amp_dtype(device, cfg.amp) == torch.float16)
    return Optimization(optimizer, build_scheduler(optimizer, cfg, steps_per_epoch), scaler,
                        ModelEma(model, cfg.ema) if cfg.ema else None)


def build_datasets(config: Config, manifest: Manifest) -> tuple[ClipDataset, ClipDataset]:
    """Train and validation datasets of a manifest, with the presets of the config (or of its feature cache).

    The validation split is ``data.val_split`` as ``engine.selection.select_split`` resolves it
    (``auto``: val when the manifest has it). With ``data.frame_cache`` the clips' frames are
    read from that cache instead of decoded.
    """
    config = with_split(config, select_split(config, manifest))
    if config.data.features:
        return feature_datasets(config, manifest)
    d = config.data
    swap, ignored = flip_swap_ids(d.flip_swap, manifest.classes) if d.flip else ({}, [])
    if ignored and distributed.is_main():
        print(f"data.flip_swap: ignoring {ignored}: neither class of these pairs is in this dataset")
    train_videos, val_videos = manifest.videos(d.train_split), manifest.videos(d.val_split)
    cache = open_frame_cache(d, train_videos + val_videos) if d.frame_cache else None
    common = dict(clips=ClipSampling.from_data(d), seed=config.train.seed, on_error=d.on_error, cache=cache,
                  motion=motion_input(d))
    train_set = ClipDataset(train_videos, train=True, **common, transform=train_preset(d, swap))
    val_set = ClipDataset(val_videos, train=False, views=d.test_views, **common, transform=eval_preset(d))
    if not train_set.videos:
        raise UsageError(f"the manifest has no videos in split {d.train_split!r} (data.train_split); "
                         f"it has {manifest.splits()}")
    return train_set, val_set


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
                                  decoding=Decoding(max_words=config.caption.max_words), amp=config.train.amp,
                                  bad=bad, split=split)
        row |= {f"val_{k}": v for k, v in found["metrics"].items() if k in CAPTION_COLUMNS_KEYS}
    return row


class Trainer:
    """Everything a training run carries from step to step, and its checkpoints.

    ``payload`` gathers it into a checkpoint and ``restore`` puts it back, so that a
    run resumed from ``last.pt`` computes exactly what the uninterrupted run would.
    ``model`` is the whole classifier (what checkpoints hold); ``trained`` is what the
    optimiser steps through (see ``training_module``: DDP, head only, compiled). With
    ``train.ema`` the checkpoint's ``model`` is the averaged weights (what ``eval`` and
    ``predict`` load) and ``train_model`` the raw ones. Under torchrun every rank keeps
    a Trainer; rank 0 alone prints and writes. ``objective`` is the training loss of
    ``model.task`` (``build_objective``); caption models carry their ``vocab`` (saved in
    every checkpoint) and the validation ``references``, and keep as ``best.pt`` the
    highest validation BLEU-4.
    """

    def __init__(self, config: Config, manifest: Manifest, run_dir: Path, *, device: torch.device,
                 steps_per_epoch: int, vocab: Vocabulary | None = None, selection: Selection | None = None) -> None:
        self.selection = selection or select_split(config, manifest)  # what data.val_split resolves to
        config = with_split(config, self.selection)
        self.config, self.classes, self.run_dir, self.device = config, manifest.classes, run_dir, device
        self.vocab, self.steps_per_epoch = vocab, steps_per_epoch
        self.model = build_model_from_config(config, len(self.classes), vocab_size=len(vocab) if vocab else None)
        self.model.to(device)
        self.trained = training_module(self.model, config, device)
        self.optimization = build_optimization(self.model, config.train, steps_per_epoch, device)
        self.bad = BadVideos(config.data.max_bad_fraction)
        self.progress = Progress(epoch_lr=self.optimization.optimizer.param_groups[0]["lr"])
        self.class_weights = class_weights(config, manifest)
        self.objective = build_objective(config, manifest, vocab, self.class_weights, device)
        self.references = manifest.captions(config.data.val_split)  # validation captions per video
        self.records = RunRecords(run_dir, self.columns, tensorboard=config.train.tensorboard and distributed.is_main())

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of ``metrics.csv``: caption runs add their validation caption scores."""
        return HISTORY_COLUMNS + tuple(f"val_{k}" for k in CAPTION_COLUMNS_KEYS) * (self.vocab is not None)

    @property
    def saved_model(self) -> VideoClassifier:
        """The weights checkpoints give ``eval`` and ``predict``: the average with ``train.ema``."""
        ema = self.optimization.ema
        return ema.module if ema is not None else self.model

    @property
    def eval_model(self) -> nn.Module:
        """What validation runs: ``saved_model``, fed as in training (its head alone on cached features)."""
        if isinstance(distributed.unwrap(self.trained), HeadOnly):
            return self.saved_model.head  # what HeadOnly runs: (B, T, D[, h, w]) features in
        return self.saved_model

    def payload(self) -> dict:
        p, o = self.progress, self.optimization
        state = dict(epoch=p.epoch, batch_in_epoch=p.batch, step=p.step,
                     metrics=p.history[-1] if p.history else {}, progress=p.state_dict(),
                     optimizer=o.optimizer.state_dict(), scheduler=o.scheduler.state_dict(),
                     scaler=o.scaler.state_dict(), rng=rng_state(),
                     bad_videos={split: dict(found) for split, found in self.bad.failures.items()})
        if o.ema is not None:
            state["train_model"] = self.model.state_dict()
        return checkpoint_payload(self.saved_model, self.config, self.classes,
                                  vocab=self.vocab.to_list() if self.vocab else None, **state)

    def restore(self, payload: dict, path: Path) -> None:
        """Put back the state of a checkpoint written by ``payload`` (RNGs last)."""
        o = self.optimization
        load_weights(self.model, payload.get("train_model", payload["model"]), path)
        if o.ema is not None:
            load_weights(o.ema.module, payload["model"], path)
        o.optimizer.load_state_dict(payload["optimizer"])
        o.scheduler.load_state_dict(payload["scheduler"])
        o.scaler.load_state_dict(payload["scaler"])
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
        train_loader = make_loader(train_set, options, shuffle=True, pad=True)
        val_loader = make_loader(val_set, options, shuffle=False, pad=False)

        def should_stop(progress: Progress) -> bool:
            # ``==``: a run resumed from its stop_after_steps checkpoint (same config.yaml) goes on
            return signals.requested or progress.step == cfg.stop_after_steps

        while self.progress.epoch < cfg.epochs and not self.progress.stopped_early:
            start = time.time()
            self.train_epoch(train_loader, should_stop)
            self.progress.seconds += time.time() - start
            if self.progress.batch < self.steps_per_epoch:  # stopped inside the epoch
                self.save("last.pt", self.payload())
                return self.stopped(signals)
            self.end_epoch(val_loader)
            if should_stop(self.progress) and not self.progress.stopped_early:
                return self.stopped(signals)
        distributed.check_in_sync(self.model, self.run_dir / "ranks.json")
        if distributed.is_main():
            print(self.closing_summary())

    def train_epoch(self, loader: torch.utils.data.DataLoader, should_stop: StopCheck) -> None:
        """The rest of epoch ``progress.epoch``: its fixed order from batch ``progress.batch`` on."""
        p, cfg = self.progress, self.config.train
        if p.batch == 0:
            p.epoch_lr = self.optimization.optimizer.param_groups[0]["lr"]
        loader.sampler.set_epoch(p.epoch, skip=p.batch * cfg.batch_size)
        if isinstance(self.objective, CaptionObjective):
            self.objective.set_epoch(p.epoch, cfg.epochs)
        train_one_epoch(self.trained, loader, self.objective, self.optimization, device=self.device, cfg=cfg,
                        bad=self.bad, progress=p, should_stop=should_stop)
        distributed.broadcast_buffers(self.model)  # one set of BatchNorm statistics for evaluation and checkpoints

    def end_epoch(self, val_loader: torch.utils.data.DataLoader) -> None:
        """Validate, record the epoch's row, write last.pt (and best.pt), metrics.csv and curves.png."""
        p, cfg = self.progress, self.config.train
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
        improved = self.record_score(score)
        if distributed.is_main():
            self.write_epoch(improved)

    def record_score(self, score: float | None) -> bool:
        """Note the finished epoch's selection score (None: not validated): best, best epoch, early-stop count.

        Returns whether it is the best so far (best.pt is written then).
        """
        p, stop = self.progress, self.config.train.early_stop
        if score is None:
            return False
        if stop and self.selection.split is not None:
            best = p.best if p.best_epoch else None  # before the first validation: nothing to beat yet
            p.stale = stale_after(p.stale, score, best, float(stop.get("min_delta", 0.0)))
            p.stopped_early = p.stale >= stop["patience"]
        improved = score > p.best
        if improved:
            p.best, p.best_epoch = score, p.epoch
        return improved

    def closing_summary(self) -> str:
        p, stop = self.progress, self.config.train.early_stop
        reason = (f"early stop: {p.stale} validations without an improvement of more than "
                  f"{stop.get('min_delta', 0.0):g} (train.early_stop)") if p.stopped_early else ""
        return closing_summary(self.run_dir, p.history, self.selection, best_epoch=p.best_epoch, best=p.best,
                               stop_reason=reason)

    def write_epoch(self, improved: bool) -> None:
        """Print the last metrics row; write last.pt (and best.pt when ``improved``), metrics.csv and curves.png."""
        history = self.progress.history
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in history[-1].items()))
        payload = self.payload()
        self.save("last.pt", payload)
        if improved:
            self.save("best.pt", payload)
        self.records.write(history)

    def stopped(self, signals: StopSignals) -> None:
        last = self.run_dir / "last.pt"
        if signals.signum is not None:
            raise TrainingInterrupted(signals.signum, str(last), self.progress.step)
        if distributed.is_main():
            print(f"stopped after step {self.progress.step} (train.stop_after_steps); resumable checkpoint {last}. "
                  f"Continue with: videoseq train CONFIG --resume {self.run_dir}")


def fit(config: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
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

    A folder that holds a run already needs ``resume`` or ``overwrite`` (which removes
    that run's files when the new one starts). Nothing is written, and no folder made,
    until the config, the data, the model and the resume state have all been checked:
    a run that fails before it starts leaves ``run_dir`` exactly as it was.
    """
    run_dir = Path(run_dir)
    check_run_folder(run_dir, resume=resume, overwrite=overwrite)
    check_model_names(config.model)  # a typo in a name fails before anything is built
    set_threads(config.train.threads)
    device, joined = distributed.setup(select_device(config.train.device))
    try:
        trainer, train_set, val_set = start_run(config, run_dir, device, resume=resume, overwrite=overwrite)
        try:
            with StopSignals() as signals:
                trainer.train(train_set, val_set, signals)
        finally:
            trainer.records.close()
            if distributed.is_main() and any(trainer.bad.failures.values()):
                trainer.bad.write(run_dir / "bad_videos.csv")
    finally:
        distributed.teardown(joined)
    return run_dir


RUN_CHECKPOINTS = ("last.pt", "best.pt", "metrics.csv")  # a folder holding one of these holds a run
RUN_FILES = (*RUN_CHECKPOINTS, "curves.png", "bad_videos.csv", "vocab.txt", "ranks.json")  # what a run writes


def check_run_folder(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """A run folder is a new run's, or a run to resume; a finished or stopped run is never replaced unasked."""
    if resume and overwrite:
        raise UsageError(f"--resume continues the run in {run_dir}, --overwrite starts it over: give one of them")
    hint = (f"add --resume {run_dir} to continue that run, --overwrite to start it over (its checkpoints are "
            "replaced), or choose another --out")
    check_output_folder(run_dir, () if resume else RUN_CHECKPOINTS, flag="--out", overwrite=overwrite, hint=hint)


def start_run(config: Config, run_dir: Path, device: torch.device, *, resume: bool,
              overwrite: bool = False) -> tuple[Trainer, ClipDataset, ClipDataset]:
    """The datasets and a ``Trainer`` (restored from ``last.pt`` with ``resume``), then the run folder's files."""
    main = distributed.is_main()
    manifest = resolve_manifest(config.data)
    selection = select_split(config, manifest)
    config = with_split(config, selection)  # config.yaml records the split validated on
    saved = load_resume_checkpoint(run_dir, config) if resume else None
    seed_everything(config.train.seed)
    if saved is not None and list(saved["classes"]) != manifest.classes:
        raise InputError(f"cannot resume {run_dir}: its classes {saved['classes'][:5]}... differ from the "
                         f"manifest's {manifest.classes[:5]}...")
    train_set, val_set = build_datasets(config, manifest)
    vocab = caption_vocabulary(config, manifest)
    shard = math.ceil(len(train_set) / distributed.world_size())  # padded: every rank as many clips
    steps = math.ceil(shard / config.train.batch_size)
    trainer = Trainer(config, manifest, run_dir, device=device, steps_per_epoch=steps, vocab=vocab,
                      selection=selection)
    if saved is not None:
        trainer.restore(saved, run_dir / "last.pt")
    if main:
        write_run_files(run_dir, config, manifest, vocab, overwrite=overwrite)
        print(run_summary(trainer, train_set, resumed=saved is not None))
        if trainer.selection.warning:
            print(f"WARNING: {trainer.selection.warning}", file=sys.stderr)
    return trainer, train_set, val_set


def write_run_files(run_dir: Path, config: Config, manifest: Manifest, vocab: Vocabulary | None, *,
                    overwrite: bool) -> None:
    """The run folder and what describes the run: ``config.yaml``, ``classes.txt``, the manifest it used, ``vocab.txt``.

    With ``overwrite`` the files of the run that was there are removed first.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    for partial in remove_partial_outputs(run_dir):
        print(f"removed {partial}: a checkpoint write that was killed before it finished")
    if overwrite:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    save_config(config, run_dir / "config.yaml")
    write_text(run_dir / "classes.txt", "".join(f"{c}\n" for c in manifest.classes))
    if not config.data.manifest:  # built from a dataset root: record exactly which videos and splits it used
        write_manifest(manifest, run_dir)
    if vocab is not None:
        write_text(run_dir / "vocab.txt", "".join(f"{w}\n" for w in vocab.words))


def run_summary(trainer: Trainer, train_set: ClipDataset, *, resumed: bool) -> str:
    """The lines a run starts with: model, device, threads, data, what best.pt is chosen on, where it picks up."""
    config, p, vocab = trainer.config, trainer.progress, trainer.vocab
    where = f", resuming at epoch {p.epoch + 1} batch {p.batch + 1} (step {p.step})" if resumed else ""
    weights, asked = trainer.class_weights, config.train.class_weights
    lines = [f"training {config.model.backbone}+{config.model.head} ({config.model.task}) on {trainer.device} "
             f"x{distributed.world_size()} (torch threads {torch.get_num_threads()}, "
             f"workers {config.data.num_workers}): "
             f"{len(train_set.videos)} train videos, {len(trainer.classes)} classes"
             + (f", {len(vocab)} words" if vocab else "") + f" -> {trainer.run_dir}{where}",
             f"best.pt is chosen on: {trainer.selection.describe()}"]
    if weights is not None:
        lines.append(f"class weights ({asked if isinstance(asked, str) else 'train.class_weights'}): "
                     + ", ".join(f"{c} {w:.3g}" for c, w in zip(trainer.classes[:12], weights.tolist()))
                     + (", ..." if len(trainer.classes) > 12 else ""))
    if config.data.sampler == "balanced":
        lines.append("sampler: balanced (each class drawn as often; an epoch is as many clips, with replacement)")
    return "\n".join(lines)


def load_resume_checkpoint(run_dir: Path, config: Config) -> dict:
    """``run_dir/last.pt``, checked to hold resume state written with a compatible config."""
    path = run_dir / "last.pt"
    if not path.is_file():
        raise UsageError(f"nothing to resume in {run_dir}: it has no last.pt; start the run without --resume")
    payload = load_checkpoint(path)
    if "progress" not in payload or "rng" not in payload:
        raise InputError(f"{path} holds no resume state (written by an older videoseq); start a new run")
    check_resumable(payload["config"], config.to_dict(), str(path))
    return payload


def loader_options(config: Config) -> LoaderOptions:
    """How the run's loaders read: the config's batch size and workers, with this rank's shard under torchrun."""
    d = config.data
    return LoaderOptions(batch_size=config.train.batch_size, num_workers=d.num_workers, timeout=d.timeout,
                         seed=config.train.seed, shard=(distributed.rank(), distributed.world_size()),
                         persistent_workers=d.persistent_workers, prefetch_factor=d.prefetch_factor,
                         sampler=d.sampler)


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
