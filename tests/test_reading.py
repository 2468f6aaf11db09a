"""Read plans: which frames each unit needs, how units are cut into requests, and what a request brings back."""

import numpy as np
import pytest

from videoseq.reading import ChunkRequest, Crop, FramesAt, ShortSide, VideoViews, Windows, read_chunk
from videoseq.sampling import ClipSampling
from videoseq.transcode import resampled_indices
from videoseq.transforms import ClipEvalPreset
from videoseq.video.decoder import VideoInfo, read_frames

from conftest import brightness_frames, write_video

CLIPS = ClipSampling(frames=4, method="uniform")


def info(num_frames: int, fps: float) -> VideoInfo:
    return VideoInfo("v.avi", num_frames, fps, num_frames / fps, 320, 240, 0)


def test_windows_worked_example_of_the_module_docstring():
    indices, spans = Windows(CLIPS, window=2, stride=1, chunk=4).units(info(164, 25.0))
    starts = [0, 25, 50, 75, 100, 114]
    assert indices[:, 0].tolist() == starts and indices[:, -1].tolist() == [s + 49 for s in starts]
    assert np.allclose(spans, [(s / 25, (s + 50) / 25) for s in starts])
    assert -(-len(indices) // 4) == 2  # two requests: windows 0-3 and 4-5


def test_a_short_last_window_and_a_short_video_are_sampled_inside_themselves():
    indices, spans = Windows(CLIPS, window=2, stride=2).units(info(30, 10.0))  # 20-frame windows: 0 and 10
    assert indices.tolist() == [[0, 6, 13, 19], [10, 16, 23, 29]] and spans.tolist() == [[0, 2], [1, 3]]
    indices, spans = Windows(CLIPS, window=5, stride=1).units(info(3, 10.0))  # one window: the whole video
    assert indices.tolist() == [[0, 1, 2, 0]] and spans.tolist() == [[0.0, 0.3]]  # the short video loops


def test_views_and_frames_at_a_rate():
    views, spans = VideoViews(ClipSampling(frames=3, method="segment"), views=2).units(info(12, 12.0))
    assert views.shape == (2, 3) and spans is None
    frames, _ = FramesAt(fps=6).units(info(12, 12.0))
    assert frames[:, 0].tolist() == resampled_indices(12, 12.0, 6).tolist() == [0, 2, 4, 6, 8, 10]


def test_a_request_decodes_its_chunk_of_windows_and_crops_them_like_the_eval_preset(tmp_path):
    video = write_video(tmp_path / "v.avi", brightness_frames(30, 64), fps=10.0)
    plan = Windows(CLIPS, window=1, stride=0.5, chunk=2)  # 10-frame windows every 5: starts 0, 5, 10, 15, 20
    chunks = [read_chunk(ChunkRequest(str(video), plan, Crop(32), number)) for number in range(3)]
    assert [c.chunks for c in chunks] == [3, 3, 3] and [len(c.frames) for c in chunks] == [2, 2, 1]
    assert [c.first_unit for c in chunks] == [0, 2, 4] and chunks[2].spans.tolist() == [[2.0, 3.0]]
    indices, _ = plan.units(chunks[0].info)
    decoded = read_frames(video, indices[2:4].reshape(-1)).reshape(2, 4, 64, 64, 3)
    expected = np.stack([ClipEvalPreset(size=32)(clip, 0)[0] for clip in decoded])
    assert chunks[1].frames.shape == (2, 4, 32, 32, 3) and np.array_equal(chunks[1].frames, expected)


@pytest.mark.parametrize("short_side, shape", [(32, (12, 32, 32, 3)), (100, (12, 64, 64, 3))])
def test_frames_for_the_frame_cache_are_resized_only_when_larger(tmp_path, short_side, shape):
    video = write_video(tmp_path / "v.avi", brightness_frames(12, 64), fps=12.0)
    chunk = read_chunk(ChunkRequest(str(video), FramesAt(None, chunk=256), ShortSide(short_side)))
    assert chunk.frames.shape == shape and chunk.chunks == 1 and chunk.spans is None
