"""Dataclass configs: load YAML, apply ``--set key=value`` overrides, validate.

A typo in a key is an error naming the key and the valid ones, never a silent
default. The resolved config is plain data (``to_dict``) so it can be written into
the run folder and stored inside checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from videoseq.prepare import FORMATS
from videoseq.prepare.common import UCF_GROUP_PATTERN
from videoseq.sampling import SAMPLING_METHODS, SHORT_POLICIES

AMP_CHOICES = (True, False, "bf16", "fp16")
VAL_SPLIT_AUTO = "auto"  # data.val_split: the manifest's val split when it has one (engine.selection)
SAMPLERS = ("random", "balanced")
CLASS_WEIGHTS = ("none", "balanced")
EARLY_STOP_KEYS = ("patience", "min_delta")
DATA_FORMATS = ("manifest", *FORMATS)  # a manifest CSV, or a dataset root read by one of the formats
TASKS = ("classify", "caption", "both")


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message says which and what to do."""


def _check_choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")


def _check_count(key: str, value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be {what} (an integer >= 1), got {value!r}")


def _check_positive(key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key}: must be a positive number, got {value!r}")


@dataclass
class DataConfig:
    """Where the videos are and how clips are cut from them."""

    manifest: str | None = None  # CSV path,label,split[,group,caption]; classes.txt beside it
    root: str | None = None  # or a dataset root, read with `format`
    format: str = "manifest"  # manifest, or a dataset format of prepare.FORMATS: ucf101, hmdb51, kinetics, ...
    splits_dir: str | None = None  # annotation files: ucf101 classInd.txt folder, hmdb51 split files,
    # kinetics CSV or folder of CSVs, jester label CSVs (default: a usual place near ROOT)
    fold: int = 1  # ucf101 / hmdb51 split number
    group_pattern: str = UCF_GROUP_PATTERN  # folder: regex whose first group names the source video (UCF's _gNN_)
    val_fraction: float = 0.15  # folder format only
    test_fraction: float = 0.15  # folder format only
    train_split: str = "train"
    val_split: str | None = VAL_SPLIT_AUTO  # what best.pt is chosen on: auto (val when the manifest has it, else
    # test, said loudly), a split name, or null (training accuracy)
    test_split: str = "test"
    frames: int = 8  # frames per clip
    size: int = 112  # square crop fed to the backbone
    sampling: str = "segment"  # segment (TSN) | uniform | dense
    stride: int = 2  # dense sampling: frame step
    fps: float | None = None  # frame rate of the training videos; streaming keeps one frame every stride/fps s
    short_video: str = "loop"  # loop | repeat_last: videos shorter than the clip
    test_views: int = 1  # temporal clips per video at validation / test
    crop_scale: tuple[float, float] = (0.5, 1.0)
    color_jitter: float = 0.2
    flip: bool = True
    flip_swap: dict[str, str] = field(default_factory=dict)  # label map under horizontal flip
    num_workers: int = 2
    sampler: str = "random"  # random | balanced: training clips drawn so that every class comes as often
    timeout: float = 120.0  # seconds a DataLoader worker may take for one batch
    on_error: str = "skip"  # skip | raise: videos that fail to decode
    max_bad_fraction: float = 0.1  # skip at most this fraction of a split, then stop
    features: str | None = None  # a feature cache (`videoseq features`): train the head only on cached features
    frame_cache: str | None = None  # a frame cache (`videoseq features --frames`): clips read from stored
    # resized uint8 frames instead of decoded; same samplers and transforms
    persistent_workers: bool = False  # keep DataLoader workers alive across epochs
    prefetch_factor: int | None = None  # batches each worker loads ahead (PyTorch's default: 2)

    def __post_init__(self) -> None:
        _check_choice("data.format", self.format, DATA_FORMATS)
        _check_choice("data.sampling", self.sampling, SAMPLING_METHODS)
        _check_choice("data.short_video", self.short_video, SHORT_POLICIES)
        _check_choice("data.on_error", self.on_error, ("skip", "raise"))
        _check_choice("data.sampler", self.sampler, SAMPLERS)
        if self.val_split is not None and (not isinstance(self.val_split, str) or not self.val_split):
            raise ConfigError(f"data.val_split: {self.val_split!r} is not a split name; use auto, a split of the "
                              "manifest (val, test, ...) or null (choose best.pt on training accuracy)")
        for key in ("frames", "size", "stride", "test_views", "fold"):
            _check_positive(f"data.{key}", getattr(self, key))
        self.crop_scale = tuple(float(s) for s in self.crop_scale)
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"data.crop_scale: need [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")
        if self.fps is not None:
            _check_positive("data.fps", self.fps)
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"data.max_bad_fraction: must be in [0, 1], got {self.max_bad_fraction}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers: must be >= 0, got {self.num_workers}")
        if not isinstance(self.flip_swap, dict):
            raise ConfigError("data.flip_swap: must be a mapping of label -> label under a horizontal flip")
        if self.features is not None and not isinstance(self.features, str):
            raise ConfigError(f"data.features: must be the path of a feature cache folder, got {self.features!r}")
        if self.frame_cache is not None and not isinstance(self.frame_cache, str):
            raise ConfigError(f"data.frame_cache: must be the path of a frame cache folder (`videoseq features "
                              f"--frames`), got {self.frame_cache!r}")
        if self.features and self.frame_cache:
            raise ConfigError("data.features and data.frame_cache: set one; a feature cache already skips decoding "
                              "and the backbone, a frame cache skips decoding only")
        if self.prefetch_factor is not None:
            _check_positive("data.prefetch_factor", self.prefetch_factor)


