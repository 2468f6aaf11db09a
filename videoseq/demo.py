"""``videoseq demo``: synthesise gestures, train, evaluate and predict, on CPU, in minutes."""

from __future__ import annotations

from pathlib import Path

from videoseq.archive import ArchiveOptions
from videoseq.config import load_config
from videoseq.engine.trainer import fit
from videoseq.errors import UsageError
from videoseq.evaluation import EvalOptions, run_eval
from videoseq.outputs import check_output_folder
from videoseq.predict_files import PredictOptions, predict_to_csv
from videoseq.resources import CONFIGS
from videoseq.synth import write_gesture_dataset

DEFAULT_CONFIG = CONFIGS / "demo.yaml"
CAPTION_CONFIG = CONFIGS / "captions.yaml"
# Clips per class when none is given: the caption model learns shapes from the words
# alone and needs more clips to tell them apart on held-out clips (docs/captions.md).
DEMO_PER_CLASS = {"classify": 60, "caption": 480}


def run_demo(out_dir: str | Path, *, config: str | Path | None = None, overrides: list[str] | None = None,
             per_class: int | None = None, seed: int = 0, task: str = "classify") -> dict:
    """Every step under ``out_dir``: ``data/``, ``run/``, ``eval/`` and ``predictions.csv``.

    ``task="caption"`` synthesises reference captions too and trains ``configs/captions.yaml``
    (small 64-pixel clips; the prediction gets a caption column).
    """
    if task not in DEMO_PER_CLASS:
        raise UsageError(f"demo task {task!r} is not one of {list(DEMO_PER_CLASS)}")
    per_class = DEMO_PER_CLASS[task] if per_class is None else per_class
    out = check_output_folder(out_dir, ("run", "eval", "predictions.csv"), flag="--out",
                              hint="a demo writes data/, run/, eval/ and predictions.csv there; choose another --out "
                                   "or remove that folder")
    config_path = Path(config) if config else (CAPTION_CONFIG if task == "caption" else DEFAULT_CONFIG)
    if not config_path.is_file():
        raise UsageError(f"demo config {config_path} not found; pass --config configs/demo.yaml from the repo")
    if task == "caption":
        data = write_gesture_dataset(out / "data", per_class=per_class, seed=seed, frames=16, size=64, captions=True)
        settings = [f"data.manifest={data / 'manifest.csv'}"]
    else:
        data = write_gesture_dataset(out / "data", per_class=per_class, seed=seed)
        settings = [f"data.root={data / 'videos'}", "data.format=ucf101", f"data.splits_dir={data / 'splits'}"]
    cfg = load_config(config_path, settings + list(overrides or []))
    run = fit(cfg, out / "run")
    metrics = run_eval(run / "best.pt", out_dir=out / "eval",
                       options=EvalOptions(split="test", views="5x1", num_workers=cfg.data.num_workers))
    held_out = sorted((data / "videos").glob("*/*.avi"))
    test_names = set((data / "splits" / "testlist01.txt").read_text().split())
    clip = next(p for p in held_out if f"{p.parent.name}/{p.name}" in test_names)
    predict_to_csv(run / "best.pt", [str(clip)], out / "predictions.csv",
                   PredictOptions(topk=3, archive=ArchiveOptions(workers=1, overwrite=True)))
    print("\ndemo finished:")
    for name, path in [("data", data), ("run (checkpoints, metrics.csv, curves.png)", run),
                       ("eval (predictions.csv, per_class.csv, confusion.png)", out / "eval"),
                       (f"prediction for held-out clip {clip.name}", out / "predictions.csv")]:
        print(f"  {name}: {path}")
    if "video" in metrics:
        print(f"  test top-1 accuracy: {metrics['video']['top1']:.3f}")
    if "caption" in metrics:
        print(f"  test BLEU-4: {metrics['caption']['bleu4']:.3f} (beam {metrics['caption']['beam']})")
    return metrics
