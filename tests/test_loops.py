"""The loops: training epochs lower the loss, bad videos are counted and stop the run, evaluation scores videos."""

import numpy as np
import pytest
import torch
from torch import nn

from videoseq.datasets import LoaderOptions, make_loader
from videoseq.engine.loops import BadVideos, Progress, TooManyBadVideos, evaluate, model_input, train_one_epoch
from videoseq.engine.trainer import build_datasets, build_optimization
from videoseq.models.build import build_model_from_config
from videoseq.prepare import resolve_manifest
from videoseq.transforms import normalize_clip

from conftest import tiny_config


def test_training_epochs_on_one_fixed_batch_lower_its_loss(gestures):
    config = tiny_config(gestures, "data.color_jitter=0", "train.warmup_epochs=0", "train.schedule=constant")
    manifest = resolve_manifest(config.data)
    train_set, _ = build_datasets(config, manifest)
    torch.manual_seed(0)
    model = build_model_from_config(config, len(manifest.classes))
    batches = [next(iter(make_loader(train_set, LoaderOptions(batch_size=12), shuffle=True)))]  # one batch, replayed
    optimization = build_optimization(model, config.train, steps_per_epoch=1, device=torch.device("cpu"))
    bad, losses = BadVideos(1.0), []
    for epoch in range(8):
        progress = Progress(epoch=epoch)
        metrics = train_one_epoch(model, Replay(batches, train_set), nn.CrossEntropyLoss(), optimization,
                                  device=torch.device("cpu"), cfg=config.train, bad=bad, progress=progress)
        losses.append(metrics["train_loss"])
        assert (progress.batch, progress.seen) == (1, 12)
    assert losses[-1] < 0.7 * losses[0]
    assert optimization.scheduler.last_epoch == 8  # one scheduler step per optimizer step


class Replay(list):
    """Batches replayed as a loader (``loader.dataset`` names the videos of the batch)."""

    def __init__(self, batches, dataset):
        super().__init__(batches)
        self.dataset = dataset


def test_bad_videos_stop_the_run_past_the_fraction(gestures, tmp_path):
    config = tiny_config(gestures)
    train_set, _ = build_datasets(config, resolve_manifest(config.data))
    bad = BadVideos(max_fraction=0.1)
    bad.add("train", train_set, [(0, "cannot decode")])  # 1 of 24 is fine
    with pytest.raises(TooManyBadVideos, match="data.max_bad_fraction"):
        bad.add("train", train_set, [(1, "x"), (2, "y"), (3, "z")])
    bad.write(tmp_path / "bad.csv")
    assert (tmp_path / "bad.csv").read_text().count("train") == 4


def test_model_input_normalises_uint8_clips_and_passes_features_through(gestures):
    config = tiny_config(gestures)
    model = build_model_from_config(config, 9)
    clips = torch.randint(0, 256, (2, 4, 3, 8, 8), dtype=torch.uint8)
    expected = normalize_clip(clips, model.backbone.mean, model.backbone.std)
    assert torch.equal(model_input(clips, model, torch.device("cpu")), expected)
    features = torch.ones(2, 4, 16, dtype=torch.float16)
    assert model_input(features, model, torch.device("cpu")).dtype == torch.float32


def test_evaluate_sums_clip_scores_per_video(gestures):
    config = tiny_config(gestures, "data.test_views=2")
    _, val_set = build_datasets(config, resolve_manifest(config.data))
    torch.manual_seed(0)
    model = build_model_from_config(config, 9).eval()
    result = evaluate(model, make_loader(val_set, LoaderOptions(batch_size=4), shuffle=False),
                      device=torch.device("cpu"))
    assert result["scores"].shape == (2 * len(val_set.videos), 9)
    first = result["video"] == result["video_ids"][0]
    np.testing.assert_allclose(result["video_scores"][0], result["scores"][first].sum(0), rtol=1e-6)
    assert result["video_metrics"]["top1"] == pytest.approx(
        float(np.mean(result["video_scores"].argmax(1) == result["video_labels"])))