@dataclass
class ModelConfig:
    """Per-frame backbone + temporal head."""

    backbone: str = "resnet18"
    pretrained: bool | str = False  # true: torchvision ImageNet weights; a path: a local state_dict
    stage: str | None = None  # which backbone stage feeds the head (None: the last)
    head: str = "gru"  # mean | gru | lstm | convlstm
    head_args: dict[str, Any] = field(default_factory=dict)
    freeze_backbone: bool = False
    freeze_bn: bool = False
    task: str = "classify"  # classify | caption | both (class head and caption decoder on one encoder)
    decoder: dict[str, Any] = field(default_factory=dict)  # caption decoder: cell (gru|lstm), embed, hidden,
    # attention, dropout, class_posterior (task both: the decoder reads the class head's posterior), spatial
    # (attend over every position of every frame's feature map, not over whole frames)

    def __post_init__(self) -> None:
        if not isinstance(self.head_args, dict):
            raise ConfigError("model.head_args: must be a mapping, e.g. {hidden: 256}")
        _check_choice("model.task", self.task, TASKS)
        if not isinstance(self.decoder, dict):
            raise ConfigError("model.decoder: must be a mapping, e.g. {cell: gru, hidden: 256}")
        if self.decoder.get("class_posterior") and self.task != "both":
            raise ConfigError(f"model.decoder.class_posterior: needs model.task=both (the class head whose posterior "
                              f"the decoder reads), got model.task={self.task}")

    @property
    def captions(self) -> bool:
        """True when the model writes captions (task caption or both)."""
        return self.task in ("caption", "both")


