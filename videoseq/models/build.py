"""The model a config describes: ``build_model_from_config``, and ``check_model_names`` to fail early."""

from __future__ import annotations

from videoseq.config import Config, ModelConfig
from videoseq.models.backbones import resolve_stage
from videoseq.models.captioner import build_captioner, check_decoder_args
from videoseq.models.classifier import VideoClassifier, build_model
from videoseq.models.heads import check_head_args
from videoseq.text import BOS_ID, EOS_ID, PAD_ID


def build_model_from_config(config: Config, num_classes: int, *, pretrained: bool | str | None = None,
                            vocab_size: int | None = None) -> VideoClassifier:
    """The model a config describes; ``pretrained`` overrides ``model.pretrained``.

    With ``model.task`` caption or both, a :class:`VideoCaptioner` over ``vocab_size`` words.
    """
    m = config.model
    classifier = build_model(
        backbone=m.backbone,
        head=m.head,
        num_classes=num_classes,
        pretrained=m.pretrained if pretrained is None else pretrained,
        stage=m.stage,
        freeze_backbone=m.freeze_backbone,
        freeze_bn=m.freeze_bn,
        head_args=m.head_args,
    )
    if m.task == "classify":
        return classifier
    if not vocab_size:
        raise ValueError(f"model.task={m.task} needs a vocabulary size (build the vocabulary from the captions)")
    return build_captioner(classifier, task=m.task, vocab_size=vocab_size, decoder_args=m.decoder,
                           special_ids={"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID})


def check_model_names(model: ModelConfig) -> None:
    """The backbone, its stage, the head and its arguments exist, before anything is built or written.

    Raises the ``UsageError`` of the registry that does not know a name, listing the valid ones, or the
    ``ConfigError`` of a head or decoder argument of the wrong name, type or range.
    """
    resolve_stage(model.backbone, model.stage)
    check_head_args(model.head, model.head_args)
    if model.captions:
        check_decoder_args({k: v for k, v in model.decoder.items() if k not in ("class_posterior", "spatial")})
