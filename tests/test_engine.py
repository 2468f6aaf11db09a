import csv
import math

import pytest
import torch

from videoseq.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from videoseq.config import load_config
from videoseq.datasets import LoaderOptions, make_loader
from videoseq.engine.loops import BadVideos, TooManyBadVideos, evaluate
from videoseq.engine.objectives import CaptionObjective
from videoseq.engine.trainer import build_datasets, fit, lr_factor
from videoseq.prepare import resolve_manifest


def tiny_config(gestures, *extra):
    return load_config(None, [
        f"data.root={gestures / 'videos'}", "data.format=ucf101", f"data.splits_dir={gestures / 'splits'}",
        "data.frames=4", "data.size=32", "data.num_workers=0", "model.backbone=resnet18", "model.head=gru",
        "model.head_args={hidden: 32}", "train.batch_size=6", "train.epochs=2", "train.lr=0.003", *extra,
    ])


def test_lr_schedule_warms_up_then_follows_a_cosine():
    f = lambda s: lr_factor(s, warmup_steps=4, total_steps=14, schedule="cosine")
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.0) and lr_factor(50, warmup_steps=0, total_steps=10, schedule="constant") == 1


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(gestures):
    config = tiny_config(gestures, "data.color_jitter=0", "train.warmup_epochs=0", "train.schedule=constant")
    from videoseq.models.build import build_model_from_config

    manifest = resolve_manifest(config.data)
    train_set, _ = build_datasets(config, manifest)
    torch.manual_seed(0)
    model = build_model_from_config(config, len(manifest.classes))
    batch = next(iter(make_loader(train_set, LoaderOptions(batch_size=12, num_workers=0), shuffle=True)))
    from videoseq.transforms import normalize_clip

    clips = normalize_clip(batch["video"], model.backbone.mean, model.backbone.std)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(clips), batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_fit_writes_a_self_describing_run(gestures, tmp_path):
    run = fit(tiny_config(gestures), tmp_path / "run")
    for name in ("config.yaml", "classes.txt", "manifest.csv", "metrics.csv", "curves.png", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["val_video_acc"] for r in rows)
    payload = load_checkpoint(run / "last.pt")
    assert payload["classes"][0] == "MoveLeft" and payload["backbone"] == "resnet18" and payload["head"] == "gru"
    assert payload["epoch"] == 2 and len(payload["mean"]) == 3
    model, config = model_from_checkpoint(payload)
    assert config.data.frames == 4
    # the rebuilt model reproduces the validation scores of the trained one
    _, val_set = build_datasets(config, resolve_manifest(config.data))
    loader = make_loader(val_set, LoaderOptions(batch_size=4), shuffle=False)
    result = evaluate(model, loader, device=torch.device("cpu"))
    assert result["scores"].shape == (len(val_set), 9)
    assert result["video_metrics"]["top1"] == pytest.approx(float(rows[-1]["val_video_acc"]))


def test_best_checkpoint_is_chosen_among_validated_epochs_only(gestures, tmp_path, monkeypatch):
    # epochs 1 and 2 are not validated; their training accuracy must not compete with the
    # validation score of epoch 3, the one validated epoch, even when that score is the lowest possible
    import videoseq.engine.trainer as engine

    real = engine.validate
    monkeypatch.setattr(engine, "validate", lambda *a, **k: {**real(*a, **k), "val_video_acc": 0.0})
    run = fit(tiny_config(gestures, "train.epochs=3", "train.eval_every=3"), tmp_path / "run")
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [bool(r["val_video_acc"]) for r in rows] == [False, False, True]
    assert load_checkpoint(run / "best.pt")["epoch"] == 3


def test_checkpoint_save_is_atomic_and_loading_refuses_pickled_code(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"format": "videoseq-checkpoint-1", "x": torch.ones(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(2))

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('ran')",))

    torch.save({"format": "videoseq-checkpoint-1", "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_mismatched_checkpoint_names_keys_and_shapes(gestures, tmp_path):
    from videoseq.checkpoint import load_weights
    from videoseq.models.build import build_model_from_config

    config = tiny_config(gestures)
    model = build_model_from_config(config, 9)
    other = build_model_from_config(config, 5)
    with pytest.raises(CheckpointError, match=r"shape mismatches \['head\..*\(9.*\(5"):
        load_weights(other, model.state_dict(), "x.pt")


def test_bad_videos_stop_the_run_past_the_fraction(gestures, tmp_path):
    config = tiny_config(gestures)
    train_set, _ = build_datasets(config, resolve_manifest(config.data))
    bad = BadVideos(max_fraction=0.1)
    bad.add("train", train_set, [(0, "cannot decode")])  # 1 of 24 is fine
    with pytest.raises(TooManyBadVideos, match="data.max_bad_fraction"):
        bad.add("train", train_set, [(1, "x"), (2, "y"), (3, "z")])
    bad.write(tmp_path / "bad.csv")
    assert (tmp_path / "bad.csv").read_text().count("train") == 4


def test_unknown_flip_swap_label_is_named(gestures):
    config = tiny_config(gestures, "data.flip_swap={Sideways: MoveLeft}")
    with pytest.raises(ValueError, match="Sideways"):
        build_datasets(config, resolve_manifest(config.data))


def test_amp_setting_is_validated_and_is_a_no_op_on_cpu():
    from videoseq.config import ConfigError
    from videoseq.runtime import amp_dtype

    assert load_config(None, ["train.amp=bf16"]).train.amp == "bf16"
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(None, ["train.amp=fp8"])
    assert all(amp_dtype(torch.device("cpu"), amp) is None for amp in (True, "bf16", "fp16"))


def test_channels_last_training_module_gives_the_same_logits(gestures):
    from videoseq.engine.trainer import training_module
    from videoseq.models.build import build_model_from_config

    config = tiny_config(gestures, "train.channels_last=true")
    torch.manual_seed(0)
    model = build_model_from_config(config, 9).eval()
    clips = torch.randn(2, 4, 3, 32, 32)
    expected = model(clips)
    module = training_module(model, config, torch.device("cpu"))
    assert module.backbone.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(module(clips), expected, atol=1e-5)


def test_caption_objective_teaches_one_drawn_or_every_reference():
    refs = [[[1, 5, 2], [1, 6, 7, 2]], [[1, 8, 2]], [[1, 9, 2], [1, 4, 2], [1, 10, 2]]]
    videos, items = torch.tensor([2, 0]), torch.tensor([0, 1])
    one = CaptionObjective(refs, label_smoothing=0.0, scheduled_sampling=0.0)
    ids, rows = one.targets(videos, items)
    assert rows is None and ids.shape[0] == 2
    assert ids[0, :3].tolist() in refs[2] and ids[1][ids[1] != 0].tolist() in refs[0]
    every = CaptionObjective(refs, label_smoothing=0.0, scheduled_sampling=0.0, all_references=True)
    ids, rows = every.targets(videos, items)
    assert rows.tolist() == [0, 0, 0, 1, 1]
    assert [r[r != 0].tolist() for r in ids] == refs[2] + refs[0]
