"""``videoseq bench captions``: per-clip captions on synthetic gestures, trained from scratch on CPU.

    videoseq bench captions [--out /tmp/bench_captions] [--per-class 480] [--seed 0] [--set train.epochs=12]

Prints (and writes to OUT/bench.json) the corpus BLEU-1..4 of the beam-search captions
of the held-out clips, the fraction whose motion word is right (the caption names the
clip's motion and no other; likewise its shape and colour), and the wall and CPU time
of the training run. The goal:
BLEU-4 >= 0.6 and motion word right for >= 95% of clips after about 10 minutes of
training on 2 CPU cores.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

from videoseq.config import load_config
from videoseq.engine.trainer import fit
from videoseq.evaluation import EvalOptions, run_eval
from videoseq.resources import CONFIGS
from videoseq.synth import MOTION_WORDS, PALETTE, SHAPES, write_gesture_dataset
from videoseq.tables import read_csv
from videoseq.text import tokenize

CONFIG = CONFIGS / "captions.yaml"


# Other forms of a motion word that the synthetic references use ("floats upward", "sinks downward").
MOTION_FORMS = {"upward": "up", "downward": "down"}


def named(caption: str, words) -> set[str]:
    """The words of ``words`` that a caption uses ("upward" counting as "up")."""
    tokens = {MOTION_FORMS.get(token, token) for token in tokenize(caption)}
    return {word for word in words if word in tokens}


def motion_words(caption: str) -> set[str]:
    """The motion words (``synth.MOTION_WORDS`` values) a caption uses."""
    return named(caption, MOTION_WORDS.values())


def word_accuracies(predictions: Path) -> tuple[dict[str, float], int]:
    """Per clip, does the caption name exactly the clip's motion (from its class), shape and colour
    (from its references, which all name them) and no other? The fractions, and the clip count."""
    rows = read_csv(predictions)[1]
    truths = {
        "motion": (MOTION_WORDS.values(), lambda r: {MOTION_WORDS[r["label"]]}),
        "shape": (SHAPES, lambda r: named(r["references"], SHAPES)),
        "colour": (PALETTE, lambda r: named(r["references"], PALETTE)),
    }
    right = {key: sum(named(r["caption"], words) == truth(r) for r in rows) for key, (words, truth) in truths.items()}
    return {key: n / max(len(rows), 1) for key, n in right.items()}, len(rows)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (DataLoader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_captions(out: str | Path, *, per_class: int = 480, seed: int = 0, config: str | Path | None = None,
                   overrides: list[str] | None = None) -> dict:
    """Synthesise, train, caption the test split; prints and returns the summary (also ``OUT/bench.json``)."""
    out = Path(out)
    data = write_gesture_dataset(out / "data", per_class=per_class, seed=seed, frames=16, size=64, captions=True)
    config = load_config(config or CONFIG, [f"data.manifest={data / 'manifest.csv'}", f"train.seed={seed}"]
                         + list(overrides or []))
    wall, cpu = time.time(), cpu_seconds()
    run = fit(config, out / "run")
    train_wall, train_cpu = time.time() - wall, cpu_seconds() - cpu
    metrics = run_eval(run / "best.pt", out_dir=out / "eval", options=EvalOptions(num_workers=config.data.num_workers))
    captions = out / "eval" / ("predictions.csv" if config.model.task == "caption" else "captions.csv")
    words, clips = word_accuracies(captions)
    motion = words["motion"]
    caption = metrics["caption"]
    summary = {
        "clips": clips, "beam": caption["beam"],
        **{k: round(caption[k], 4) for k in ("bleu1", "bleu2", "bleu3", "bleu4")},
        "motion_word_accuracy": round(motion, 4), "shape_word_accuracy": round(words["shape"], 4),
        "colour_word_accuracy": round(words["colour"], 4), "train_wall_s": round(train_wall, 1),
        "train_cpu_s": round(train_cpu, 1), "epochs": config.train.epochs, "task": config.model.task,
        "per_class": per_class, "seed": seed,
        **{k: round(caption[k], 4) for k in ("cider_d", "meteor") if k in caption},
    }
    if "video" in metrics:
        summary["class_top1"] = round(metrics["video"]["top1"], 4)
    (out / "bench.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    goal = summary["bleu4"] >= 0.6 and motion >= 0.95
    print(f"goal (BLEU-4 >= 0.6, motion word right >= 95%): {'met' if goal else 'missed'}")
    return summary
