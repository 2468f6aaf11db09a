"""What a run leaves for people to read: metrics.csv, curves.png, TensorBoard scalars, and its closing summary.

Every epoch's row goes to ``metrics.csv`` and ``curves.png``, and with
``train.tensorboard: true`` to TensorBoard event files under ``RUN_DIR/tensorboard``
(``tensorboard --logdir RUN_DIR/tensorboard``): one scalar per numeric column, tagged
``train/loss``, ``val/video_acc``, ``lr``, ... with the epoch as the step. The run ends
with ``closing_summary``: the best epoch and its score, what it was chosen on, where
the files are, and the commands to run next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videoseq.engine.selection import Selection
from videoseq.errors import UsageError
from videoseq.metrics import plot_curves
from videoseq.tables import write_csv

TENSORBOARD_DIR = "tensorboard"


def scalar_tag(column: str) -> str:
    """``train_loss`` -> ``train/loss``, ``val_video_acc`` -> ``val/video_acc``; other columns as they are."""
    for prefix in ("train", "val"):
        if column.startswith(prefix + "_"):
            return f"{prefix}/{column[len(prefix) + 1:]}"
    return column


class RunRecords:
    """The per-epoch files of a run folder (rank 0 only): metrics.csv, curves.png and, if asked, TensorBoard."""

    def __init__(self, run_dir: Path, columns: tuple[str, ...], *, tensorboard: bool) -> None:
        self.run_dir, self.columns = run_dir, columns
        self.writer = open_tensorboard(run_dir / TENSORBOARD_DIR) if tensorboard else None

    def write(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.csv and curves.png from every row; add the last row's scalars to TensorBoard."""
        write_csv(self.run_dir / "metrics.csv", self.columns, [[h.get(k, "") for k in self.columns] for h in history])
        plot_curves(history, self.run_dir / "curves.png")
        if self.writer is not None and history:
            row = history[-1]
            for column, value in row.items():
                if column != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(scalar_tag(column), value, global_step=row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def open_tensorboard(folder: Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing into ``folder`` (train.tensorboard)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise UsageError(f"train.tensorboard: true needs the tensorboard package ({err}); "
                           "pip install tensorboard, or set train.tensorboard: false") from None
    return SummaryWriter(log_dir=str(folder))


def closing_summary(run_dir: Path, history: list[dict[str, Any]], selection: Selection, *, best_epoch: int,
                    best: float, stop_reason: str = "") -> str:
    """The lines a finished run ends with: best epoch and score and what chose it, the files, next commands."""
    lines = [f"finished after {len(history)} epoch(s)" + (f": {stop_reason}" if stop_reason else "")]
    if best_epoch:
        lines.append(f"best.pt: epoch {best_epoch}, {selection.what} {best:.4f} ({selection.over})")
    if selection.warning:
        lines.append(f"WARNING: {selection.warning}")
    names = [n for n in ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.yaml", "classes.txt",
                         "manifest.csv", "bad_videos.csv") if (run_dir / n).exists()]
    lines.append(f"files in {run_dir}: {', '.join(names)}")
    if (run_dir / TENSORBOARD_DIR).is_dir():
        lines.append(f"TensorBoard: tensorboard --logdir {run_dir / TENSORBOARD_DIR}")
    best_pt = run_dir / "best.pt"
    lines += ["next:",
              f"  videoseq eval {best_pt} --split test --out {run_dir / 'eval'}",
              f"  videoseq predict {best_pt} VIDEO_OR_FOLDER --csv {run_dir / 'predictions.csv'}",
              f"  videoseq export {best_pt} --format onnx"]
    return "\n".join(lines)
