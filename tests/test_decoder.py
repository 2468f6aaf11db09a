"""The decoder: real clips, rotation, broken inputs, frame order, frame folders, decode plans."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoseq.video.cameras import capture_frames, open_capture
from videoseq.video.decoder import (
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    VideoInfo,
    VideoReader,
    is_frame_folder,
    read_frames,
    rotate_frames,
    video_info,
)

from conftest import REPO, brightness_frames, write_video


def levels(frames: np.ndarray) -> np.ndarray:
    """Mean brightness of each frame."""
    return frames.reshape(len(frames), -1).mean(axis=1)


def opencv_frames(path: Path, *, auto_orient: bool = True) -> np.ndarray:
    """Every frame of a file read sequentially by OpenCV, as RGB: an independent decoder."""
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1 if auto_orient else 0)
    frames = list(capture_frames(capture))
    capture.release()
    return np.stack(frames)


# --- real clips -------------------------------------------------------------

REAL_CLIPS = [  # name, frames, fps, width, height
    ("flipping_a_pancake.mkv", 310, 30.0, 426, 240),
    ("ucf_like_320x240.avi", 164, 25.0, 320, 240),
    ("short_32frames.mp4", 32, 30.0, 340, 256),
    ("unordered.mov", 4, 32.0, 50, 50),
]


@pytest.mark.parametrize("name, frames, fps, width, height", REAL_CLIPS)
def test_info_and_shapes_of_real_clips(shared_video, name, frames, fps, width, height):
    path = shared_video(name)
    info = video_info(path)
    assert info == VideoInfo(str(path), frames, fps, frames / fps, width, height, 0)
    indices = [0, frames // 3, frames - 1]
    clip = read_frames(path, indices)
    assert clip.shape == (3, height, width, 3)
    assert clip.dtype == np.uint8 and clip.flags["C_CONTIGUOUS"]


def test_real_clip_matches_opencv_sequential_decode(shared_video):
    path = shared_video("short_32frames.mp4")
    expected = opencv_frames(path)
    indices = [31, 0, 17, 17, 5]
    np.testing.assert_allclose(levels(read_frames(path, indices)), levels(expected[indices]), atol=1.0)


def test_last_frame_of_a_packed_b_frame_avi_is_never_a_copy(shared_video):
    """decord sometimes returns a copy of an earlier frame for the last frame of such
    AVIs (UCF101's format); the reader must give the true frame or raise, every time."""
    path = shared_video("ucf_like_320x240.avi")
    reference = opencv_frames(path).astype(int)
    for _ in range(30):
        with VideoReader(path) as reader:
            last = reader.read([0, 54, 163])[2].astype(int)
        assert np.abs(last - reference[163]).mean() < np.abs(last - reference[162]).mean()


def test_unordered_mov_comes_out_in_presentation_order(shared_video):
    path = shared_video("unordered.mov")
    frames = read_frames(path, range(4))
    expected = opencv_frames(path)
    assert frames.shape == expected.shape == (4, 50, 50, 3)
    assert np.abs(frames.astype(int) - expected).max() <= 2


def test_b_frames_come_out_in_presentation_order(tmp_path):
    """H.264 with B-frames stores packets out of order; frames must follow their timestamps."""
    av = pytest.importorskip("av")
    path = tmp_path / "bframes.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.options = {"bf": "3", "g": "12"}
        for frame in brightness_frames(24, 48)[:, :, :48]:
            padded = np.concatenate([frame, frame[:, :16]], axis=1)  # 48x64
            out.mux(stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")))
        out.mux(stream.encode())
    indices = [23, 0, 11, 5, 5, 20]
    got = levels(read_frames(path, indices))
    np.testing.assert_allclose(got, 10 + 8 * np.array(indices), atol=3)
    np.testing.assert_allclose(got, levels(opencv_frames(path)[indices]), atol=1)


# --- rotation ---------------------------------------------------------------

ROTATIONS = [(0, 568, 320), (90, 320, 568), (180, 568, 320), (270, 320, 568)]  # rotation, upright w, h


@pytest.mark.parametrize("rotation, width, height", ROTATIONS)
def test_phone_clips_come_out_upright(shared_video, rotation, width, height):
    path = shared_video(f"video_{rotation}.mov")
    info = video_info(path)
    assert (info.rotation, info.width, info.height, info.num_frames) == (rotation, width, height, 3)
    assert read_frames(path, [0, 1, 2]).shape == (3, height, width, 3)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_upright_frames_are_stored_frames_turned_clockwise(shared_video, rotation):
    """Against OpenCV's frames as stored: only the clockwise turn by the metadata angle fits."""
    path = shared_video(f"video_{rotation}.mov")
    stored = opencv_frames(path, auto_orient=False)
    assert stored.shape == (3, 320, 568, 3)
    decoded = read_frames(path, [0, 1, 2])
    errors = {}
    for candidate in (0, 90, 180, 270):
        turned = rotate_frames(stored, candidate)
        if turned.shape == decoded.shape:
            errors[candidate] = np.abs(turned.astype(int) - decoded).mean()
    assert min(errors, key=errors.get) == rotation
    assert errors[rotation] < 1.0 < 20 < min(e for c, e in errors.items() if c != rotation)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_opencv_capture_is_rotated_once(shared_video, rotation):
    path = shared_video(f"video_{rotation}.mov")
    capture = open_capture(str(path))
    from_capture = np.stack(list(capture_frames(capture)))
    capture.release()
    decoded = read_frames(path, [0, 1, 2])
    assert from_capture.shape == decoded.shape
    assert np.abs(from_capture.astype(int) - decoded).mean() < 1.0


def test_rotate_frames_turns_clockwise():
    frames = np.zeros((1, 2, 3, 3), np.uint8)
    frames[0, 0, 0] = 255  # marker in the top-left corner of a 3 wide, 2 high frame
    turned = rotate_frames(frames, 90)
    assert turned.shape == (1, 3, 2, 3) and turned[0, 0, 1, 0] == 255  # now top-right
    assert rotate_frames(frames, 180)[0, 1, 2, 0] == 255  # bottom-right
    assert rotate_frames(frames, 270)[0, 2, 0, 0] == 255  # bottom-left
    assert rotate_frames(frames, 90).flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError):
        rotate_frames(frames, 45)


# --- broken inputs ----------------------------------------------------------


def assert_decode_error(path: Path, indices=(0,)) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError) as caught:
        read_frames(path, indices)
    assert path.name in str(caught.value) and caught.value.path == str(path)
    return caught.value


