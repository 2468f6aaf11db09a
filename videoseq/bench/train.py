"""``videoseq bench train``: the default model against torchvision's ``r3d_18``, and the feature cache.

Training clips/s and accuracy of the default model (per-frame ResNet-18 + GRU)
against torchvision's ``r3d_18`` (random init, same clips), and head-only epochs
from the feature cache against end-to-end epochs with the backbone frozen, on
synthetic gestures.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from videoseq.bench import TRAIN_PARTS
from videoseq.config import load_config
from videoseq.models.build import build_model_from_config
from videoseq.tables import read_csv


class R3D18(nn.Module):
    """torchvision's ``r3d_18`` (random init) taking our clips ``(B, T, C, H, W)``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        from torchvision.models.video import r3d_18

        self.net = r3d_18(weights=None, num_classes=num_classes)
        # Kinetics normalisation of the torchvision video models; read by engine.loops.model_input
        self.backbone = SimpleNamespace(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips.transpose(1, 2))  # (B, C, T, H, W) -> (B, num_classes)


class Batches:
    """Batches decoded once and replayed: model timings without decoding in them."""

    def __init__(self, loader) -> None:
        self.dataset = loader.dataset
        self.batches = list(loader)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def train_model(model: nn.Module, train: Batches, val: Batches, config, epochs: int,
                device: torch.device | None = None) -> tuple[float, float]:
    """Train ``epochs`` on replayed batches (on the CPU unless ``device``); returns (training clips/s,
    validation video accuracy)."""
    from videoseq.engine.loops import BadVideos, Progress, evaluate, train_one_epoch
    from videoseq.engine.trainer import build_optimization

    cfg, device = config.train, device or torch.device("cpu")
    model.to(device)
    optimization = build_optimization(model, cfg, len(train), device)
    criterion, bad = nn.CrossEntropyLoss(), BadVideos(1.0)
    seen, seconds = 0, 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        train_one_epoch(model, train, criterion, optimization, device=device, cfg=cfg, bad=bad,
                        progress=Progress(epoch=epoch))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
        seen += sum(len(b["label"]) for b in train)
    result = evaluate(model, val, device=device)
    return seen / seconds, result["video_metrics"]["top1"]


def bench_train(epochs: int = 4, per_class: int = 6, size: int = 64, frames: int = 8, device: str = "cpu",
                parts: tuple[str, ...] = TRAIN_PARTS) -> dict:
    """``peers``: the default model against r3d_18; ``cache``: head-only epochs from the feature cache
    against frozen end-to-end epochs. Both on the same synthetic gestures."""
    from videoseq.prepare import resolve_manifest
    from videoseq.synth import write_gesture_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_gesture_dataset(tmp / "g", per_class=per_class, seed=0, frames=24, size=size)
        overrides = [f"data.root={root / 'videos'}", "data.format=ucf101", f"data.splits_dir={root / 'splits'}",
                     f"data.frames={frames}", f"data.size={size}", "data.num_workers=0", "train.batch_size=8",
                     f"train.epochs={epochs}", "train.lr=0.002", "train.warmup_epochs=0.5", f"train.device={device}"]
        config = load_config(None, overrides)
        manifest = resolve_manifest(config.data, tmp / "data")
        results = {}
        if "peers" in parts:
            results["peers"] = bench_peers(config, manifest, epochs)
        if "cache" in parts:
            results["cache"] = bench_cache(config, manifest, tmp)
    return results


def bench_peers(config, manifest, epochs: int) -> dict:
    """Training clips/s and accuracy of the default model and of r3d_18 on batches decoded once."""
    from videoseq.datasets import LoaderOptions, make_loader
    from videoseq.engine.trainer import build_datasets
    from videoseq.runtime import seed_everything, select_device

    device = select_device(config.train.device)
    train_set, val_set = build_datasets(config, manifest)
    train = Batches(make_loader(train_set, LoaderOptions(batch_size=8, num_workers=0), shuffle=True))
    val = Batches(make_loader(val_set, LoaderOptions(batch_size=8, num_workers=0), shuffle=False))
    classes, d = len(manifest.classes), config.data
    print(f"synthetic gestures: {len(train_set)} train / {len(val_set)} val clips of {d.frames}x{d.size}x{d.size}, "
          f"{classes} classes, {epochs} epochs each on {device}, batches decoded once (model time only)")
    results = {}
    for name, build in (("default " + f"{config.model.backbone}+{config.model.head}",
                         lambda: build_model_from_config(config, classes)), ("r3d_18", lambda: R3D18(classes))):
        seed_everything(0)
        rate, acc = train_model(build(), train, val, config, epochs, device)
        results[name] = {"clips_per_s": rate, "video_acc": acc}
        print(f"{name:22s} {rate:7.1f} training clips/s, val video accuracy {acc:.3f}")
    (_, a), (_, b) = results.items()
    print(f"default / r3d_18 training clips/s: {a['clips_per_s'] / b['clips_per_s']:.2f} (goal >= 3), "
          f"accuracy {a['video_acc']:.3f} vs {b['video_acc']:.3f} (goal: equal or better)")
    return results


def bench_cache(config, manifest, tmp: Path) -> dict:
    """One head-only epoch from the feature cache against one end-to-end epoch with the backbone frozen."""
    import copy

    from videoseq.config import save_config
    from videoseq.engine.trainer import fit
    from videoseq.features import extract_features
    from videoseq.manifest import write_manifest

    frozen = copy.deepcopy(config)
    frozen.model.freeze_backbone, frozen.train.epochs, frozen.data.test_views = True, 1, 1
    save_config(frozen, tmp / "frozen.yaml")
    write_manifest(manifest, tmp / "m")
    start = time.perf_counter()
    extract_features(tmp / "frozen.yaml", tmp / "m" / "manifest.csv", tmp / "cache")
    extract_s = time.perf_counter() - start
    timings = {}
    for name, features in (("frozen end-to-end", None), ("head-only from cache", str(tmp / "cache"))):
        run_config = copy.deepcopy(frozen)
        run_config.data.features = features
        start = time.perf_counter()
        run = fit(run_config, tmp / name.replace(" ", "_"))
        epoch_s = sum(float(row["seconds"]) for row in read_csv(run / "metrics.csv")[1])  # train + validate
        timings[name] = {"epoch_s": max(epoch_s, 1e-3), "fit_s": time.perf_counter() - start}
    e2e, head = timings.values()
    print(f"epoch (train + validate): frozen end-to-end {e2e['epoch_s']:.1f} s, head-only from the cache "
          f"{head['epoch_s']:.1f} s: {e2e['epoch_s'] / head['epoch_s']:.0f}x (goal >= 50x); whole run with model "
          f"building and checkpoints {e2e['fit_s']:.1f} s vs {head['fit_s']:.1f} s; extraction once {extract_s:.1f} s")
    return {"extract_s": extract_s, **timings, "speedup": e2e["epoch_s"] / head["epoch_s"]}
