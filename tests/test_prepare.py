import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoseq.cli import main
from videoseq.config import DataConfig
from videoseq.datasets import ClipDataset, LoaderOptions, make_loader
from videoseq.manifest import ManifestError, read_manifest
from videoseq.prepare import (
    FORMATS,
    manifest_from_folders,
    manifest_from_hmdb51,
    manifest_from_jester,
    manifest_from_kinetics,
    manifest_from_ucf101,
    resolve_manifest,
)
from videoseq.sampling import ClipSampling
from videoseq.transforms import ClipTrainPreset
from videoseq.video.decoder import read_frames

from conftest import brightness_frames, write_video


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
    assert lines[0] == ("Zebra/v_Zebra_g01_c01.avi", "Zebra", "train", "Zebra_01")
    assert lines[-1] == ("Mango/v_Mango_g03_c01.avi", "Mango", "test", "Mango_03")
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


def test_folder_classes_too_small_for_the_split_fractions_are_explained(tmp_path):
    for cls in ("a", "b"):
        for i in range(4):
            write_video(tmp_path / cls / f"{cls}{i}.avi", brightness_frames(3, 16))
    with pytest.raises(ManifestError, match=r"holding out 15% of each class \(1 in 7\) needs a class with at least 7 "
                                            r"videos; the largest has 4.*--test-fraction"):
        manifest_from_folders(tmp_path)
    assert {r.split for r in manifest_from_folders(tmp_path, val_fraction=0.25, test_fraction=0.0).rows} == {
        "train", "val"}


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


# --- more layouts: UCF101 folds, HMDB51, Kinetics, Jester, the prepare command ------------------------------


def rows_of(manifest) -> list[tuple[str, str, str, str]]:
    return [(r.path, r.label, r.split, r.group) for r in manifest.rows]


def read_rows(csv_path: Path) -> list[list[str]]:
    with csv_path.open(newline="") as f:
        return list(csv.reader(f))


def test_ucf101_fold_picks_its_own_split_files(tmp_path):
    root = ucf_tree(tmp_path, ["Zebra", "Apple"])
    (root / "splits" / "trainlist02.txt").write_text("Apple/v_Apple_g03_c01.avi 2\n")
    (root / "splits" / "testlist02.txt").write_text("Zebra/v_Zebra_g01_c01.avi\n")
    assert rows_of(manifest_from_ucf101(root / "videos", fold=2)) == [
        ("Apple/v_Apple_g03_c01.avi", "Apple", "train", "Apple_03"),
        ("Zebra/v_Zebra_g01_c01.avi", "Zebra", "test", "Zebra_01"),
    ]


def test_prepare_command_writes_manifest_classes_and_summary_in_classind_order(tmp_path, capsys):
    root = ucf_tree(tmp_path, ["Zebra", "Apple", "Mango"])
    out = tmp_path / "prepared"
    assert main(["prepare", "ucf101", str(root / "videos"), "--out", str(out)]) == 0
    assert (out / "classes.txt").read_text().split("\n") == ["Zebra", "Apple", "Mango", ""]
    lines = read_rows(out / "manifest.csv")
    assert lines[0] == ["path", "label", "split", "group", "caption"]
    assert lines[1] == ["../videos/Zebra/v_Zebra_g01_c01.avi", "Zebra", "train", "Zebra_01", ""]
    assert lines[7] == ["../videos/Zebra/v_Zebra_g03_c01.avi", "Zebra", "test", "Zebra_03", ""]
    assert len(lines) == 1 + 9
    printed = capsys.readouterr().out
    assert "classes: 3 (Zebra, Apple, Mango)" in printed and "test=3, train=6" in printed
    assert "test=3, train=6" in (out / "summary.txt").read_text()
    assert read_manifest(out / "manifest.csv").videos("test")[1][1] == 1


def hmdb_tree(root: Path) -> Path:
    """Two classes; split 1 marks train (1), test (2) and unused (0) clips."""
    names = {
        "wave": ["FilmA_wave_u_cm_np1_fr_goo_0.avi", "FilmA_wave_u_cm_np1_fr_goo_1.avi",
                 "FilmB_wave_f_nm_np1_ba_med_0.avi"],
        "brush_hair": ["FilmC_brush_hair_u_nm_np1_ba_goo_0.avi", "FilmD_brush_hair_h_cm_np2_le_bad_3.avi"],
    }
    for label, files in names.items():
        for name in files:
            write_video(root / "videos" / label / name, brightness_frames(3, 64))
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text(
        "FilmA_wave_u_cm_np1_fr_goo_0.avi 1 \nFilmA_wave_u_cm_np1_fr_goo_1.avi 1 \n"
        "FilmB_wave_f_nm_np1_ba_med_0.avi 2 \n"
    )
    (splits / "brush_hair_test_split1.txt").write_text(
        "FilmC_brush_hair_u_nm_np1_ba_goo_0.avi 2 \nFilmD_brush_hair_h_cm_np2_le_bad_3.avi 0 \n"
    )
    return root


