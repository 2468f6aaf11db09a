"""Dataclass configs: load YAML, apply ``--set key=value`` overrides, validate.

A typo in a key is an error naming the key and the valid ones, never a silent
default. Every value is checked against its field's annotation when the config is
built (``validation.check_value``: types, tuple lengths, mappings, choices, ranges),
so a bad value fails at load, naming its key, before anything is written. YAML with
a key twice is refused. The resolved config is plain data (``to_dict``) so it can be
written into the run folder and stored inside checkpoints.

The upper bounds (``MAX_SIZE``, ``MAX_FRAMES``, ``MAX_VIEWS``) keep a crafted
checkpoint from asking for clips no machine holds; see docs/reliability.md.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from videoseq.flow import FLOW_METHODS, MOTION_MEAN, MOTION_STD, modality_channels, modality_parts
from videoseq.outputs import write_text
from videoseq.prepare import FORMATS
from videoseq.prepare.common import UCF_GROUP_PATTERN
from videoseq.sampling import SAMPLING_METHODS, SHORT_POLICIES
from videoseq.validation import ConfigError, OneOf, Range, check_value

AMP_CHOICES = (True, False, "bf16", "fp16")
VAL_SPLIT_AUTO = "auto"  # data.val_split: the manifest's val split when it has one (engine.selection)
SAMPLERS = ("random", "balanced")
CLASS_WEIGHTS = ("none", "balanced")
EARLY_STOP_KEYS = ("patience", "min_delta")
DATA_FORMATS = ("manifest", *FORMATS)  # a manifest CSV, or a dataset root read by one of the formats
TASKS = ("classify", "caption", "both")
TEMPORAL_SHIFTS = ("bidirectional", "online")  # or None: no shift
SHIFT_PLACEMENTS = ("residual", "inplace")
MAX_SIZE = 1024  # data.size: the square crop fed to the backbone
MAX_FRAMES = 512  # data.frames and data.stride
MAX_VIEWS = 64  # data.test_views
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

__all__ = ["ConfigError", "Config", "DataConfig", "ModelConfig", "TrainConfig", "CaptionConfig", "load_config",
           "config_from_dict", "apply_overrides", "save_config", "check_fields"]

Count = Annotated[int, Range(1)]  # a whole number >= 1
Positive = Annotated[float, Range(0, low_open=True)]  # a number > 0
NonNegative = Annotated[float, Range(0)]
Share = Annotated[float, Range(0, 1)]  # in [0, 1]
Below1 = Annotated[float, Range(0, 1, high_open=True)]  # in [0, 1)


def check_fields(config: Any, section: str) -> None:
    """Check every field of a config dataclass against its annotation (``validation.check_value``)."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        setattr(config, f.name, check_value(f"{section}.{f.name}", getattr(config, f.name), hints[f.name]))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def check_group_pattern(pattern: str, key: str = "data.group_pattern (--group-pattern)") -> None:
    """A regular expression with a group, the part of a file name that names its source video."""
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        raise ConfigError(f"{key} {pattern!r} is not a regular expression ({err}); "
                          f"e.g. {UCF_GROUP_PATTERN!r}") from None
    if groups < 1:
        raise ConfigError(f"{key} {pattern!r} has no group (...) for the source video's name; "
                          f"e.g. {UCF_GROUP_PATTERN!r}")


