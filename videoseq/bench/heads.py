"""``videoseq bench heads``: does the temporal head use time?

Train the `mean` head and the demo's temporal head on the same synthetic gestures
(classes differ only in temporal order) and print both test accuracies, overall and
on the mirrored pairs::

    videoseq bench heads [--out /tmp/bench_heads] [--per-class 40] [--set train.epochs=8]

Mean pooling cannot tell a clip from its time reversal, so on the mirrored pairs it
should sit near chance (50% within a pair); the recurrent head should be near 100%.
"""

from __future__ import annotations

import json
from pathlib import Path

from videoseq.config import load_config
from videoseq.demo import DEFAULT_CONFIG
from videoseq.engine.trainer import fit
from videoseq.evaluation import EvalOptions, run_eval
from videoseq.synth import write_gesture_dataset
from videoseq.tables import read_csv

PAIRS = [("MoveLeft", "MoveRight"), ("MoveUp", "MoveDown"), ("Grow", "Shrink"),
         ("RotateClockwise", "RotateCounterClockwise")]


def pair_accuracy(eval_dir: Path) -> float:
    """Accuracy on the videos of mirrored classes, counting only the choice within the pair."""
    partner = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
    right = total = 0
    for row in read_csv(eval_dir / "predictions.csv")[1]:
        if row["label"] not in partner:
            continue
        labels = [row[k] for k in row if k.startswith("label_")]
        # the higher-ranked of the two classes of the pair
        pick = next((label for label in labels if label in (row["label"], partner[row["label"]])), None)
        right += pick == row["label"]
        total += 1
    return right / max(total, 1)


def bench_heads(out: str | Path, *, per_class: int = 40, overrides: list[str] | None = None) -> dict:
    """Train and evaluate the ``mean`` head and the demo config's head; prints and returns both accuracies."""
    out, overrides = Path(out), list(overrides or [])
    data = write_gesture_dataset(out / "data", per_class=per_class, seed=0)
    base = [f"data.root={data / 'videos'}", "data.format=ucf101", f"data.splits_dir={data / 'splits'}"]
    temporal = load_config(DEFAULT_CONFIG, base + overrides)
    results = {}
    for name, extra in [("mean", ["model.head=mean", "model.stage=null", "model.head_args={}"]),
                        (temporal.model.head, [])]:
        config = load_config(DEFAULT_CONFIG, base + overrides + extra)
        run = out / name
        if not (run / "best.pt").is_file():  # a finished run is reused: rerun only what is missing
            fit(config, run)
        metrics = run_eval(run / "best.pt", out_dir=out / name / "eval", options=EvalOptions(split="test"))
        results[name] = {"top1": metrics["video"]["top1"], "pairs": pair_accuracy(out / name / "eval")}
    print("\nhead      test top-1   within mirrored pairs (chance 0.5)")
    for name, r in results.items():
        print(f"{name:9s} {r['top1']:10.3f}   {r['pairs']:.3f}")
    print(json.dumps(results))
    return results
