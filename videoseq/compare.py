"""``videoseq compare``: two evaluations of the same split side by side.

Metric differences, the classes B recalls better and worse than A, and an exact
McNemar test on the videos both evaluated, all from the two ``predictions.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videoseq.errors import InputError
from videoseq.evaluation import read_predictions
from videoseq.metrics import mcnemar_exact


def _predictions_path(where: str | Path) -> Path:
    where = Path(where)
    return where / "predictions.csv" if where.is_dir() else where


def compare_evals(a: str | Path, b: str | Path, *, top: int = 10) -> dict:
    """``videoseq compare``: metric differences, per-class recall gains and losses, McNemar on shared videos."""
    pa, pb = (read_predictions(_predictions_path(p)).select(video_rows=True) for p in (a, b))
    ma, mb = pa.metrics(), pb.metrics()
    diffs = {k: (ma[k], mb[k], None if ma[k] is None or mb[k] is None else mb[k] - ma[k])
             for k in ("top1", "top5", "mean_class_acc", "macro_f1", "ece")}
    recall_a = {r["class"]: r for r in ma["per_class"]}
    changes = sorted(((r["recall"] - recall_a[r["class"]]["recall"], r["class"], r["support"])
                      for r in mb["per_class"] if r["class"] in recall_a and r["support"]), key=lambda t: (t[0], t[1]))
    index_a = {p: i for i, p in enumerate(pa.paths)}
    shared = [(index_a[p], j) for j, p in enumerate(pb.paths) if p in index_a]
    if not shared:
        raise InputError(f"{a} and {b} share no video path; compare evaluations of the same split")
    ia, ib = np.array(shared).T
    test = mcnemar_exact(pa.ranked[ia, 0] == pa.labels[ia], pb.ranked[ib, 0] == pb.labels[ib])
    result = {"a": str(a), "b": str(b), "metrics": diffs, "mcnemar": test,
              "gains": [c for c in reversed(changes) if c[0] > 0][:top],
              "losses": [c for c in changes if c[0] < 0][:top]}
    print(format_comparison(result))
    return result


def format_comparison(result: dict) -> str:
    def cell(value, sign: str = "") -> str:
        return "-" if value is None else f"{value:{sign}.4f}"

    lines = [f"A = {result['a']}", f"B = {result['b']}", f"{'metric':16} {'A':>8} {'B':>8} {'B - A':>8}"]
    for key, (va, vb, d) in result["metrics"].items():
        lines.append(f"{key:16} {cell(va):>8} {cell(vb):>8} {cell(d, '+'):>8}")
    for title, rows in (("classes B recalls better", result["gains"]), ("classes B recalls worse", result["losses"])):
        lines.append(f"{title}: " + (", ".join(f"{name} {d:+.3f} (n={n})" for d, name, n in rows) or "none"))
    t = result["mcnemar"]
    lines.append(f"McNemar (exact) on {t['videos']} shared videos: only A right {t['a_only']}, only B right "
                 f"{t['b_only']}, p = {t['p_value']:.4g}")
    return "\n".join(lines)
