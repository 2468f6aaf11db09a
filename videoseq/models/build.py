"""The model a config describes: ``build_model_from_config``, and ``check_model_names`` to fail early."""

from __future__ import annotations

from videoseq.config import Config, ConfigError, ModelConfig
from videoseq.models.backbones import resolve_stage
from videoseq.models.captioner import build_captioner, check_decoder_args
from videoseq.models.classifier import VideoClassifier, build_model
from videoseq.models.heads import check_head_args
from videoseq.models.motion import adapt_input, insert_temporal_shift
from videoseq.text import BOS_ID, EOS_ID, PAD_ID


def build_model_from_config(config: Config, num_classes: int, *, pretrained: bool | str | None = None,
                            vocab_size: int | None = None) -> VideoClassifier:
    """The model a config describes; ``pretrained`` overrides ``model.pretrained``.

    With ``model.task`` caption or both, a :class:`VideoCaptioner` over ``vocab_size`` words.
    """
    m = config.model
    weights = m.pretrained if pretrained is None else pretrained
    classifier = build_model(
        backbone=m.backbone,
        head=m.head,
        num_classes=num_classes,
        pretrained=weights,
        stage=m.stage,
        freeze_backbone=m.freeze_backbone,
        freeze_bn=m.freeze_bn,
        head_args=m.head_args,
    )
    add_motion(classifier, config, pretrained=bool(weights))
    if m.task == "classify":
        return classifier
    if not vocab_size:
        raise ValueError(f"model.task={m.task} needs a vocabulary size (build the vocabulary from the captions)")
    return build_captioner(classifier, task=m.task, vocab_size=vocab_size, decoder_args=m.decoder,
                           special_ids={"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID})


def add_motion(classifier: VideoClassifier, config: Config, *, pretrained: bool) -> None:
    """The backbone changes ``data.modality`` and ``model.temporal_shift`` ask for (``models/motion.py``)."""
    if "+" in config.data.modality:
        raise ConfigError(f"data.modality={config.data.modality} is the input of a fused model, made from trained "
                          "streams with `videoseq fuse`; train each stream with one modality (rgb, flow or rgbdiff)")
    stats = config.data.input_stats()
    if stats is not None:
        adapt_input(classifier.backbone, config.data.input_channels(), *stats, pretrained=pretrained)
    m = config.model
    if m.temporal_shift:
        try:
            insert_temporal_shift(classifier.backbone, mode=m.temporal_shift, fraction=m.shift_fraction,
                                  placement=m.shift_placement)
        except ValueError as err:  # a backbone or stage without the blocks the shift needs
            raise ConfigError(f"model.temporal_shift={m.temporal_shift}: {err}") from None


def check_model_names(model: ModelConfig) -> None:
    """The backbone, its stage, the head and its arguments exist, before anything is built or written.

    Raises the ``UsageError`` of the registry that does not know a name, listing the valid ones, or the
    ``ConfigError`` of a head or decoder argument of the wrong name, type or range.
    """
    resolve_stage(model.backbone, model.stage)
    check_head_args(model.head, model.head_args)
    if model.captions:
        check_decoder_args({k: v for k, v in model.decoder.items() if k not in ("class_posterior", "spatial")})