@dataclass
class TrainConfig:
    """Optimisation and the run."""

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "adamw"  # adamw | sgd
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | constant
    label_smoothing: float = 0.0
    clip_grad: float | None = 1.0
    amp: bool | str = True  # mixed precision on CUDA: true (bf16 where supported, else fp16) | bf16 | fp16 | false
    channels_last: bool = False  # NHWC memory layout for the CNN (faster convolutions on tensor cores)
    compile: bool = False  # torch.compile the model (first steps are slow while it compiles)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (CUDA only)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    eval_every: int = 1
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off; e.g. 0.999)
    on_nonfinite: str = "stop"  # stop | skip: a batch whose loss is NaN or infinite
    stop_after_steps: int | None = None  # on reaching this step (batches so far), save a resumable last.pt, stop
    threads: int | str = "auto"  # CPU threads of torch and OpenCV: auto (cores left by the workers) | N
    class_weights: str | dict[str, float] = "none"  # none | balanced (n / (k * n_c)) | {Class: weight}
    early_stop: dict[str, float] | None = None  # {patience: N, min_delta: x}: stop after N validations in a
    # row that did not beat the best validation score by more than min_delta
    tensorboard: bool = False  # also write the epoch scalars as TensorBoard events under RUN_DIR/tensorboard

    def __post_init__(self) -> None:
        _check_choice("train.optimizer", self.optimizer, ("adamw", "sgd"))
        _check_choice("train.schedule", self.schedule, ("cosine", "constant"))
        _check_choice("train.on_nonfinite", self.on_nonfinite, ("stop", "skip"))
        if not isinstance(self.ema, (int, float)) or isinstance(self.ema, bool) or not 0 <= self.ema < 1:
            raise ConfigError(f"train.ema: must be a decay in [0, 1) (0 turns EMA off, e.g. 0.999), got {self.ema!r}")
        if self.stop_after_steps is not None:
            _check_positive("train.stop_after_steps", self.stop_after_steps)
        for key in ("epochs", "batch_size", "lr", "eval_every"):
            _check_positive(f"train.{key}", getattr(self, key))
        if self.warmup_epochs < 0:
            raise ConfigError(f"train.warmup_epochs: must be >= 0, got {self.warmup_epochs}")
        _check_choice("train.amp", self.amp, AMP_CHOICES)
        if self.threads != "auto":
            _check_count("train.threads", self.threads, "auto or a number of threads")
        self._check_class_weights()
        self._check_early_stop()

    def _check_class_weights(self) -> None:
        weights = self.class_weights
        if isinstance(weights, dict):
            bad = {k: v for k, v in weights.items()
                   if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
            if bad or not weights:
                raise ConfigError(f"train.class_weights: a mapping needs a weight >= 0 per class, e.g. "
                                  f"{{Rare: 4.0}} (others keep 1), got {bad or weights}")
        elif weights not in CLASS_WEIGHTS:
            raise ConfigError(f"train.class_weights: {weights!r} is not one of {list(CLASS_WEIGHTS)} "
                              "or a mapping {Class: weight}")

    def _check_early_stop(self) -> None:
        stop = self.early_stop
        if stop is None:
            return
        if not isinstance(stop, dict) or "patience" not in stop or set(stop) - set(EARLY_STOP_KEYS):
            raise ConfigError(f"train.early_stop: expected {{patience: N[, min_delta: x]}}, got {stop!r}")
        _check_count("train.early_stop.patience", stop["patience"], "a number of validations")
        delta = stop.get("min_delta", 0.0)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta < 0:
            raise ConfigError(f"train.early_stop.min_delta: must be a number >= 0, got {delta!r}")


@dataclass
class CaptionConfig:
    """Vocabulary, caption training and decoding (used when model.task is caption or both)."""

    min_freq: int = 1  # words seen fewer times in the training captions become <unk>
    max_words: int = 20  # longest caption trained on and generated (words, without <bos>/<eos>)
    label_smoothing: float = 0.1
    scheduled_sampling: float = 0.0  # final probability of feeding the model its own word (ramped over epochs)
    loss_weight: float = 1.0  # task both: loss = class loss + loss_weight * caption loss
    all_references: bool = False  # teach every reference of a clip each epoch (false: one drawn at random)
    beam: int = 3  # beam size at eval / predict (1: greedy); validation during training is greedy
    length_penalty: float = 0.0  # GNMT alpha: 0 ranks by summed log-probability, > 0 favours longer captions

    def __post_init__(self) -> None:
        for key in ("min_freq", "max_words", "beam"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"caption.{key}: must be an integer >= 1, got {value!r}")
        for key in ("label_smoothing", "scheduled_sampling"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"caption.{key}: must be in [0, 1), got {getattr(self, key)!r}")
        _check_positive("caption.loss_weight", self.loss_weight)
        if self.length_penalty < 0:
            raise ConfigError(f"caption.length_penalty: must be >= 0, got {self.length_penalty}")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples become lists so the dict is YAML- and weights_only-checkpoint-safe."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]}; valid keys here: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        factory = fields[name].default_factory
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            kwargs[name] = _build(factory, value or {}, f"{prefix}.{name}" if prefix else name)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build and validate a Config from nested plain data (YAML or a checkpoint)."""
    return _build(Config, values or {}, "")


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings; values are parsed as YAML (``8``, ``true``, ``[a, b]``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=5")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {key} is not a section")
        node[keys[-1]] = yaml.safe_load(raw)
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; see configs/ for examples")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    values = apply_overrides(values, overrides or [])
    try:
        return config_from_dict(values)
    except TypeError as err:  # wrong value type reaching a dataclass
        raise ConfigError(f"{path or 'config'}: {err}") from err


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