def test_corrupted_mp4_raises_typed_error(shared_video):
    path = shared_video("corrupted.mp4")
    error = assert_decode_error(path, range(50))
    assert "DECORDError" not in str(error) and "decod" in error.reason


def test_empty_text_and_missing_files_raise_typed_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    assert "empty" in assert_decode_error(empty).reason
    assert_decode_error(text)
    assert "no such" in assert_decode_error(tmp_path / "missing.mp4").reason
    with pytest.raises(VideoDecodeError):
        video_info(text)


@pytest.mark.parametrize("index", [8, 100, -1])
def test_index_out_of_range_raises_typed_error(tmp_path, index):
    path = write_video(tmp_path / "eight.avi", brightness_frames(8))
    error = assert_decode_error(path, [0, index])
    assert str(index) in error.reason and "8 frames" in error.reason


def test_corrupt_frame_mid_file_raises_instead_of_skipping(tmp_path):
    path = write_video(tmp_path / "broken.avi", brightness_frames(10))
    data = bytearray(path.read_bytes())
    jpeg_starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(jpeg_starts) == 10
    data[jpeg_starts[5] : jpeg_starts[5] + 200] = b"\x5a" * 200  # frame 5 is no JPEG any more
    path.write_bytes(bytes(data))
    with VideoReader(path) as reader:
        with pytest.raises(VideoDecodeError, match="broken.avi"):
            reader.read(range(10))
        # the reader recovers: a frame past the damage still decodes (every MJPG frame is a keyframe)
        np.testing.assert_allclose(levels(reader.read([9])), [82], atol=3)