def _check_count(key: str, value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be {what} (an integer >= 1), got {value!r}")


@dataclass
class DataConfig:
    """Where the videos are and how clips are cut from them."""

    manifest: str | None = None  # CSV path,label,split[,group,caption]; classes.txt beside it
    root: str | None = None  # or a dataset root, read with `format`
    format: Annotated[str, OneOf(DATA_FORMATS)] = "manifest"  # manifest, or a format of prepare.FORMATS: ucf101, ...
    splits_dir: str | None = None  # annotation files: ucf101 classInd.txt folder, hmdb51 split files,
    # kinetics CSV or folder of CSVs, jester label CSVs (default: a usual place near ROOT)
    fold: Count = 1  # ucf101 / hmdb51 split number
    group_pattern: str = UCF_GROUP_PATTERN  # folder: regex whose first group names the source video (UCF's _gNN_)
    val_fraction: Below1 = 0.15  # folder format only
    test_fraction: Below1 = 0.15  # folder format only
    train_split: str = "train"
    val_split: str | None = VAL_SPLIT_AUTO  # what best.pt is chosen on: auto (val when the manifest has it, else
    # test, said loudly), a split name, or null (training accuracy)
    test_split: str = "test"
    frames: Annotated[int, Range(1, MAX_FRAMES)] = 8  # frames per clip
    size: Annotated[int, Range(1, MAX_SIZE)] = 112  # square crop fed to the backbone
    sampling: Annotated[str, OneOf(SAMPLING_METHODS)] = "segment"  # segment (TSN) | uniform | dense
    stride: Annotated[int, Range(1, MAX_FRAMES)] = 2  # dense sampling: frame step
    fps: Positive | None = None  # frame rate of the training videos; streaming keeps one frame every stride/fps s
    short_video: Annotated[str, OneOf(SHORT_POLICIES)] = "loop"  # loop | repeat_last: videos shorter than the clip
    test_views: Annotated[int, Range(1, MAX_VIEWS)] = 1  # temporal clips per video at validation / test
    crop_scale: tuple[float, float] = (0.5, 1.0)
    color_jitter: NonNegative = 0.2
    flip: bool = True
    flip_swap: dict[str, str] = field(default_factory=dict)  # label map under horizontal flip
    num_workers: Annotated[int, Range(0)] = 2
    sampler: Annotated[str, OneOf(SAMPLERS)] = "random"  # random | balanced: every class drawn as often
    timeout: Positive = 120.0  # seconds a DataLoader worker may take for one batch
    on_error: Annotated[str, OneOf(("skip", "raise"))] = "skip"  # videos that fail to decode
    max_bad_fraction: Share = 0.1  # skip at most this fraction of a split, then stop
    features: str | None = None  # a feature cache (`videoseq features`): train the head only on cached features
    frame_cache: str | None = None  # a frame cache (`videoseq features --frames`): clips read from stored
    # resized uint8 frames instead of decoded; same samplers and transforms
    persistent_workers: bool = False  # keep DataLoader workers alive across epochs
    prefetch_factor: Count | None = None  # batches each worker loads ahead (PyTorch's default: 2)
    modality: str = "rgb"  # rgb | flow | rgbdiff: what the backbone sees at each time step (videoseq/flow.py)
    flow_method: Annotated[str, OneOf(FLOW_METHODS)] = "dis_fast"  # dis_ultrafast | dis_fast | dis_medium |
    # farneback | tvl1 (opencv-contrib)
    flow_bound: Positive = 20.0  # flow clipped to [-bound, bound] px (of the flow_size frames), quantised to uint8
    flow_stack: Annotated[int, Range(1, MAX_FRAMES)] = 1  # L: flow fields (or RGB differences) stacked per time
    # step, each data.stride frames apart
    flow_size: Annotated[int, Range(1, MAX_SIZE)] | None = None  # short side the frames are resized to for flow
    # (None: the eval resize of size)

    def __post_init__(self) -> None:
        check_fields(self, "data")
        check_group_pattern(self.group_pattern)
        if self.val_split is not None and not self.val_split:
            raise ConfigError(f"data.val_split: {self.val_split!r} is not a split name; use auto, a split of the "
                              "manifest (val, test, ...) or null (choose best.pt on training accuracy)")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"data.crop_scale: need [low, high] with 0 < low <= high <= 1, "
                              f"got {list(self.crop_scale)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(f"data.val_fraction + data.test_fraction must leave videos to train on (below 1), got "
                              f"{self.val_fraction} + {self.test_fraction}")
        self._check_motion()
        if self.features and self.frame_cache:
            raise ConfigError("data.features and data.frame_cache: set one; a feature cache already skips decoding "
                              "and the backbone, a frame cache skips decoding only")

    def _check_motion(self) -> None:
        try:
            modality_parts(self.modality)
        except ValueError as err:
            raise ConfigError(f"data.modality: {err}") from None
        if self.modality != "rgb" and self.features:
            raise ConfigError(f"data.features with data.modality={self.modality}: a feature cache stores RGB "
                              "features; train the motion model end to end (drop data.features)")

    def input_channels(self) -> int:
        """Channels of one time step of a clip: 3 for RGB, 2 per flow field, 3 per RGB difference."""
        return modality_channels(self.modality, self.flow_stack)

    def input_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """Per-channel mean and std of the motion images (None for RGB: the backbone's own)."""
        if self.modality == "rgb":
            return None
        channels = self.input_channels()
        return (MOTION_MEAN,) * channels, (MOTION_STD,) * channels


