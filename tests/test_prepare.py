from pathlib import Path

import pytest

from conftest import brightness_frames, write_video
from videoseq.config import DataConfig
from videoseq.datasets import ManifestError, read_manifest
from videoseq.prepare import manifest_from_folders, manifest_from_ucf101, resolve_manifest


def ucf_tree(root: Path, class_order: list[str]) -> Path:
    for cls in class_order:
        for g in (1, 2, 3):
            write_video(root / "videos" / cls / f"v_{cls}_g{g:02d}_c01.avi", brightness_frames(4, 16))
    splits = root / "splits"
    splits.mkdir()
    (splits / "classInd.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(class_order, 1)))
    train = [f"{c}/v_{c}_g{g:02d}_c01.avi {i}" for i, c in enumerate(class_order, 1) for g in (1, 2)]
    (splits / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (splits / "testlist01.txt").write_text("".join(f"{c}/v_{c}_g03_c01.avi\n" for c in class_order))
    return root


def test_ucf101_class_ids_follow_classind_not_sorted_names(tmp_path):
    root = ucf_tree(tmp_path, ["Zebra", "Apple", "Mango"])
    manifest = manifest_from_ucf101(root / "videos", root / "splits")
    assert manifest.classes == ["Zebra", "Apple", "Mango"]
    lines = [(r.path, r.label, r.split, r.group) for r in manifest.rows]
    assert lines[0] == ("Zebra/v_Zebra_g01_c01.avi", "Zebra", "train", "Zebra_g01")
    assert lines[-1] == ("Mango/v_Mango_g03_c01.avi", "Mango", "test", "Mango_g03")
    assert manifest.videos("test")[1][1] == 1  # Apple is id 1, as classInd says


def test_ucf101_split_folder_is_found_beside_the_videos(tmp_path):
    root = ucf_tree(tmp_path, ["A", "B"])
    assert len(manifest_from_ucf101(root / "videos").rows) == 6


def test_ucf101_mislabelled_train_line_is_named(tmp_path):
    root = ucf_tree(tmp_path, ["A", "B"])
    (root / "splits" / "trainlist01.txt").write_text("A/v_A_g01_c01.avi 2\n")
    with pytest.raises(ManifestError, match="line 1"):
        manifest_from_ucf101(root / "videos")


def test_ucf101_missing_fold_is_explained(tmp_path):
    root = ucf_tree(tmp_path, ["A"])
    with pytest.raises(ManifestError, match="trainlist02.txt"):
        manifest_from_ucf101(root / "videos", fold=2)


def test_folder_split_is_stratified_and_never_splits_a_group(tmp_path):
    for cls in ("a", "b"):
        for g in range(1, 11):
            for c in (1, 2):
                write_video(tmp_path / cls / f"v_{cls}_g{g:02d}_c{c:02d}.avi", brightness_frames(3, 16))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "empty").mkdir()
    manifest = manifest_from_folders(tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert manifest.classes == ["a", "b"]
    by_group: dict[str, set] = {}
    for row in manifest.rows:
        by_group.setdefault(row.group, set()).add(row.split)
    assert all(len(s) == 1 for s in by_group.values())
    for split in ("train", "val", "test"):
        labels = {r.label for r in manifest.rows if r.split == split}
        assert labels == {"a", "b"}, split
    assert sum(r.split == "test" for r in manifest.rows) == 8


def test_folder_rejects_unsafe_class_names(tmp_path):
    write_video(tmp_path / "bad;name" / "x.avi", brightness_frames(3, 16))
    with pytest.raises(ManifestError, match="safe path component"):
        manifest_from_folders(tmp_path)


def test_resolve_manifest_writes_what_the_run_used(gestures, tmp_path):
    data = DataConfig(root=str(gestures / "videos"), format="ucf101", splits_dir=str(gestures / "splits"))
    manifest = resolve_manifest(data, tmp_path)
    back = read_manifest(tmp_path / "manifest.csv")
    assert back.classes == manifest.classes and len(back.rows) == len(manifest.rows)
    assert all(Path(back.resolve(r.path)).is_file() for r in back.rows)
