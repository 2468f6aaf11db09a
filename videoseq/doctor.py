"""The dataset doctor: find what would break or bias training before training starts.

``diagnose`` checks a manifest: rows whose label is not in the class list,
duplicate rows, groups (source videos) that appear both in train and in an
evaluation split, listed files that are missing, files that do not decode in
time, whose frame count disagrees with what decodes or with their header, or
that are shorter than ``min_frames``; files on disk that no split lists; class
ids that differ from the sorted folder names. Decoding runs in worker processes
with a per-file time limit (``video.isolated.run_isolated``), so a hung or crashed
decoder costs one file, not the run.

Errors mark manifest rows as bad; ``clean_manifest`` is the manifest without them.
A group leaked across splits marks its rows in the evaluation splits (the
training rows stay). Warnings mark no row.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from videoseq.config import DataConfig
from videoseq.manifest import (
    Manifest,
    ManifestError,
    read_classes,
    read_manifest_rows,
    write_manifest,
)
from videoseq.outputs import OutputError, check_output, write_text
from videoseq.prepare import FORMATS, find_splits_dir
from videoseq.prepare.common import UCF_GROUP_PATTERN, group_of
from videoseq.progress import progress_bar
from videoseq.video.containers import TRUNCATED
from videoseq.video.decoder import find_videos
from videoseq.video.isolated import run_isolated
from videoseq.video.probe import inspect_video

TRAIN_SPLIT = "train"


@dataclass
class Finding:
    """One problem: ``check`` names the test, ``rows`` the manifest rows it makes bad (0-based)."""

    check: str
    severity: str  # error | warning
    message: str
    path: str = ""
    rows: list[int] = field(default_factory=list)


@dataclass
class DoctorReport:
    source: str
    rows: int
    files: int
    findings: list[Finding]
    stats: dict

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def bad_rows(self) -> set[int]:
        return {row for finding in self.errors() for row in finding.rows}


def load_target(target: str | Path, data_format: str | None = None, splits_dir: str | None = None,
                fold: int = 1) -> tuple[Manifest, Path | None]:
    """The manifest to check and the dataset root, from a manifest CSV, its folder or a dataset root.

    A manifest CSV is read without the label check (that is one of the doctor's own).
    A dataset root is read with ``data_format``: ucf101 when a classInd.txt is near, else folder.
    """
    target = Path(target)
    csv_path = target / "manifest.csv" if target.is_dir() and data_format is None else target
    if csv_path.is_file():
        rows = read_manifest_rows(csv_path)
        return Manifest(rows=rows, classes=read_classes(csv_path.parent / "classes.txt"),
                        root=csv_path.parent.resolve()), None
    if not target.is_dir():
        raise ManifestError(f"{target} is neither a manifest CSV nor a dataset folder")
    if data_format is None:
        try:
            find_splits_dir(target, splits_dir)
            data_format = "ucf101"
        except ManifestError:
            data_format = "folder"
    if data_format not in FORMATS:
        raise ManifestError(f"unknown format {data_format!r}; use one of {list(FORMATS)}")
    data = DataConfig(root=str(target), format=data_format, splits_dir=splits_dir, fold=fold)
    return FORMATS[data_format].read(data), target.resolve()


def data_root(manifest: Manifest) -> Path:
    """The folder most listed files live in: the deepest one that holds more than half of them (above the
    class folder of a file in a folder named by its label). A few files elsewhere (``/etc/hostname``)
    do not widen it; ``check_outside`` names them."""
    tops = [path.parent.parent if path.parent.name == row.label else path.parent
            for path, row in ((Path(manifest.resolve(r.path)), r) for r in manifest.rows)]
    if not tops:
        return manifest.root
    holds = Counter(folder for top in tops for folder in (top, *top.parents))
    majority = [folder for folder, count in holds.items() if count > len(tops) / 2]
    return max(majority, key=lambda folder: len(folder.parts))


def check_outside(manifest: Manifest, root: Path) -> list[Finding]:
    """Listed files outside the data root: the unlisted-files scan does not reach out to their folders."""
    return [Finding("outside_root", "warning", f"listed outside the data root {root} (searched for unlisted files)",
                    row.path, [i]) for i, row in enumerate(manifest.rows)
            if not Path(manifest.resolve(row.path)).is_relative_to(root)]


def check_labels(manifest: Manifest) -> list[Finding]:
    known = set(manifest.classes)
    return [
        Finding("unknown_label", "error", f"label {r.label!r} is not in the class list", r.path, [i])
        for i, r in enumerate(manifest.rows) if r.label not in known
    ]


def check_duplicates(manifest: Manifest) -> list[Finding]:
    first: dict[str, int] = {}
    findings = []
    for i, row in enumerate(manifest.rows):
        key = manifest.resolve(row.path)
        if key in first:
            j = first[key]
            message = f"listed again ({row.split}); first listed in {manifest.rows[j].split} (row {j + 1})"
            findings.append(Finding("duplicate", "error", message, row.path, [i]))
        else:
            first[key] = i
    return findings


def check_leaks(manifest: Manifest, group_pattern: str = UCF_GROUP_PATTERN) -> list[Finding]:
    """Groups in train and in another split; the other split's rows are the bad ones."""
    pattern = re.compile(group_pattern)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(manifest.rows):
        by_group[row.group or group_of(Path(row.path).name, row.label, pattern)].append(i)
    findings = []
    for group, rows in by_group.items():
        splits = {manifest.rows[i].split for i in rows}
        if TRAIN_SPLIT in splits and len(splits) > 1:
            held = [i for i in rows if manifest.rows[i].split != TRAIN_SPLIT]
            message = f"group {group!r} is in train and in {sorted(splits - {TRAIN_SPLIT})} ({len(held)} rows there)"
            findings.append(Finding("group_leak", "error", message, manifest.rows[held[0]].path, held))
    return findings


def check_class_order(manifest: Manifest, root: Path) -> list[Finding]:
    """Class ids vs sorted names, and class folders on disk vs the class list."""
    findings = []
    if manifest.classes != sorted(manifest.classes):
        first = next(i for i, (a, b) in enumerate(zip(manifest.classes, sorted(manifest.classes))) if a != b)
        findings.append(Finding(
            "class_order", "warning",
            f"class ids follow the class list, not sorted folder names: id {first} is "
            f"{manifest.classes[first]!r} here, {sorted(manifest.classes)[first]!r} when sorted; tools that number "
            "classes by sorted folders (torchvision ImageFolder) will disagree",
        ))
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} if root.is_dir() else set()
    if folders & set(manifest.classes):  # the root is a tree of class folders
        for name in sorted(folders - set(manifest.classes)):
            findings.append(Finding("class_folders", "warning", "folder on disk is not a class in the class list",
                                    str(root / name)))
        for name in sorted(set(manifest.classes) - folders):
            findings.append(Finding("class_folders", "warning", "class has no folder on disk", name))
    return findings