@dataclass
class ModelConfig:
    """Per-frame backbone + temporal head."""

    backbone: str = "resnet18"
    pretrained: bool | str = False  # true: torchvision ImageNet weights; a path: a local state_dict
    stage: str | None = None  # which backbone stage feeds the head (None: the last)
    head: str = "gru"  # mean | gru | lstm | convlstm
    head_args: dict[str, Any] = field(default_factory=dict)  # checked against the head's signature when built
    freeze_backbone: bool = False
    freeze_bn: bool = False
    task: Annotated[str, OneOf(TASKS)] = "classify"  # classify | caption | both (class head and caption decoder)
    decoder: dict[str, Any] = field(default_factory=dict)  # caption decoder: cell (gru|lstm), embed, hidden,
    # attention, dropout, class_posterior (task both: the decoder reads the class head's posterior), spatial
    # (attend over every position of every frame's feature map, not over whole frames)
    temporal_shift: Annotated[str, OneOf(TEMPORAL_SHIFTS)] | None = None  # null | bidirectional (offline) |
    # online (past only, streams with a cache)
    shift_fraction: Annotated[float, Range(0, 0.5, low_open=True)] = 0.125  # channels shifted each way (TSM: 1/8)
    shift_placement: Annotated[str, OneOf(SHIFT_PLACEMENTS)] = "residual"  # residual (the residual branch of each
    # block, TSM) | inplace (the block input)

    def __post_init__(self) -> None:
        check_fields(self, "model")
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

    epochs: Count = 10
    batch_size: Count = 8
    lr: Positive = 1e-3
    optimizer: Annotated[str, OneOf(("adamw", "sgd"))] = "adamw"
    weight_decay: NonNegative = 0.05
    momentum: Below1 = 0.9  # sgd only
    warmup_epochs: NonNegative = 1.0
    schedule: Annotated[str, OneOf(("cosine", "constant"))] = "cosine"
    label_smoothing: Below1 = 0.0
    clip_grad: Positive | None = 1.0
    amp: Annotated[bool | str, OneOf(AMP_CHOICES)] = True  # mixed precision on CUDA: true (bf16 where supported,
    # else fp16) | bf16 | fp16 | false
    channels_last: bool = False  # NHWC memory layout for the CNN (faster convolutions on tensor cores)
    compile: bool = False  # torch.compile the model (first steps are slow while it compiles)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (CUDA only)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    eval_every: Count = 1
    ema: Below1 = 0.0  # decay of an exponential moving average of the weights (0: off; e.g. 0.999)
    on_nonfinite: Annotated[str, OneOf(("stop", "skip"))] = "stop"  # a batch whose loss is NaN or infinite
    stop_after_steps: Count | None = None  # on reaching this step (batches so far), save a resumable last.pt, stop
    threads: int | str = "auto"  # CPU threads of torch and OpenCV: auto (cores / local ranks) | N
    class_weights: str | dict[str, float] = "none"  # none | balanced (n / (k * n_c)) | {Class: weight}
    early_stop: dict[str, float] | None = None  # {patience: N, min_delta: x}: stop after N validations in a
    # row that did not beat the best validation score by more than min_delta
    tensorboard: bool = False  # also write the epoch scalars as TensorBoard events under RUN_DIR/tensorboard

    def __post_init__(self) -> None:
        check_fields(self, "train")
        if not DEVICE.fullmatch(self.device):
            raise ConfigError(f"train.device: {self.device!r} is not auto, cpu, cuda or cuda:N")
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

    min_freq: Count = 1  # words seen fewer times in the training captions become <unk>
    max_words: Annotated[int, Range(1, 1000)] = 20  # longest caption trained on and generated (without <bos>/<eos>)
    label_smoothing: Below1 = 0.1
    scheduled_sampling: Below1 = 0.0  # final probability of feeding the model its own word (ramped over epochs)
    loss_weight: Positive = 1.0  # task both: loss = class loss + loss_weight * caption loss
    all_references: bool = False  # teach every reference of a clip each epoch (false: one drawn at random)
    beam: Annotated[int, Range(1, 100)] = 3  # beam size at eval / predict (1: greedy); validation is greedy
    length_penalty: NonNegative = 0.0  # GNMT alpha: 0 ranks by summed log-probability, > 0 favours longer captions

    def __post_init__(self) -> None:
        check_fields(self, "caption")


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


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a mapping with a key twice (PyYAML itself keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (line {seen[key].start_mark.line + 1} and line "
                    f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text (a file, a ``--set`` value) as plain data; a syntax error or a repeated key names ``where``."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err)
        if problem.startswith("key ") and "appears twice" in problem:
            raise ConfigError(f"{where}: {problem}") from None
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None and "\n" in text.strip() else ""
        raise ConfigError(f"{where} is not valid YAML{at}: {problem}; quote text that holds YAML's special "
                          "characters (: { } [ ] , # & * ! | > ' \" % @ and tabs)") from None


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
        node[keys[-1]] = parse_yaml(raw, f"--set {item!r}: the value")
    return values


def read_config_file(path: Path) -> dict[str, Any]:
    """The plain data of a YAML config file; a missing, unreadable, non-UTF-8 or malformed file names itself."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; see configs/ for examples")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); pass a YAML config") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None
    values = parse_yaml(text, f"config file {path}")
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"config file {path} holds a {type(values).__name__}, not a mapping of sections "
                          "(data:, model:, train:, caption:)")
    return values or {}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate."""
    values = read_config_file(Path(path)) if path is not None else {}
    return config_from_dict(apply_overrides(values, overrides or []))


def save_config(config: Config, path: str | Path) -> None:
    """``config.yaml`` of a run: written whole or not at all (``outputs.write_text``)."""
    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
