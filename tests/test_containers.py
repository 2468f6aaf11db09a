"""Container inspection from the bytes alone: RIFF, ISO boxes and EBML that declare more than the file holds."""

from pathlib import Path

import pytest

from videoseq.video.containers import container_truncation


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def riff(declared: int, payload: bytes) -> bytes:
    return b"RIFF" + declared.to_bytes(4, "little") + payload


def box(kind: bytes, payload: bytes, declared: int | None = None) -> bytes:
    return (declared if declared is not None else 8 + len(payload)).to_bytes(4, "big") + kind + payload


EBML_HEADER = b"\x1a\x45\xdf\xa3" + b"\x84" + b"\x42\x86\x81\x01"  # an EBML element of 4 bytes
SEGMENT = b"\x18\x53\x80\x67"


def test_a_whole_riff_file_passes_and_a_cut_one_names_the_declared_size(tmp_path):
    whole = riff(12, b"AVI " + b"\x00" * 8)  # 8 + 12 bytes: exactly the file
    assert container_truncation(write(tmp_path / "whole.avi", whole)) is None
    cut = riff(100, b"AVI " + b"\x00" * 8)
    assert container_truncation(write(tmp_path / "cut.avi", cut)) == "a RIFF chunk declares 108 bytes, the file has 20"


def test_iso_boxes_are_walked_to_the_end_of_the_file(tmp_path):
    whole = box(b"ftyp", b"isom\x00\x00\x02\x00") + box(b"mdat", b"\x00" * 16)
    assert container_truncation(write(tmp_path / "whole.mp4", whole)) is None
    cut = box(b"ftyp", b"isom\x00\x00\x02\x00") + box(b"mdat", b"\x00" * 16, declared=1000)
    expected = "box 'mdat' at byte 16 declares 1000 bytes, 24 remain"
    assert container_truncation(write(tmp_path / "cut.mp4", cut)) == expected
    impossible = box(b"ftyp", b"isom\x00\x00\x02\x00") + box(b"moov", b"", declared=4)
    assert "impossible size 4" in container_truncation(write(tmp_path / "bad.mp4", impossible))


def test_an_ebml_segment_of_known_size_must_fit_and_one_of_unknown_size_is_not_judged(tmp_path):
    # Segment payload size 16 (one-byte size 0x90) after 13 bytes: it needs 30 bytes
    whole = EBML_HEADER + SEGMENT + b"\x90" + b"\x00" * 16
    assert container_truncation(write(tmp_path / "whole.mkv", whole)) is None
    cut = EBML_HEADER + SEGMENT + b"\x90" + b"\x00" * 6
    assert container_truncation(write(tmp_path / "cut.mkv", cut)) == "its Segment declares 30 bytes, the file has 20"
    live = EBML_HEADER + SEGMENT + b"\x01" + b"\xff" * 7 + b"\x00" * 4  # unknown size: a live recording
    assert container_truncation(write(tmp_path / "live.webm", live)) is None


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x00 not a container", b"GIF89a" + b"\x00" * 20])
def test_other_bytes_are_not_judged(tmp_path, data):
    assert container_truncation(write(tmp_path / "other.bin", data)) is None