def test_hmdb51_reads_markers_sorted_classes_and_film_groups(tmp_path):
    root = hmdb_tree(tmp_path)
    manifest = manifest_from_hmdb51(root / "videos", root / "testTrainMulti_7030_splits", fold=1)
    assert manifest.classes == ["brush_hair", "wave"]
    assert rows_of(manifest) == [
        ("brush_hair/FilmC_brush_hair_u_nm_np1_ba_goo_0.avi", "brush_hair", "test", "brush_hair/FilmC"),
        ("wave/FilmA_wave_u_cm_np1_fr_goo_0.avi", "wave", "train", "wave/FilmA"),
        ("wave/FilmA_wave_u_cm_np1_fr_goo_1.avi", "wave", "train", "wave/FilmA"),
        ("wave/FilmB_wave_f_nm_np1_ba_med_0.avi", "wave", "test", "wave/FilmB"),
    ]
    assert manifest.notes == ["brush_hair: 1 videos marked 0 (unused) in split 1"]
    assert all(Path(manifest.resolve(r.path)).is_file() for r in manifest.rows)


def test_hmdb51_split_folder_is_found_beside_the_videos_and_a_missing_fold_named(tmp_path):
    root = hmdb_tree(tmp_path)
    assert len(manifest_from_hmdb51(root / "videos").rows) == 4
    with pytest.raises(ManifestError, match="split2"):
        manifest_from_hmdb51(root / "videos", fold=2)


def test_hmdb51_bad_marker_is_named(tmp_path):
    root = hmdb_tree(tmp_path)
    (root / "testTrainMulti_7030_splits" / "wave_test_split1.txt").write_text("x.avi 7\n")
    with pytest.raises(ManifestError, match="wave_test_split1.txt line 1"):
        manifest_from_hmdb51(root / "videos")


