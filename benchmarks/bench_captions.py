"""Per-clip captions on synthetic gestures: train from scratch on CPU, then score the test split.

    python benchmarks/bench_captions.py [--out /tmp/bench_captions] [--per-class 40] [--set train.epochs=12]

Prints (and writes to OUT/bench.json) the corpus BLEU-1..4 of the beam-search captions
of the held-out clips, the fraction whose motion word is right (the caption names the
clip's motion and no other), and the wall and CPU time of the training run. The goal:
BLEU-4 >= 0.6 and motion word right for >= 95% of clips after about 10 minutes of
training on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import time
from pathlib import Path

from videoseq.config import load_config
from videoseq.engine import fit
from videoseq.evaluation import run_eval
from videoseq.synth import MOTION_WORDS, write_gesture_dataset
from videoseq.text import tokenize

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "captions.yaml"


# Other forms of a motion word that the synthetic references use ("floats upward", "sinks downward").
MOTION_FORMS = {"upward": "up", "downward": "down"}


def motion_words(caption: str) -> set[str]:
    """The motion words (``synth.MOTION_WORDS`` values) a caption uses, "upward" counting as "up"."""
    tokens = {MOTION_FORMS.get(token, token) for token in tokenize(caption)}
    return {word for word in MOTION_WORDS.values() if word in tokens}


def motion_accuracy(predictions: Path) -> tuple[float, int]:
    """Fraction of clips whose caption names exactly the motion of their class, and the clip count."""
    with open(predictions, newline="") as f:
        rows = list(csv.DictReader(f))
    right = sum(motion_words(r["caption"]) == {MOTION_WORDS[r["label"]]} for r in rows)
    return right / max(len(rows), 1), len(rows)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (DataLoader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/bench_captions")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    out = Path(args.out)
    data = write_gesture_dataset(out / "data", per_class=args.per_class, seed=0, frames=16, size=64, captions=True)
    config = load_config(args.config, [f"data.manifest={data / 'manifest.csv'}"] + args.set)
    wall, cpu = time.time(), cpu_seconds()
    run = fit(config, out / "run")
    train_wall, train_cpu = time.time() - wall, cpu_seconds() - cpu
    metrics = run_eval(run / "best.pt", out_dir=out / "eval", split="test", num_workers=config.data.num_workers)
    captions = out / "eval" / ("predictions.csv" if config.model.task == "caption" else "captions.csv")
    motion, clips = motion_accuracy(captions)
    caption = metrics["caption"]
    summary = {
        "clips": clips, "beam": caption["beam"], **{k: round(caption[k], 4) for k in ("bleu1", "bleu2", "bleu3", "bleu4")},
        "motion_word_accuracy": round(motion, 4), "train_wall_s": round(train_wall, 1),
        "train_cpu_s": round(train_cpu, 1), "epochs": config.train.epochs, "task": config.model.task,
        **{k: round(caption[k], 4) for k in ("cider_d", "meteor") if k in caption},
    }
    if "video" in metrics:
        summary["class_top1"] = round(metrics["video"]["top1"], 4)
    (out / "bench.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    goal = summary["bleu4"] >= 0.6 and motion >= 0.95
    print(f"goal (BLEU-4 >= 0.6, motion word right >= 95%): {'met' if goal else 'missed'}")


if __name__ == "__main__":
    main()
