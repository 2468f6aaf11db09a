"""The shard-cache machinery shared by the feature and frame caches."""

from videoseq.cache import estimate_bytes

from conftest import brightness_frames, write_video


def test_the_size_estimate_reads_videos_spread_over_the_whole_list(tmp_path):
    videos = [str(write_video(tmp_path / f"v{n}.avi", brightness_frames(n))) for n in (3, 5, 9, 2, 4)]
    assert estimate_bytes(videos, None, lambda reader: 10) == (23, 230)  # every video read
    # two of five, the first and the last: (3 + 4) / 2 frames per video
    assert estimate_bytes(videos, None, lambda reader: 10, sample=2) == (17, 175)
    assert estimate_bytes([], None, lambda reader: 10) == (0, 0)
