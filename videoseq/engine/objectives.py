"""The objectives: what a training batch is scored on, for each ``model.task``.

``ClassifyObjective`` is cross-entropy on the class logits; ``CaptionObjective`` is
word cross-entropy under teacher forcing (plus the class loss with task ``both``).
``build_objective`` picks one for a config and a manifest. With ``train.class_weights``
the class cross-entropy is weighted (``class_weights``): ``balanced`` gives class ``c``
the weight ``n / (k * n_c)`` (``n`` training videos, ``k`` classes present, ``n_c`` videos
of class ``c``; scikit-learn's ``compute_class_weight("balanced")``), a mapping gives
the classes it names their weight and every other class 1. PyTorch's weighted mean
divides by the summed weights of the batch's labels, so a batch of one class has the
same loss whatever its weight: the weights move the balance between classes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from videoseq.config import Config
from videoseq.errors import InputError, UsageError
from videoseq.manifest import Manifest
from videoseq.text import PAD_ID, Vocabulary, pad_sequences


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



def caption_vocabulary(config: Config, manifest: Manifest) -> Vocabulary | None:
    """The vocabulary of the training captions (None for a classify-only model)."""
    if not config.model.captions:
        return None
    train = [c for refs in manifest.captions(config.data.train_split) for c in refs]
    if not train:
        raise InputError(f"model.task={config.model.task} needs captions: the manifest has none in split "
                         f"{config.data.train_split!r} (fill its caption column; several rows per video are fine)")
    return Vocabulary.build(train, min_freq=config.caption.min_freq)


def class_weights(config: Config, manifest: Manifest) -> torch.Tensor | None:
    """The per-class loss weights ``train.class_weights`` asks for, ``(num_classes,)``; None for ``none``."""
    spec, classes = config.train.class_weights, manifest.classes
    if spec == "none":
        return None
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(classes))
        if unknown:
            raise UsageError(f"train.class_weights names {unknown}, which are not classes of this dataset; "
                             f"its classes are {classes[:20]}{' ...' if len(classes) > 20 else ''}")
        return torch.tensor([float(spec.get(name, 1.0)) for name in classes], dtype=torch.float32)
    labels = np.array([label for _, label in manifest.videos(config.data.train_split)], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    present = counts > 0
    weights = np.ones(len(classes))
    weights[present] = len(labels) / (present.sum() * counts[present])  # n / (k * n_c)
    return torch.tensor(weights, dtype=torch.float32)


def build_objective(config: Config, manifest: Manifest, vocab: Vocabulary | None,
                    weights: torch.Tensor | None = None, device: torch.device | None = None) -> Objective:
    """The training loss of ``model.task``; ``weights`` (``class_weights``) weight its class cross-entropy."""
    cfg, c = config.train, config.caption
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing).to(device or "cpu")
    if vocab is None:
        return ClassifyObjective(criterion)
    refs = manifest.captions(config.data.train_split)
    missing = sum(not r for r in refs)
    if missing:
        raise InputError(f"{missing} of {len(refs)} {config.data.train_split} videos have no caption; "
                         "give every training video at least one (or drop it from the split)")
    encoded = [[vocab.encode(text, c.max_words) for text in texts] for texts in refs]
    return CaptionObjective(encoded, label_smoothing=c.label_smoothing, scheduled_sampling=c.scheduled_sampling,
                            loss_weight=c.loss_weight, seed=cfg.seed, all_references=c.all_references,
                            class_criterion=criterion if config.model.task == "both" else None)