KINETICS_CSV = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,aaa111,14,24,train,0
massaging person's head,bbb222,0,10,train,0
abseiling,ccc333,5,15,train,0
abseiling,ddd444,30,40,val,0
massaging person's head,eee555,7,17,validate,0
"""


def test_kinetics_maps_rows_to_trimmed_names_anywhere_and_reports_missing(tmp_path):
    root = tmp_path / "kinetics"
    write_video(root / "train" / "abseiling" / "aaa111_000014_000024.mp4", brightness_frames(3, 64))
    write_video(root / "train" / "massaging person's head" / "bbb222_000000_000010.avi", brightness_frames(3, 64))
    write_video(root / "val" / "ddd444_000030_000040.mkv", brightness_frames(3, 64))
    write_video(root / "val" / "eee555_000007_000017.mp4", brightness_frames(3, 64))
    (root / "annotations").mkdir()
    (root / "annotations" / "train.csv").write_text(KINETICS_CSV)
    (root / "annotations" / "test.csv").write_text("youtube_id,time_start,time_end,split\nfff666,0,10,test\n")
    manifest = manifest_from_kinetics(root)
    assert manifest.classes == ["abseiling", "massaging person's head"]
    assert sorted(rows_of(manifest)) == sorted([
        ("train/abseiling/aaa111_000014_000024.mp4", "abseiling", "train", "aaa111"),
        ("train/massaging person's head/bbb222_000000_000010.avi", "massaging person's head", "train", "bbb222"),
        ("val/ddd444_000030_000040.mkv", "abseiling", "val", "ddd444"),
        ("val/eee555_000007_000017.mp4", "massaging person's head", "val", "eee555"),
    ])
    assert "1 rows without a label (unlabelled test set) left out" in manifest.notes
    assert "1 of 6 annotated clips not found under" in " ".join(manifest.notes)
    assert "missing: train/abseiling/ccc333_000005_000015" in manifest.notes


def test_kinetics_rejects_an_unsafe_label(tmp_path):
    write_video(tmp_path / "k" / "aaa111_000014_000024.mp4", brightness_frames(3, 64))
    (tmp_path / "k" / "k.csv").write_text("label,youtube_id,time_start,time_end,split\n../evil,aaa111,14,24,train\n")
    with pytest.raises(ManifestError, match="safe path component"):
        manifest_from_kinetics(tmp_path / "k")


def write_frame_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), frame)
    return folder


def jester_tree(root: Path) -> Path:
    frames = root / "20bn-jester-v1"
    for video_id in ("101", "102", "103", "104", "105"):
        write_frame_folder(frames / video_id, brightness_frames(10, 96))
    (frames / "106").mkdir()  # listed but empty
    (root / "jester-v1-labels.csv").write_text("Swiping Left\nSwiping Right\nThumb Up\n")
    (root / "jester-v1-train.csv").write_text("101;Thumb Up\n102;Swiping Left\n103;Swiping Right\n106;Thumb Up\n")
    (root / "jester-v1-validation.csv").write_text("104;Swiping Right\n")
    (root / "jester-v1-test.csv").write_text("105\n")
    return frames


def test_jester_frame_folders_follow_the_label_file(tmp_path):
    manifest = manifest_from_jester(jester_tree(tmp_path))
    assert manifest.classes == ["Swiping Left", "Swiping Right", "Thumb Up"]
    assert rows_of(manifest) == [
        ("101", "Thumb Up", "train", "101"),
        ("102", "Swiping Left", "train", "102"),
        ("103", "Swiping Right", "train", "103"),
        ("104", "Swiping Right", "val", "104"),
    ]
    assert "jester-v1-test.csv: 1 lines without a label left out" in manifest.notes
    assert "missing or empty frame folder: 106 (jester-v1-train.csv)" in manifest.notes


def test_jester_clips_go_through_the_same_samplers_and_transforms(tmp_path):
    out = tmp_path / "prepared"
    assert main(["prepare", "jester", str(jester_tree(tmp_path)), "--out", str(out)]) == 0
    manifest = read_manifest(out / "manifest.csv")
    videos = manifest.videos("train")
    assert [label for _, label in videos] == [2, 0, 1]
    dataset = ClipDataset(videos, clips=ClipSampling(frames=4),
                          transform=ClipTrainPreset(size=64), train=True, on_error="raise")
    batch = next(iter(make_loader(dataset, LoaderOptions(batch_size=3, num_workers=0), shuffle=False)))
    assert batch["video"].shape == (3, 4, 3, 64, 64) and batch["errors"] == []
    assert batch["label"].tolist() == [2, 0, 1]
    # a frame folder decodes as a 12 fps video whose frame t has brightness 10 + 8 t
    assert read_frames(videos[0][0], [0, 9])[:, 0, 0, 0].tolist() == pytest.approx([10, 82], abs=3)


def test_folder_notes_report_hidden_and_empty_folders(tmp_path):
    for cls in ("a", "b"):
        for g in range(1, 5):
            write_video(tmp_path / cls / f"v_{cls}_g{g:02d}_c01.avi", brightness_frames(3, 64))
    (tmp_path / ".cache").mkdir()
    (tmp_path / "empty").mkdir()
    manifest = manifest_from_folders(tmp_path, val_fraction=0.0, test_fraction=0.25)
    assert manifest.notes == [".cache: hidden folder", "empty: no videos"]


def test_prepare_folder_of_real_clips(tmp_path, shared_video, capsys):
    root = tmp_path / "clips"
    for cls, name in (("pancake", "flipping_a_pancake.mkv"), ("ucf", "ucf_like_320x240.avi"),
                      ("short", "short_32frames.mp4")):
        for g in (1, 2):
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / f"v_{cls}_g{g:02d}_c01{Path(name).suffix}").symlink_to(shared_video(name))
    out = tmp_path / "prepared"
    assert main(["prepare", "folder", str(root), "--out", str(out), "--val-fraction", "0",
                 "--test-fraction", "0.5"]) == 0
    lines = read_rows(out / "manifest.csv")[1:]
    assert sorted(line[0] for line in lines) == sorted(
        f"../clips/{c}/v_{c}_g{g:02d}_c01{s}" for c, s in (("pancake", ".mkv"), ("ucf", ".avi"), ("short", ".mp4"))
        for g in (1, 2)
    )
    for cls in ("pancake", "short", "ucf"):
        assert sorted(line[2] for line in lines if line[1] == cls) == ["test", "train"]
    assert (out / "classes.txt").read_text() == "pancake\nshort\nucf\n"


def test_prepare_unknown_root_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", "hmdb51", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    assert "--splits-dir" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_dataset_format_has_a_reader_a_config_choice_and_a_cli_entry(name, tmp_path):
    from videoseq.cli import build_parser, cmd_prepare
    from videoseq.config import DATA_FORMATS, DataConfig

    assert name in DATA_FORMATS and DataConfig(format=name).format == name
    args = build_parser().parse_args(["prepare", name, str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert args.func is cmd_prepare and args.format == name
    with pytest.raises(ManifestError, match="missing"):  # the reader reads the root the config names
        FORMATS[name].read(DataConfig(root=str(tmp_path / "missing"), format=name))


def test_data_format_lists_the_formats_and_the_manifest():
    from videoseq.config import DATA_FORMATS, ConfigError, DataConfig

    assert DATA_FORMATS == ("manifest", *FORMATS)
    with pytest.raises(ConfigError, match="'ucf102' is not one of"):
        DataConfig(format="ucf102")