def check_unlisted(manifest: Manifest, root: Path) -> list[Finding]:
    """Videos under ``root`` that no row lists; a filesystem root is never walked (pass ``--root`` instead)."""
    if root == Path(root.anchor):
        return [Finding("unlisted", "warning", f"the listed files share no folder below {root}; files that no "
                                               "split lists were not searched for (pass --root)")]
    listed = {manifest.resolve(r.path) for r in manifest.rows}
    return [Finding("unlisted", "warning", "on disk but in no split", path)
            for path in map(str, find_videos(root, frame_folders=True)) if path not in listed]


def file_findings(probe: dict, min_frames: int, rows: list[int], path: str) -> list[Finding]:
    """What one probed file holds against what it should: undecodable, frame counts that disagree, too short.

    Judged like the loader: a header that promises more frames than decode is an error only
    when the frames that decode are fewer than ``min_frames`` (a clip cannot be cut); when
    their timestamps span the header's duration, the file has a variable frame rate (a note).
    """
    if probe["error"]:
        kind = "truncated" if TRUNCATED in probe["error"] else "unreadable"
        return [Finding(kind, "error", probe["error"], path, rows)]
    frames, decoded, header = probe["frames"], probe["decoded"], probe["header_frames"]
    tolerance = max(2, header // 50)  # headers that store a duration, not a count, round it
    findings = []
    if decoded < frames:
        findings.append(Finding("frame_count", "error", f"decord reports {frames} frames, only {decoded} decode",
                                path, rows))
    elif header and decoded < header - tolerance:
        findings.append(header_finding(probe, min_frames, rows, path))
    if decoded and decoded < min_frames:
        findings.append(Finding("short", "error", f"{decoded} frames, fewer than --min-frames {min_frames}",
                                path, rows))
    return findings


def header_finding(probe: dict, min_frames: int, rows: list[int], path: str) -> Finding:
    """A header that promises more frames than decode: variable frame rate, a warning, or a cut-off file."""
    header, decoded = probe["header_frames"], probe["decoded"]
    seconds, promised = probe.get("decoded_seconds", 0.0), probe.get("header_seconds", 0.0)
    if promised and seconds >= promised - 2 * promised / header:  # the timestamps reach the header's end
        return Finding("variable_frame_rate", "warning",
                       f"{decoded} frames over {seconds:.2f} s: the frame rate varies (the header's {header} frames "
                       f"assume a constant rate); predict --window reports the decoded timestamps", path)
    message = f"the header promises {header} frames, only {decoded} decode (a cut-off file?)"
    if decoded >= min_frames:
        return Finding("header_frames", "warning", f"{message}; {decoded} are enough for clips of --min-frames "
                                                   f"{min_frames}", path)
    return Finding("truncated", "error", message, path, rows)


def check_files(manifest: Manifest, *, min_frames: int, workers: int, timeout: float,
                progress: bool = True) -> tuple[list[Finding], list[dict]]:
    """Missing files, and each existing file probed in a worker process; the probes of sound files."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(manifest.rows):
        rows_of[manifest.resolve(row.path)].append(i)
    listed_as = {file: manifest.rows[rows[0]].path for file, rows in rows_of.items()}
    findings = [Finding("missing", "error", "listed but not on disk", listed_as[file], rows)
                for file, rows in rows_of.items() if not os.path.exists(file)]
    present = [file for file in rows_of if os.path.exists(file)]
    sound = []
    outcomes = run_isolated(inspect_video, present, workers=workers, timeout=timeout)
    for outcome in progress_bar(outcomes, desc="doctor", total=len(present), unit="file", disable=not progress):
        file = present[outcome.index]
        if outcome.error:
            findings.append(Finding("unreadable", "error", outcome.error, listed_as[file], rows_of[file]))
            continue
        problems = file_findings(outcome.value, min_frames, rows_of[file], listed_as[file])
        findings += problems
        if not problems:
            sound.append(outcome.value)
    return findings, sound


def video_stats(probes: list[dict]) -> dict:
    """min / median / max of frames, fps and duration, and the commonest resolutions."""
    if not probes:
        return {}
    stats = {}
    for key in ("frames", "fps", "duration"):
        values = np.array([p[key] for p in probes], dtype=float)
        stats[key] = {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}
    sizes = Counter(f"{p['width']}x{p['height']}" for p in probes)
    stats["resolution"] = dict(sizes.most_common(10))
    return stats


def diagnose(manifest: Manifest, *, root: Path | None = None, min_frames: int = 1, workers: int = 2,
             timeout: float = 60.0, progress: bool = True, source: str = "") -> DoctorReport:
    """Every check on ``manifest``; ``root`` is the tree searched for unlisted files (default: guessed)."""
    root = root or data_root(manifest)
    findings = check_labels(manifest) + check_duplicates(manifest) + check_leaks(manifest)
    file_problems, sound = check_files(manifest, min_frames=min_frames, workers=workers, timeout=timeout,
                                       progress=progress)
    findings += file_problems + check_outside(manifest, root) + check_unlisted(manifest, root)
    findings += check_class_order(manifest, root)
    stats = {"videos_per_split": manifest.splits(), "sound_files": len(sound), "data_root": str(root),
             **video_stats(sound)}
    files = len({manifest.resolve(r.path) for r in manifest.rows})
    return DoctorReport(source or str(root), len(manifest.rows), files, findings, stats)


def clean_manifest(manifest: Manifest, report: DoctorReport) -> Manifest:
    """The manifest without the rows the report's errors mark as bad."""
    bad = report.bad_rows()
    rows = [row for i, row in enumerate(manifest.rows) if i not in bad]
    return Manifest(rows=rows, classes=manifest.classes, root=manifest.root)


def format_report(report: DoctorReport, per_check: int = 5) -> str:
    """A readable summary: counts, statistics, and the first findings of each check."""
    errors, warnings = len(report.errors()), len(report.findings) - len(report.errors())
    lines = [f"doctor: {report.source}",
             f"{report.rows} rows, {report.files} files; {errors} errors, {warnings} warnings, "
             f"{len(report.bad_rows())} bad rows"]
    stats = report.stats
    lines.append("videos per split: " + ", ".join(f"{s}={n}" for s, n in sorted(stats["videos_per_split"].items())))
    for key, unit in (("frames", ""), ("fps", ""), ("duration", " s")):
        if key in stats:
            s = stats[key]
            lines.append(f"{key}: min {s['min']:.4g}{unit}, median {s['median']:.4g}{unit}, max {s['max']:.4g}{unit}")
    if "resolution" in stats:
        lines.append("resolution: " + ", ".join(f"{k} ({v})" for k, v in stats["resolution"].items()))
    by_check: dict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        by_check[finding.check].append(finding)
    for check, found in by_check.items():
        lines.append(f"{found[0].severity.upper()} {check}: {len(found)}")
        lines += [f"  {f.path}: {f.message}" if f.path else f"  {f.message}" for f in found[:per_check]]
        if len(found) > per_check:
            lines.append(f"  ... {len(found) - per_check} more in doctor.json")
    return "\n".join(lines)


def check_clean_path(path: Path, manifest: Manifest, target: str | Path, overwrite: bool) -> None:
    """``--write-clean``: not the manifest checked, and a ``classes.txt`` beside it that holds these classes."""
    checked = Path(target) / "manifest.csv" if Path(target).is_dir() else Path(target)
    check_output(path, flag="--write-clean", overwrite=overwrite, inputs=[checked, checked.parent / "classes.txt"])
    classes = path.parent / "classes.txt"
    if classes.is_file() and read_classes(classes) != manifest.classes and not overwrite:
        raise OutputError(f"--write-clean {path}: {classes} beside it lists other classes; add --overwrite to "
                          "replace it, or write the clean manifest into another folder")


def run_doctor(target: str | Path, *, out_dir: str | Path = ".", write_clean: str | Path | None = None,
               data_format: str | None = None, splits_dir: str | None = None, fold: int = 1,
               root: str | Path | None = None, min_frames: int = 1, workers: int = 2, timeout: float = 60.0,
               progress: bool = True, overwrite: bool = False) -> DoctorReport:
    """Check ``target``, print the summary, write ``doctor.json`` and, if asked, the clean manifest.

    Existing output files need ``overwrite``; the clean manifest may not replace the one checked.
    """
    report_path = check_output(Path(out_dir) / "doctor.json", flag="--out", overwrite=overwrite)
    manifest, tree = load_target(target, data_format, splits_dir, fold)
    if write_clean:
        check_clean_path(Path(write_clean), manifest, target, overwrite)
    report = diagnose(manifest, root=Path(root) if root else tree, min_frames=min_frames, workers=workers,
                      timeout=timeout, progress=progress, source=str(target))
    print(format_report(report))
    write_text(report_path, json.dumps(asdict(report), indent=1) + "\n")
    if write_clean:
        clean = clean_manifest(manifest, report)
        path = write_manifest(clean, Path(write_clean).parent, csv_name=Path(write_clean).name)
        print(f"wrote {path} ({len(clean.rows)} of {len(manifest.rows)} rows)")
    return report
