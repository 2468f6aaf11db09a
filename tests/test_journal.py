"""Journals: one flushed line per finished video, fsyncs, torn tails, arrays beside, and what a resume must match."""

import os

import numpy as np
import pytest

from videoseq.journal import (
    JournalError,
    JournalWriter,
    check_parts,
    journal_header,
    part_paths,
    read_journal,
    read_part,
    remove_journal,
)


@pytest.fixture
def videos(tmp_path):
    paths = []
    for name in ("a.avi", "b.avi", "c.avi"):
        (tmp_path / name).write_bytes(name.encode())
        paths.append(str(tmp_path / name))
    return paths


def test_entries_and_arrays_read_back_as_written(tmp_path, videos):
    base, header = tmp_path / "out.csv.journal", journal_header({"topk": 3}, videos)
    writer = JournalWriter(base, 0, header)
    features = np.arange(12, dtype=np.float16).reshape(3, 4)
    writer.append(2, videos[2], {"rows": [[videos[2], "Grow", 0.123456]]}, arrays={"shard": features})
    writer.append(0, videos[0], {"rows": []}, error="cannot decode a.avi")
    writer.close()
    (part,) = read_journal(base)
    assert part.path == tmp_path / "out.csv.journal-0.jsonl" and part.header == header
    first, second = part.entries
    assert (first.index, first.data, first.error) == (2, {"rows": [[videos[2], "Grow", 0.123456]]}, "")
    assert np.array_equal(first.load_arrays()["shard"], features) and first.load_arrays()["shard"].dtype == np.float16
    assert second.error == "cannot decode a.avi" and second.stamp == [5, os.stat(videos[0]).st_mtime_ns]


def test_a_line_cut_short_by_a_kill_is_ignored_then_cut_off_when_the_part_resumes(tmp_path, videos):
    base, header = tmp_path / "j", journal_header({}, videos)
    writer = JournalWriter(base, 1, header)
    writer.append(0, videos[0], {"n": 0}, arrays={"frames": np.ones(5, np.uint8)})
    writer.close()
    part = tmp_path / "j-1.jsonl"
    with part.open("ab") as f:
        f.write(b'{"index":1,"path":"b.av')  # the kill came mid-line
    with (tmp_path / "j-1.bin").open("ab") as f:
        f.write(b"\x07" * 9)  # and after the arrays of an entry that never got its line
    assert [e.index for e in read_part(part).entries] == [0]
    writer = JournalWriter(base, 1, header)
    writer.append(1, videos[1], {"n": 1}, arrays={"frames": np.full(3, 2, np.uint8)})
    writer.close()
    entries = read_part(part).entries
    assert [e.index for e in entries] == [0, 1] and part.read_bytes().endswith(b"}\n")
    assert entries[1].arrays["frames"][0] == 5 and entries[1].load_arrays()["frames"].tolist() == [2, 2, 2]
    assert (tmp_path / "j-1.bin").stat().st_size == 8


def test_lines_are_readable_at_once_and_fsynced_once_a_second_and_at_close(tmp_path, videos, monkeypatch):
    import videoseq.journal as journal

    synced = []
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append(fd))
    base = tmp_path / "j"
    writer = JournalWriter(base, 0, journal_header({}, videos))
    synced.clear()  # the header's own (outputs.atomic_output)
    for i in range(3):  # well within a second: flushed for any reader (a SIGKILL loses none), no fsync yet
        writer.append(i, videos[i], {"n": i})
        assert [e.index for e in read_part(tmp_path / "j-0.jsonl").entries] == list(range(i + 1))
    assert synced == []
    writer.synced -= journal.SYNC_EVERY  # a second later
    writer.append(0, videos[0], {"n": 3})
    assert len(synced) == 1
    writer.append(1, videos[1], {"n": 4}, arrays={"x": np.zeros(2)})  # arrays: on disk before their line
    assert len(synced) == 2
    writer.close()
    assert len(synced) == 3


def test_a_part_killed_before_its_header_was_written_starts_afresh(tmp_path, videos):
    (tmp_path / "j-0.jsonl").write_bytes(b'{"format": "videoseq-jo')
    assert read_part(tmp_path / "j-0.jsonl").header is None
    writer = JournalWriter(tmp_path / "j", 0, journal_header({}, videos))
    writer.close()
    assert read_part(tmp_path / "j-0.jsonl").header["inputs"] == 3


def test_parts_of_every_rank_are_found_and_removed(tmp_path, videos):
    header = journal_header({}, videos)
    for rank in (1, 0, 10):
        JournalWriter(tmp_path / "j", rank, header).close()
    (tmp_path / "j-x.jsonl").write_text("")  # not a part
    assert [p.name for p in part_paths(tmp_path / "j")] == ["j-0.jsonl", "j-1.jsonl", "j-10.jsonl"]
    remove_journal(tmp_path / "j")
    assert part_paths(tmp_path / "j") == [] and (tmp_path / "j-x.jsonl").exists()


def test_a_resume_must_have_the_same_settings_inputs_and_unchanged_files(tmp_path, videos):
    header = journal_header({"topk": 3, "window": None}, videos)
    writer = JournalWriter(tmp_path / "j", 0, header)
    writer.append(1, videos[1], {})
    writer.close()
    parts = read_journal(tmp_path / "j")
    check_parts(parts, header, videos, "add --overwrite")
    with pytest.raises(JournalError, match=r"other settings \(topk: journal 3 vs now 5\); .* add --overwrite"):
        check_parts(parts, journal_header({"topk": 5, "window": None}, videos), videos, "add --overwrite")
    others = [videos[0], videos[2]]
    with pytest.raises(JournalError, match=r"other inputs \(2 now, 3 then; input #1 was .*b.avi, is now .*c.avi"):
        check_parts(parts, journal_header({"topk": 3, "window": None}, others), others, "add --overwrite")
    os.utime(videos[1], ns=(1, 1))
    with pytest.raises(JournalError, match="b.avi changed since"):
        check_parts(parts, header, videos, "add --overwrite")