def test_missing_last_frames_raise_or_are_not_counted(tmp_path):
    """A file whose last packets hold no picture: never a silent copy of an earlier frame."""
    av = pytest.importorskip("av")
    path = tmp_path / "tail.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.options = {"bf": "0"}
        packets = []
        for frame in brightness_frames(10):
            packets += stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))
        packets += stream.encode()
        out.mux(packets)
        step = packets[1].pts - packets[0].pts
        for k in range(1, 4):  # three packets of H.264 filler data: no picture in them
            filler = av.Packet(b"\x00\x00\x00\x04\x0c\xff\xff\x80")
            filler.stream, filler.time_base = stream, packets[0].time_base
            filler.pts = filler.dts = packets[-1].pts + k * step
            filler.duration = step
            out.mux(filler)
    with VideoReader(path) as reader:
        n = reader.info.num_frames
        if n == 10:  # this decoder build does not count the filler packets as frames
            np.testing.assert_allclose(levels(reader.read(range(10))), 10 + 8 * np.arange(10), atol=3)
            return
        assert n == 13
        with pytest.raises(VideoDecodeError, match="tail.mp4"):
            reader.read(range(n))
        with pytest.raises(VideoDecodeError, match="tail.mp4"):
            reader.read([n - 1])


def test_decode_error_pickles_with_its_fields():
    error = VideoDecodeError("/data/a.mp4", "bad packet", "re-encode it")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, copy.hint, str(copy)) == (error.path, error.reason, error.hint, str(error))
    assert isinstance(copy, RuntimeError)


# --- synthetic videos and reuse ---------------------------------------------


def test_synthetic_video_round_trips_any_order_and_repeats(tmp_path):
    path = write_video(tmp_path / "levels.avi", brightness_frames(20), fps=12.0)
    info = video_info(path)
    assert (info.num_frames, info.fps, info.width, info.height, info.rotation) == (20, 12.0, 32, 32, 0)
    indices = [19, 0, 7, 7, 3, 19, 0, 12]
    frames = read_frames(path, indices)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8 and frames.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(levels(frames), 10 + 8 * np.array(indices), atol=3)
    assert read_frames(path, []).shape == (0, 32, 32, 3)


def test_reader_is_reused_for_several_views_and_reopens_after_close(tmp_path):
    path = write_video(tmp_path / "views.avi", brightness_frames(16))
    with VideoReader(path) as reader:
        assert len(reader) == 16
        views = [reader.read(range(start, start + 4)) for start in (12, 0, 6)]
        reader.close()
        again = reader.read([15])
    np.testing.assert_allclose([levels(v)[0] for v in views], [10 + 8 * 12, 10, 10 + 8 * 6], atol=3)
    np.testing.assert_allclose(levels(again), [10 + 8 * 15], atol=3)


def _read_in_child(reader: VideoReader, queue) -> None:
    queue.put(levels(reader.read([9, 2])).tolist())


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork")
def test_reader_opened_before_fork_reads_in_the_child(tmp_path):
    path = write_video(tmp_path / "fork.avi", brightness_frames(12))
    reader = VideoReader(path)
    reader.read([0, 1])  # the decoder thread now runs in this process
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(reader, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("reading in a forked child hung")
    np.testing.assert_allclose(queue.get(timeout=5), [10 + 8 * 9, 10 + 8 * 2], atol=3)
    np.testing.assert_allclose(levels(reader.read([5])), [50], atol=3)


def test_import_opens_nothing_and_sets_the_eof_retry_limit():
    env = {k: v for k, v in os.environ.items() if k != "DECORD_EOF_RETRY_MAX"}
    code = "import os, videoseq.video; print(os.environ['DECORD_EOF_RETRY_MAX'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1024"
    env["DECORD_EOF_RETRY_MAX"] = "4096"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4096"


# --- frame folders ----------------------------------------------------------


def write_frame_folder(folder: Path, frames: np.ndarray, pattern: str = "{:05d}.jpg") -> Path:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / pattern.format(t)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def test_frame_folder_reads_like_a_video(tmp_path):
    frames = brightness_frames(12, 24)
    frames[:, :, :, 0] = 200  # a red cast, to check RGB order
    folder = write_frame_folder(tmp_path / "12345", frames, "frame_{}.png")  # frame_2 before frame_10
    assert is_frame_folder(folder)
    info = video_info(folder)
    assert info == VideoInfo(str(folder), 12, 12.0, 1.0, 24, 24, 0)
    got = read_frames(folder, [11, 0, 9, 9])
    assert got.shape == (4, 24, 24, 3) and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, frames[[11, 0, 9, 9]])
    with VideoReader(folder, frame_folder_fps=25.0) as reader:
        assert reader.info.fps == 25.0 and reader.info.duration == 12 / 25.0


