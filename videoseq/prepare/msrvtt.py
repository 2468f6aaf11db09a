"""MSR-VTT: the JSON of videos and sentences -> a caption manifest.

The annotation file (``videodatainfo.json``, or ``train_val_videodatainfo.json`` and
``test_videodatainfo.json``) holds ``videos`` (``video_id``, ``category`` 0-19,
``split`` train / validate / test) and ``sentences`` (``video_id``, ``caption``;
20 per video). Each sentence becomes one manifest row, so a video has all its
references; the label is the category (``category_09``), the group the video id.
Files ``<video_id>.<ext>`` are found anywhere under the root; videos without a file
are left out and listed in the notes.
"""

from __future__ import annotations

import json
from pathlib import Path

from videoseq.manifest import Manifest, ManifestError, ManifestRow
from videoseq.prepare.common import find_annotations
from videoseq.prepare.kinetics import index_videos

MSRVTT_SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def find_msrvtt_json(root: Path, annotations: str | Path | None) -> list[Path]:
    """The given JSON file, or the JSON files of the given folder or of ``root`` / ``root/annotations``."""
    if annotations and Path(annotations).is_file():
        return [Path(annotations)]
    folder = find_annotations(root, annotations, (".", "annotations", ".."), "*.json", "--splits-dir JSON_OR_FOLDER")
    return sorted(folder.glob("*.json"))


def read_msrvtt_json(path: Path) -> tuple[list[dict], list[dict]]:
    """``videos`` and ``sentences`` of one annotation file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ManifestError(f"MSR-VTT annotations {path} cannot be read as JSON: {err}") from err
    if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
        raise ManifestError(f"{path} is not an MSR-VTT annotation file (needs 'videos' and 'sentences')")
    return data["videos"], data["sentences"]


def manifest_from_msrvtt(root: str | Path, annotations: str | Path | None = None) -> Manifest:
    """One row per (video, sentence) of the MSR-VTT videos found under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"MSR-VTT root {root} is not a folder")
    videos, sentences = {}, {}
    for path in find_msrvtt_json(root, annotations):
        found_videos, found_sentences = read_msrvtt_json(path)
        for v in found_videos:
            split = MSRVTT_SPLITS.get(str(v.get("split", "")).lower())
            if split is None:
                raise ManifestError(f"{path}: video {v.get('video_id')!r} has split {v.get('split')!r}, "
                                    f"not one of {sorted(MSRVTT_SPLITS)}")
            videos[str(v["video_id"])] = (split, f"category_{int(v.get('category', 0)):02d}")
        for s in found_sentences:
            sentences.setdefault(str(s["video_id"]), []).append(str(s["caption"]).strip())
    on_disk = index_videos(root)
    rows, missing = [], []
    for video_id, (split, label) in videos.items():
        if video_id not in on_disk:
            missing.append(f"missing: {split}/{video_id}")
            continue
        for caption in sentences.get(video_id) or [""]:
            rows.append(ManifestRow(on_disk[video_id], label, split, group=video_id, caption=caption))
    if not rows:
        raise ManifestError(f"none of the {len(videos)} annotated MSR-VTT videos was found under {root}")
    notes = [f"{len(missing)} of {len(videos)} annotated videos not found under {root}"] if missing else []
    classes = sorted({label for _, label in videos.values()})
    return Manifest(rows=rows, classes=classes, root=root.resolve(), notes=notes + missing)
