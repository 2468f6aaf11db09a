"""Decoding ahead: videos in order, each chunk once, a bounded number waiting, a crash costing one video."""

import shutil

import numpy as np
import pytest
from crashing_decoder import read_or_crash

from videoseq.prefetch import Prefetcher
from videoseq.reading import ChunkRequest, Crop, VideoViews, Windows, read_chunk
from videoseq.sampling import ClipSampling
from videoseq.video.decoder import VideoDecodeError

from conftest import brightness_frames, write_video

CLIPS = ClipSampling(frames=3, method="uniform")


@pytest.fixture
def videos(tmp_path):
    """Five videos of 10 to 50 frames at 10 fps: 1 to 5 one-second windows every second."""
    return [str(write_video(tmp_path / f"v{n}.avi", brightness_frames(10 * n, 32), fps=10.0)) for n in range(1, 6)]


def test_videos_come_in_order_with_every_chunk_once_and_at_most_ahead_waiting(videos):
    plan = Windows(CLIPS, window=1, stride=1, chunk=2)
    seen, waiting = [], []
    with Prefetcher(videos, plan, Crop(16), workers=2, ahead=3) as prefetcher:
        for position, path, chunks in prefetcher:
            for chunk in chunks:
                waiting.append(prefetcher.pool.busy + len(prefetcher.results))
                alone = read_chunk(ChunkRequest(path, plan, Crop(16), chunk.number))
                assert np.array_equal(chunk.frames, alone.frames) and np.array_equal(chunk.spans, alone.spans)
                seen.append((position, path, chunk.number))
    assert seen == [(v, videos[v], c) for v in range(5) for c in range((v + 2) // 2)]  # 1, 1, 2, 2, 3 chunks
    assert max(waiting) <= 3 + 1


def test_a_video_that_crashes_its_worker_raises_for_itself_and_the_rest_go_on(videos, tmp_path):
    crashing = tmp_path / "CRASH.avi"
    shutil.copy(videos[0], crashing)
    paths = [videos[0], str(crashing), videos[1]]
    results = {}
    with Prefetcher(paths, VideoViews(CLIPS), Crop(16), workers=1, read=read_or_crash) as prefetcher:
        for _, path, chunks in prefetcher:
            try:
                results[path] = [chunk.frames.shape for chunk in chunks]
            except VideoDecodeError as err:
                results[path] = str(err)
    assert results[videos[0]] == [(1, 3, 16, 16, 3)] and results[videos[1]] == [(1, 3, 16, 16, 3)]
    assert "the worker process died (SIGSEGV)" in results[str(crashing)] and str(crashing) in results[str(crashing)]


def test_a_video_left_half_read_is_dropped_and_a_missing_file_is_its_own_error(videos, tmp_path):
    plan = Windows(CLIPS, window=1, stride=1, chunk=1)
    paths = [videos[4], str(tmp_path / "missing.avi"), videos[2]]
    got = []
    with Prefetcher(paths, plan, Crop(16), workers=2) as prefetcher:
        for _, path, chunks in prefetcher:
            try:
                got.append((path, next(chunks).number))  # only the first of five chunks of videos[4]
            except VideoDecodeError as err:
                got.append((path, "no such file" in str(err)))
    assert got == [(videos[4], 0), (paths[1], True), (videos[2], 0)]
