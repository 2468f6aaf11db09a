"""What exact resume needs besides weights: RNG states, config checks (stop signals: ``runtime.StopSignals``).

A training run can stop at any step (Ctrl-C, SIGTERM from a scheduler, or
``train.stop_after_steps``) and continue later with ``videoseq train CONFIG
--resume RUN_DIR`` to the same weights, bit for bit, as a run that never stopped.
That holds because every source of randomness is either saved in the checkpoint
(python, numpy and torch RNGs of the main process) or a pure function of
``(seed, epoch[, index])`` (the epoch's sample order, worker seeds, each sample's
crop/flip/jitter and frame choice).

Exit statuses of ``videoseq train``: 0 done (or stopped by ``train.stop_after_steps``),
130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM, both after writing a
resumable ``last.pt``; a second Ctrl-C quits at once with 130 (the last complete
checkpoint stays loadable). 2 is any other error.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoseq.errors import UsageError

# Config keys that may differ between an interrupted run and its resumption: they
# change where or how fast the run goes, not the numbers it computes.
RESUME_MAY_CHANGE = (
    "data.num_workers", "data.timeout", "data.on_error", "data.max_bad_fraction",
    "train.device", "train.stop_after_steps", "train.threads", "train.tensorboard",
)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a resumable checkpoint.

    ``exit_status`` is the shell convention 128 + signal number (130 SIGINT, 143 SIGTERM).
    """

    def __init__(self, signum: int, checkpoint: str, step: int) -> None:
        self.signum, self.checkpoint, self.step = signum, checkpoint, step
        self.exit_status = 128 + signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; resumable checkpoint {checkpoint}. "
            f"Continue with: videoseq train CONFIG --resume {_run_dir(checkpoint)}"
        )


def _run_dir(checkpoint: str) -> str:
    return str(Path(checkpoint).parent)


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process as tensors and plain types (``weights_only``-loadable)."""
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": _plain_python_state(random.getstate()),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": numpy_state["bit_generator"],
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain_python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (``saved -> current``)."""
    keys = sorted(set(saved) | set(current))
    found = []
    for key in keys:
        name = f"{prefix}.{key}" if prefix else key
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and not name.endswith(("head_args", "flip_swap")):
            found += config_differences(a, b, name)
        elif a != b:
            found.append(name)
    return found


def check_resumable(saved: dict[str, Any], current: dict[str, Any], checkpoint: str) -> None:
    """Refuse to resume with a config that would compute different numbers than the saved run."""
    changed = [k for k in config_differences(saved, current) if k not in RESUME_MAY_CHANGE]
    if changed:
        details = ", ".join(f"{k}: {_lookup(saved, k)!r} -> {_lookup(current, k)!r}" for k in changed[:6])
        raise UsageError(
            f"cannot resume {checkpoint} with a different config ({details}); an exact resume needs the "
            f"run's own config (config.yaml in the run folder). Only {list(RESUME_MAY_CHANGE)} may change"
        )


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(values, dict) or key not in values:
            return None
        values = values[key]
    return values
