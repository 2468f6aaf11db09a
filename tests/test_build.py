"""The model a config describes, and the names checked before anything is built."""

import pytest

from videoseq.config import load_config
from videoseq.models import VideoCaptioner, VideoClassifier
from videoseq.models.build import build_model_from_config, check_model_names
from videoseq.models.heads import HEADS


@pytest.mark.parametrize("override, valid", [
    ("model.backbone=resnet19", "close matches"), ("model.stage=layer9", "valid stages"),
    ("model.head=transformer", "valid heads"), ("model.head_args={hiden: 8}", "valid keys"),
])
def test_a_wrong_name_is_named_with_the_valid_ones(override, valid):
    config = load_config(None, [override])
    with pytest.raises(ValueError, match=valid) as err:
        check_model_names(config.model)
    assert override.split("=")[1].strip("{}").split(":")[0] in str(err.value)


def test_the_default_names_pass():
    check_model_names(load_config(None).model)


def test_the_config_decides_the_head_the_classes_and_the_task():
    config = load_config(None, ["model.head=lstm", "model.head_args={hidden: 8}", "model.stage=layer2"])
    model = build_model_from_config(config, 7, pretrained=False)
    assert isinstance(model, VideoClassifier) and isinstance(model.head, HEADS["lstm"])
    assert model.num_classes == 7 and model.head.hidden == 8 and model.backbone.stage == "layer2"
    caption = load_config(None, ["model.task=caption"])
    assert isinstance(build_model_from_config(caption, 3, vocab_size=11), VideoCaptioner)
    with pytest.raises(ValueError, match="vocabulary size"):
        build_model_from_config(caption, 3)
