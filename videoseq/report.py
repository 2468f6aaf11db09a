"""An evaluation's report: the headline table printed (``format_summary``) and ``report.html``.

``report.html`` holds the figures and tables in one self-contained page: the PNGs and
the misclassified videos' frame strips are embedded as base64 data URIs, so the file
can be mailed or attached to an issue on its own; nothing is fetched when it opens.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from videoseq.outputs import write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f6fa; }
img { max-width: 100%; border: 1px solid #eee; }
.low { background: #fde0dd; }
img.strip { border: 0; max-width: none; height: 64px; }
details pre { background: #f7f7f7; padding: 1em; font-size: 12px; overflow-x: auto; }
"""


SUMMARY_KEYS = ("top1", "top1_ci95", "top5", "mean_class_acc", "macro_f1", "ece")


def summary(metrics: dict) -> dict:
    return {"count": metrics["count"], **{k: metrics[k] for k in SUMMARY_KEYS}}


def summary_rows(report: dict) -> list[tuple[str, dict]]:
    """(name, metrics) rows to show side by side: single view, multi-view videos, clips."""
    views, aggregate = report.get("views", ""), report.get("aggregate", "")
    rows = []
    if "single_view" in report:
        rows.append(("videos, single view 1x1", report["single_view"]))
    rows.append((f"videos, {views} views, {aggregate}" if views else "videos", report["video"]))
    if "clip" in report:
        rows.append(("clips, each view alone" if views else "clips", report["clip"]))
    return rows


def format_summary(report: dict) -> str:
    """A small fixed-width table of the headline metrics."""
    def cell(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [f"{'':32} {'count':>6} {'top1':>7} {'95% CI':>15} {'top5':>7} {'mean_class_acc':>14} "
             f"{'macro_f1':>8} {'ECE':>7}"]
    for name, m in summary_rows(report):
        lo, hi = m["top1_ci95"]
        lines.append(f"{name:32} {m['count']:>6} {cell(m['top1']):>7} {f'[{lo:.3f}, {hi:.3f}]':>15} "
                     f"{cell(m['top5']):>7} {cell(m['mean_class_acc']):>14} {cell(m['macro_f1']):>8} "
                     f"{cell(m['ece']):>7}")
    return "\n".join(lines)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def html_table(header: list[str], rows: list[list], classes: list[str] | None = None) -> str:
    """An escaped HTML table; ``classes`` gives each row an optional CSS class."""
    def cell(value) -> str:
        if value is None:
            return "<td>-</td>"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"<td class='num'>{value:.4f}</td>" if isinstance(value, float) else f"<td class='num'>{value}</td>"
        return f"<td>{html.escape(str(value))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr class='{c}'>" + "".join(cell(v) for v in row) + "</tr>"
        for row, c in zip(rows, classes or [""] * len(rows))
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def headline_table(summary_rows: list[tuple[str, dict]]) -> str:
    rows = [[name, m["count"], m["top1"], "[{:.3f}, {:.3f}]".format(*m["top1_ci95"]), m["top5"],
             m["mean_class_acc"], m["macro_f1"], m["ece"]] for name, m in summary_rows]
    return html_table(["", "count", "top-1", "top-1 95% CI", "top-5", "mean class acc", "macro F1",
                       "ECE"], rows)


MAX_LISTED = 200  # misclassified videos listed in report.html (report.json has them all)


def misclassified_section(rows: list[dict], strips: dict[str, str]) -> str:
    """The misclassified videos, most confident mistake first, each with the strip of the clip the model saw."""
    if not rows:
        return "<h2>Misclassified videos</h2><p>none</p>"
    cells = []
    for n, r in enumerate(rows[:MAX_LISTED], start=1):
        true = "not in the top-k" if r["true_rank"] is None else f"rank {r['true_rank']}, {r['true_score']:.3f}"
        strip = f"<img class='strip' alt='frames' src='{strips[r['path']]}'>" if r["path"] in strips else ""
        cells.append(f"<tr><td class='num'>{n}</td><td>{html.escape(r['path'])}</td>"
                     f"<td>{html.escape(r['label'])}</td><td>{html.escape(r['predicted'])}</td>"
                     f"<td class='num'>{r['confidence']:.3f}</td><td>{true}</td><td>{strip}</td></tr>")
    more = f"<p>{len(rows) - MAX_LISTED} more in report.json.</p>" if len(rows) > MAX_LISTED else ""
    return (f"<h2>Misclassified videos ({len(rows)}, most confident mistake first)</h2>"
            "<p>Frames: the first test view, as the model saw it (after resize and crop).</p>"
            "<table class='misclassified'><tr><th>#</th><th>video</th><th>true</th><th>predicted</th>"
            "<th>confidence</th><th>true label</th><th>frames</th></tr>" + "".join(cells) + "</table>" + more)


def render_html(report: dict, summary_rows: list[tuple[str, dict]], images: dict[str, Path],
                strips: dict[str, str] | None = None) -> str:
    """The page: headline metrics, confusion matrix, confused pairs, per-class figure and table,
    the misclassified videos (with ``strips``, ``{path: image data URI}``), config."""
    video = report["video"]
    title = "videoseq evaluation" + (f": {report['checkpoint']}" if "checkpoint" in report else "")
    facts = {k: report[k] for k in ("checkpoint", "predictions", "split", "views", "aggregate", "failed_videos")
             if k in report}
    per_class = video["per_class"]
    worst = sorted(per_class, key=lambda r: (r["f1"], r["class"]))
    pairs = [[p["true"], p["predicted"], p["count"], p["share"]] for p in video["most_confused"]]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        html_table(["", "value"], [[k, v] for k, v in facts.items()]),
        "<h2>Headline metrics</h2>", headline_table(summary_rows),
        f"<p>ECE: expected calibration error over {video['ece_bins']} equal-width confidence bins. "
        f"95% CI: Wilson score interval of the top-1 accuracy over the {video['count']} videos "
        f"(at 0% or 100% it still has a width, unlike a bootstrap's).</p>",
        "<h2>Confusion matrix (videos, rows normalised)</h2>",
        f"<img alt='confusion matrix' src='{data_uri(images['confusion'])}'>",
        "<h2>Most confused pairs</h2>",
        html_table(["true", "predicted as", "videos", "share of true class"], pairs) if pairs else "<p>none</p>",
        "<h2>Per class</h2>",
        f"<img alt='per-class F1' src='{data_uri(images['per_class'])}'>",
        html_table(["class", "precision", "recall", "F1", "support"], [list(r.values()) for r in worst],
                   ["low" if r["f1"] < video["macro_f1"] / 2 else "" for r in worst]),
        misclassified_section(report.get("misclassified", []), strips or {}),
    ]
    if "config" in report:
        config = html.escape(json.dumps(report["config"], indent=2))
        parts.append(f"<details><summary>run config</summary><pre>{config}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(path: Path, report: dict, summary_rows: list[tuple[str, dict]], images: dict[str, Path],
                      strips: dict[str, str] | None = None) -> Path:
    return write_text(path, render_html(report, summary_rows, images, strips))
