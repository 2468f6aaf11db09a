"""Dataset preparation: every supported layout in, one manifest (CSV + class list) out."""

from __future__ import annotations

from pathlib import Path

from videoseq.config import DataConfig
from videoseq.datasets import Manifest, read_manifest, write_manifest
from videoseq.prepare.folder import manifest_from_folders
from videoseq.prepare.ucf101 import find_splits_dir, manifest_from_ucf101

__all__ = ["manifest_from_folders", "manifest_from_ucf101", "find_splits_dir", "resolve_manifest"]


def resolve_manifest(data: DataConfig, out_dir: str | Path | None = None) -> Manifest:
    """The manifest a ``DataConfig`` names: a manifest file, or a dataset root read by format.

    A manifest built from a root is written to ``out_dir`` (the run folder) so the run
    records exactly which videos and splits it used.
    """
    if data.manifest:
        return read_manifest(data.manifest)
    if not data.root:
        raise ValueError("set data.manifest (a manifest CSV) or data.root with data.format (ucf101 | folder)")
    if data.format == "ucf101":
        manifest = manifest_from_ucf101(data.root, data.splits_dir, data.fold)
    elif data.format == "folder":
        manifest = manifest_from_folders(
            data.root, val_fraction=data.val_fraction, test_fraction=data.test_fraction,
            group_pattern=data.group_pattern,
        )
    else:
        raise ValueError(f"data.format={data.format!r} needs data.manifest; with data.root use ucf101 or folder")
    if out_dir is not None:
        write_manifest(manifest, out_dir)
    return manifest
