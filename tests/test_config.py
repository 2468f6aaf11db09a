"""Configs: every shipped one describes a model that runs on its clips; typos and bad values name their key."""

import pytest
import torch

from videoseq.config import ConfigError, config_from_dict, load_config, save_config
from videoseq.models.heads import HEADS
from videoseq.resources import CONFIGS as CONFIG_FOLDER

CONFIGS = sorted(CONFIG_FOLDER.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_describes_a_model_that_runs_on_its_clips(path, tmp_path):
    from videoseq.models.build import build_model_from_config

    config = load_config(path)
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config  # what a run folder records gives the same run
    swap = config.data.flip_swap
    assert all(swap.get(b) == a for a, b in swap.items()), "a flip swaps a pair of labels both ways"
    vocab_size = 20 if config.model.captions else None  # caption configs: a vocabulary from their data
    torch.manual_seed(0)
    model = build_model_from_config(config, num_classes=9, pretrained=False, vocab_size=vocab_size).eval()
    assert isinstance(model.head, HEADS[config.model.head]) and model.backbone.spatial == model.head.spatial
    if config.model.stage:
        assert model.backbone.stage == config.model.stage
    clips = torch.randn(2, config.data.frames, config.data.input_channels(), 64, 64)  # the clip length, small frames
    with torch.no_grad():
        if config.model.task != "caption":
            logits = model(clips)
            assert logits.shape == (2, 9) and torch.isfinite(logits).all()
        if config.model.captions:
            words = model.generate(clips, beam=1, max_len=config.caption.max_words + 1)
            assert len(words) == 2 and all(len(w) <= config.caption.max_words + 1 for w in words)


def test_there_are_demo_gesture_own_footage_and_ucf_configs():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "gestures.yaml", "own_footage.yaml", "ucf101_resnet50_convlstm.yaml",
            "ucf101_resnet18_gru.yaml"} <= names


def test_the_ucf101_configs_keep_validating_on_test_and_the_others_choose_automatically():
    for path in CONFIGS:
        expected = "test" if path.name.startswith(("ucf101", "demo")) else "auto"
        expected = "val" if path.name.startswith("motion") else expected  # their clips come with a val split
        assert load_config(path).data.val_split == expected, path.name
    own = load_config(CONFIG_FOLDER / "own_footage.yaml")
    assert (own.data.format, own.data.flip_swap, own.train.class_weights) == ("folder", {}, "balanced")
    assert own.train.early_stop == {"patience": 6, "min_delta": 0.0} and own.train.threads == "auto"


@pytest.mark.parametrize("override, value", [
    ("data.val_split=val", "val"), ("data.val_split=null", None), ("data.sampler=balanced", "balanced"),
    ("train.threads=2", 2), ("train.class_weights=balanced", "balanced"),
    ("train.class_weights={Rare: 3.5}", {"Rare": 3.5}), ("train.early_stop={patience: 3}", {"patience": 3}),
    ("train.tensorboard=true", True)])
def test_the_selection_imbalance_thread_and_logging_keys_take_their_values(override, value):
    section, key = override.split("=")[0].split(".")
    assert getattr(getattr(load_config(None, [override]), section), key) == value


@pytest.mark.parametrize("override, message", [
    ("data.val_split=''", "data.val_split"), ("data.val_split=3", "data.val_split"),
    ("data.sampler=weighted", "data.sampler"), ("train.threads=0", "train.threads"),
    ("train.threads=many", "train.threads"), ("train.class_weights=inverse", "train.class_weights"),
    ("train.class_weights={Rare: -1}", "train.class_weights"), ("train.class_weights={}", "train.class_weights"),
    ("train.early_stop=5", "train.early_stop"), ("train.early_stop={patience: 0}", "train.early_stop.patience"),
    ("train.early_stop={patience: 2, delta: 0.1}", "train.early_stop"),
    ("train.early_stop={patience: 2, min_delta: -0.1}", "train.early_stop.min_delta")])
def test_bad_selection_imbalance_thread_and_logging_values_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_key_names_the_key_and_the_valid_ones(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  frams: 8\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "data.frams" in str(err.value) and "frames" in str(err.value)


def test_unknown_section_is_rejected():
    with pytest.raises(ConfigError, match="unknown config key optim"):
        config_from_dict({"optim": {}})


def test_overrides_are_parsed_as_yaml():
    config = load_config(None, ["train.epochs=3", "data.flip=false", "model.head_args={hidden: 32}"])
    assert config.train.epochs == 3 and config.data.flip is False and config.model.head_args == {"hidden": 32}


@pytest.mark.parametrize(
    "override, key",
    [("data.sampling=random", "data.sampling"), ("data.frames=0", "data.frames"),
     ("train.optimizer=adam", "train.optimizer"), ("data.crop_scale=[0.9, 0.1]", "data.crop_scale"),
     ("data.short_video=pad", "data.short_video"), ("data.fps=0", "data.fps"), ("data.fps=fast", "data.fps")],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_override_without_equals_is_explained():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.epochs"])


def test_missing_and_invalid_yaml_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(bad)


def test_round_trip_through_plain_dict():
    config = load_config(None, ["data.crop_scale=[0.6, 1.0]"])
    assert config_from_dict(config.to_dict()) == config


def test_data_fps_defaults_to_unknown_and_accepts_a_rate():
    assert load_config(None).data.fps is None
    assert load_config(None, ["data.fps=12"]).data.fps == 12