def test_frame_folder_with_an_unreadable_image_names_it(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", brightness_frames(5))
    (folder / "00003.jpg").write_bytes(b"not a jpeg")
    with VideoReader(folder) as reader:
        np.testing.assert_allclose(levels(reader.read([0, 1])), [10, 18], atol=3)
        with pytest.raises(VideoDecodeError, match="00003.jpg"):
            reader.read([4, 2])


def test_is_frame_folder(tmp_path):
    assert not is_frame_folder(tmp_path)  # empty
    (tmp_path / "notes.txt").write_text("x")
    assert not is_frame_folder(tmp_path)
    assert not is_frame_folder(tmp_path / "notes.txt")
    with pytest.raises(VideoDecodeError, match="no .jpg"):
        video_info(tmp_path)
    write_frame_folder(tmp_path / "clip", brightness_frames(2))
    assert is_frame_folder(tmp_path / "clip")


def test_video_extensions():
    assert set(VIDEO_EXTENSIONS) >= {".avi", ".mp4", ".mkv", ".mov", ".webm"}
    assert all(ext.startswith(".") and ext == ext.lower() for ext in VIDEO_EXTENSIONS)


@pytest.mark.parametrize("indices, keyframes, plan", [
    ([3, 40, 100], [0], "sequential"),  # one keyframe: seeking decodes as much, at a higher price
    ([10, 160, 305], [0, 150, 300], "seek"),  # 28 frames x 2.5 = 70 < 306
    ([140, 145, 149], [0, 150, 300], "sequential"),  # all in the first interval
    ([5, 50, 95], list(range(100)), "seek"),  # every frame a keyframe (MJPG): 3 x 2.5 < 96
    ([0, 1, 2], list(range(100)), "sequential"),  # 3 x 2.5 = 7.5 > 3
])
def test_decode_plan_picks_the_cheaper_way(indices, keyframes, plan):
    from videoseq.video.decoder import decode_plan

    assert decode_plan(np.array(indices), np.array(keyframes)) == plan


@pytest.mark.parametrize("name", ["ucf_like_320x240.avi", "flipping_a_pancake.mkv", "video_90.mov"])
def test_sequential_and_seeking_reads_give_the_same_pixels(shared_video, name):
    import decord

    from videoseq.video.decoder import opencv_read_sorted

    path = shared_video(name)
    seeking = decord.VideoReader(str(path), num_threads=1)
    indices = np.unique(np.linspace(0, len(seeking) - 1, 8).astype(np.int64))
    assert np.array_equal(opencv_read_sorted(path, indices), seeking.get_batch(indices.tolist()).asnumpy())


@pytest.mark.parametrize("name", ["ucf_like_320x240.avi", "flipping_a_pancake.mkv"])
def test_a_reader_reopened_with_what_it_knew_reads_the_same_frames(shared_video, name):
    path = shared_video(name)
    with VideoReader(path) as first:
        known = first.known
        indices = [0, 10, 150, 160, first.info.num_frames - 1]
        expected = first.read(indices)
    with VideoReader(path, known=known) as again:
        assert again.info == known[0] and np.array_equal(again.read(indices), expected)


def test_a_png_decodes_in_a_process_that_imports_videoseq_before_opencv(tmp_path):
    # the test process imported OpenCV first (conftest); a command or a decoding worker imports videoseq first
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((40, 30, 3), 120, np.uint8))
    code = ("from videoseq.video.decoder import read_frames; "
            f"print(read_frames({str(image)!r}, [0]).mean(axis=(0, 1, 2)))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[120.", "120.", "120.]"] and "libpng error" not in done.stderr
