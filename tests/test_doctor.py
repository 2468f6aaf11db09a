import csv
import json
from pathlib import Path

import cv2

from videoseq.cli import main
from videoseq.doctor import diagnose, load_target
from videoseq.manifest import read_manifest, write_manifest
from videoseq.prepare import manifest_from_ucf101

from conftest import brightness_frames, write_video

GOOD = [f"{c}/v_{c}_g{g:02d}_c01.avi" for c in ("Run", "Jump") for g in (1, 2, 3)]
BROKEN = {  # listed path -> (check, words of the reason)
    "Run/v_Run_g04_c01.mp4": ("unreadable", "decoding frames"),  # ../shared/videos/corrupted.mp4
    "Jump/v_Jump_g04_c01.avi": ("truncated", "the file is truncated"),  # first 60% of a real AVI
    "Jump/v_Jump_g05_c01.avi": ("unreadable", "empty (0 bytes)"),
    "Run/v_Run_g05_c01.mp4": ("unreadable", "decord cannot open it"),  # a text file
    "Run/v_Run_g06_c01.avi": ("missing", "not on disk"),
    "Run/v_Run_g01_c02.avi": ("group_leak", "group 'Run_01' is in train and in ['test']"),
}


def broken_ucf_tree(root: Path, shared_video) -> Path:
    """UCF101 layout: six sound clips, the broken cases above, one unlisted clip; classInd not sorted."""
    videos = root / "videos"
    for rel in GOOD + ["Run/v_Run_g01_c02.avi", "Jump/v_Jump_g09_c01.avi"]:
        write_video(videos / rel, brightness_frames(16, 64))
    (videos / "Run" / "v_Run_g04_c01.mp4").symlink_to(shared_video("corrupted.mp4"))
    real = shared_video("ucf_like_320x240.avi").read_bytes()
    (videos / "Jump" / "v_Jump_g04_c01.avi").write_bytes(real[: len(real) * 6 // 10])
    (videos / "Jump" / "v_Jump_g05_c01.avi").write_bytes(b"")
    (videos / "Run" / "v_Run_g05_c01.mp4").write_text("this is not a video\n")
    splits = root / "splits"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 Run\n2 Jump\n")
    train = [rel for rel in GOOD if "_g03_" not in rel]
    test = [rel for rel in GOOD if "_g03_" in rel] + list(BROKEN)
    (splits / "trainlist01.txt").write_text("".join(f"{rel}\n" for rel in train))
    (splits / "testlist01.txt").write_text("".join(f"{rel}\n" for rel in test))
    return videos


def read_csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_doctor_reports_each_broken_file_and_writes_a_clean_manifest(tmp_path, shared_video, capsys):
    videos = broken_ucf_tree(tmp_path, shared_video)
    prepared = tmp_path / "prepared"
    assert main(["prepare", "ucf101", str(videos), "--out", str(prepared)]) == 1  # 1 of 13 listed files missing
    assert "v_Run_g06_c01.avi" in capsys.readouterr().err and not prepared.exists()
    write_manifest(manifest_from_ucf101(videos), prepared)  # the reader's rows, the missing one kept
    clean = tmp_path / "clean" / "clean.csv"
    code = main(["doctor", str(prepared / "manifest.csv"), "--workers", "2", "--out", str(tmp_path / "report"),
                 "--write-clean", str(clean)])
    assert code == 1
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "doctor.json").read_text())
    errors = {f["path"].split("videos/")[-1]: f for f in report["findings"] if f["severity"] == "error"}
    assert set(errors) == set(BROKEN)
    for rel, (check, reason) in BROKEN.items():
        assert errors[rel]["check"] == check and reason in errors[rel]["message"], rel
        assert reason in printed
    warnings = {(f["check"], f["path"].split("videos/")[-1]) for f in report["findings"] if f["severity"] == "warning"}
    assert ("unlisted", "Jump/v_Jump_g09_c01.avi") in warnings
    assert any(check == "class_order" for check, _ in warnings)
    # the clean manifest is the prepared one without exactly the broken rows
    kept = [r["path"] for r in read_csv_rows(clean)]
    assert kept == [f"../videos/{rel}" for rel in GOOD if "_g03_" not in rel] + [
        f"../videos/{rel}" for rel in GOOD if "_g03_" in rel
    ]
    assert read_manifest(clean).classes == ["Run", "Jump"]
    assert report["stats"]["frames"] == {"min": 16.0, "median": 16.0, "max": 16.0}
    assert report["stats"]["resolution"] == {"64x64": 7}  # the leaked clip itself is sound


