"""Does the temporal head use time? Train the `mean` head and the demo's temporal head on
the same synthetic gestures (classes differ only in temporal order) and print both
test accuracies, overall and on the mirrored pairs.

    python benchmarks/bench_heads.py [--out /tmp/bench_heads] [--per-class 40] [--set train.epochs=8]

Mean pooling cannot tell a clip from its time reversal, so on the mirrored pairs it
should sit near chance (50% within a pair); the recurrent head should be near 100%.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from videoseq.config import load_config
from videoseq.demo import DEFAULT_CONFIG
from videoseq.engine import fit
from videoseq.evaluation import run_eval
from videoseq.synth import write_gesture_dataset

PAIRS = [("MoveLeft", "MoveRight"), ("MoveUp", "MoveDown"), ("Grow", "Shrink"),
         ("RotateClockwise", "RotateCounterClockwise")]


def pair_accuracy(eval_dir: Path) -> float:
    """Accuracy on the videos of mirrored classes, counting only the choice within the pair."""
    import csv

    partner = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
    right = total = 0
    with open(eval_dir / "predictions.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["label"] not in partner:
                continue
            labels = [row[k] for k in row if k.startswith("label_")]
            # the higher-ranked of the two classes of the pair
            pick = next((l for l in labels if l in (row["label"], partner[row["label"]])), None)
            right += pick == row["label"]
            total += 1
    return right / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/bench_heads")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    out = Path(args.out)
    data = write_gesture_dataset(out / "data", per_class=args.per_class, seed=0)
    base = [f"data.root={data / 'videos'}", "data.format=ucf101", f"data.splits_dir={data / 'splits'}"]
    temporal = load_config(DEFAULT_CONFIG, base + args.set)
    results = {}
    for name, extra in [("mean", ["model.head=mean", "model.stage=null", "model.head_args={}"]),
                        (temporal.model.head, [])]:
        config = load_config(DEFAULT_CONFIG, base + args.set + extra)
        run = out / name
        if not (run / "best.pt").is_file():  # a finished run is reused: rerun only what is missing
            fit(config, run)
        metrics = run_eval(run / "best.pt", out_dir=out / name / "eval", split="test")
        results[name] = {"top1": metrics["video"]["top1"], "pairs": pair_accuracy(out / name / "eval")}
    print("\nhead      test top-1   within mirrored pairs (chance 0.5)")
    for name, r in results.items():
        print(f"{name:9s} {r['top1']:10.3f}   {r['pairs']:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
