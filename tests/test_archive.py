"""The archive loop: every video once, in input order, journaled, resumed, stopped on a signal."""

import os
import signal

import pytest

from videoseq.archive import ArchiveInterrupted, ArchiveOptions, run_archive
from videoseq.journal import JournalError, JournalWriter, journal_header, part_paths, read_journal
from videoseq.reading import FramesAt, ShortSide

from conftest import brightness_frames, write_video


class Brightness:
    """A real job: the mean brightness of every frame of a video (decoded by the workers)."""

    what = "brightness"
    plan = FramesAt(None, chunk=4)
    prepare = ShortSide(1000)

    def __init__(self, stop_after: int | None = None) -> None:
        self.seen, self.stop_after, self.decoded = [], stop_after, 0

    def video(self, path, chunks):
        self.seen.append(path)
        levels = [round(float(frame.mean())) for chunk in chunks for frame in chunk.frames]
        self.decoded += 1
        if self.decoded == self.stop_after:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or torchrun would
        return {"levels": levels}, {}

    def failed(self, path, error):
        return {"levels": []}


@pytest.fixture
def videos(tmp_path):
    """Four videos of 6, 7, 8, 9 frames whose frame t has brightness 10 + 8 t, and a missing one."""
    made = [str(write_video(tmp_path / f"v{n}.avi", brightness_frames(n), fps=6.0)) for n in (6, 7, 8, 9)]
    return made[:2] + [str(tmp_path / "missing.avi")] + made[2:]


def run(job, videos, tmp_path, written, **options):
    return run_archive(job, videos, tmp_path / "out.journal", {"what": "levels"},
                       ArchiveOptions(workers=2, progress=False, **options), write=written.extend,
                       restart="add --overwrite")


def test_every_video_is_done_once_and_written_in_input_order(videos, tmp_path):
    written = []
    assert run(Brightness(), videos, tmp_path, written) == 1
    assert [e.path for e in written] == videos and [e.index for e in written] == [0, 1, 2, 3, 4]
    assert all(abs(level - (10 + 8 * t)) <= 2 for t, level in enumerate(written[0].data["levels"]))  # MJPG
    assert [len(e.data["levels"]) for e in written] == [6, 7, 0, 8, 9]
    assert "no such file" in written[2].error and written[2].data == {"levels": []}
    assert part_paths(tmp_path / "out.journal") == []


def test_a_resume_does_only_what_the_journal_lacks_and_writes_everything(videos, tmp_path):
    header = journal_header({"what": "levels"}, videos)
    earlier = JournalWriter(tmp_path / "out.journal", 3, header)  # a rank of a bigger run, killed after two videos
    earlier.append(1, videos[1], {"levels": [1]})
    earlier.append(4, videos[4], {"levels": [4]})
    earlier.close()
    with pytest.raises(JournalError, match="unfinished run .* add --resume to continue it, or add --overwrite"):
        run(Brightness(), videos, tmp_path, [])
    job, written = Brightness(), []
    run(job, videos, tmp_path, written, resume=True)
    assert sorted(job.seen) == sorted([videos[0], videos[2], videos[3]])
    assert [e.path for e in written] == videos
    assert [e.data["levels"][:1] for e in written][1:3] == [[1], []] and written[4].data == {"levels": [4]}


def test_overwrite_starts_afresh(videos, tmp_path):
    earlier = JournalWriter(tmp_path / "out.journal", 0, journal_header({"what": "other"}, videos))
    earlier.append(0, videos[0], {"levels": [0]})
    earlier.close()
    job, written = Brightness(), []
    run(job, videos, tmp_path, written, overwrite=True)
    assert sorted(job.seen) == sorted(videos) and len(written[0].data["levels"]) == 6


def test_a_signal_stops_after_the_current_video_and_the_journal_keeps_what_was_done(videos, tmp_path):
    written = []
    first = Brightness(stop_after=2)
    with pytest.raises(ArchiveInterrupted, match=r"stopped by SIGTERM: [23] of 5 videos are in the journal") as stop:
        run(first, videos, tmp_path, written)
    assert stop.value.exit_status == 143 and written == []
    (part,) = read_journal(tmp_path / "out.journal")
    journaled = [e.path for e in part.entries]
    assert sorted(first.seen) == sorted(journaled) and first.decoded == 2  # (and the missing file if it came first)
    job = Brightness()
    run(job, videos, tmp_path, written, resume=True)
    assert sorted(job.seen + first.seen) == sorted(videos) and [e.path for e in written] == videos