def test_doctor_on_the_clean_manifest_passes_and_on_a_root_finds_the_same(tmp_path, shared_video, capsys):
    videos = broken_ucf_tree(tmp_path, shared_video)
    code = main(["doctor", str(videos), "--workers", "2", "--out", str(tmp_path / "r1"),
                 "--write-clean", str(tmp_path / "clean.csv")])
    assert code == 1
    assert len(read_csv_rows(tmp_path / "clean.csv")) == len(GOOD)
    assert main(["doctor", str(tmp_path / "clean.csv"), "--out", str(tmp_path / "r2")]) == 0
    report = json.loads((tmp_path / "r2" / "doctor.json").read_text())
    assert [f for f in report["findings"] if f["severity"] == "error"] == []


def test_doctor_flags_unknown_labels_duplicates_and_short_videos(tmp_path):
    for name, frames in (("a1.avi", 16), ("a2.avi", 16), ("b1.avi", 5)):
        write_video(tmp_path / "v" / name, brightness_frames(frames, 64))
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "manifest.csv").write_text(
        "path,label,split\nv/a1.avi,a,train\nv/a2.avi,zebra,train\nv/b1.avi,b,test\nv/a1.avi,a,test\n"
    )
    manifest, _ = load_target(tmp_path / "manifest.csv")
    report = diagnose(manifest, min_frames=8, workers=1, progress=False)
    found = {(f.check, f.path, tuple(f.rows)) for f in report.errors()}
    assert found == {("unknown_label", "v/a2.avi", (1,)), ("duplicate", "v/a1.avi", (3,)),
                     ("short", "v/b1.avi", (2,)), ("group_leak", "v/a1.avi", (3,))}
    assert "zebra" in next(f.message for f in report.errors() if f.check == "unknown_label")


def test_doctor_checks_every_image_of_a_frame_folder(tmp_path):
    for video_id in ("1", "2"):
        folder = tmp_path / "frames" / video_id
        folder.mkdir(parents=True)
        for t in range(1, 9):
            cv2.imwrite(str(folder / f"{t:05d}.jpg"), brightness_frames(1, 64)[0])
    (tmp_path / "frames" / "2" / "00007.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "classes.txt").write_text("x\n")
    (tmp_path / "manifest.csv").write_text("path,label,split\nframes/1,x,train\nframes/2,x,test\n")
    manifest, _ = load_target(tmp_path)
    report = diagnose(manifest, workers=1, progress=False)
    assert [(f.check, f.path) for f in report.errors()] == [("unreadable", "frames/2")]
    assert "00007.jpg" in report.errors()[0].message


def test_doctor_kills_a_file_check_that_overruns(tmp_path, shared_video):
    """With a time limit too short for any check, every file is reported, none hangs the run."""
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "clip.mkv").symlink_to(shared_video("flipping_a_pancake.mkv"))
    (tmp_path / "classes.txt").write_text("x\n")
    (tmp_path / "manifest.csv").write_text("path,label,split\nv/clip.mkv,x,train\n")
    manifest, _ = load_target(tmp_path / "manifest.csv")
    report = diagnose(manifest, workers=1, timeout=0.001, progress=False)
    overran = ("unreadable", "took longer than 0.001 s and was stopped")
    assert [(f.check, f.message) for f in report.errors()] == [overran]
