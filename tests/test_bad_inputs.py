"""Bad inputs, one policy: every file decodes to the right frames or raises VideoDecodeError naming it.

The matrix is built from synthetic videos (lossless FFV1, so "the right frames" means
equal bytes), byte-truncated copies of the real clips and ../shared/videos/corrupted.mp4.
A fuzz test mutates bytes of the real clips; decoding runs in a child process
(``IsolatedDecoder``) or DataLoader workers, so a decoder crash could not take the
test process down, and every failure must be the typed error.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from videoseq.config import load_config
from videoseq.datasets import ClipDataset, LoaderOptions, make_loader
from videoseq.engine.loops import TooManyBadVideos
from videoseq.engine.trainer import fit
from videoseq.manifest import ManifestError, read_manifest
from videoseq.predict_files import expand_sources
from videoseq.prepare import manifest_from_folders
from videoseq.sampling import ClipSampling
from videoseq.transforms import ClipEvalPreset
from videoseq.video.containers import container_truncation
from videoseq.video.decoder import VideoDecodeError, VideoReader, read_frames
from videoseq.video.isolated import IsolatedDecoder

from conftest import brightness_frames, shared_clip, shared_clips, write_video

av = pytest.importorskip("av")


def write_lossless(path: Path, frames: np.ndarray, *, pix_fmt: str = "bgr0", pts_ms: list[int] | None = None) -> Path:
    """FFV1 in Matroska: frames come back byte for byte. ``frames`` RGB (T, H, W, 3) or gray (T, H, W)."""
    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for t, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="gray" if array.ndim == 2 else "rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[t], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def pattern_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames whose pixels say where they are: R = x, G = y, B = 20 t (mod 256)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([x % 256, y % 256, np.full_like(x, 20 * t)], -1) for t in range(num_frames)]
    return np.stack(frames).astype(np.uint8)


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path




def truncated_copy(tmp_path: Path, name: str, fraction: float) -> Path:
    data = shared_clip(name).read_bytes()
    path = tmp_path / f"cut{int(fraction * 100)}_{name}"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def assert_typed_error(path: Path, match: str = "") -> VideoDecodeError:
    """Opening and reading ``path`` raises VideoDecodeError naming it (and ``match`` in the reason)."""
    with pytest.raises(VideoDecodeError) as caught:
        with VideoReader(path) as reader:
            reader.read(range(reader.info.num_frames))
    assert caught.value.path == str(path) and path.name in str(caught.value)
    assert match in caught.value.reason
    return caught.value


# --- files that decode, to exactly the frames written -----------------------------


def test_odd_size_321x241_decodes_exactly(tmp_path):
    frames = pattern_frames(5, 241, 321)
    path = write_lossless(tmp_path / "odd.mkv", frames)
    with VideoReader(path) as reader:
        assert (reader.info.width, reader.info.height, reader.info.num_frames) == (321, 241, 5)
        np.testing.assert_array_equal(reader.read(range(5)), frames)


def test_grayscale_comes_out_as_equal_rgb_channels(tmp_path):
    gray = (10 + 30 * np.arange(6)[:, None, None] + np.zeros((6, 48, 64))).astype(np.uint8)
    gray[:, :, :10] = 255  # a bright band on the left, to catch a transposed or mirrored read
    path = write_lossless(tmp_path / "gray.mkv", gray, pix_fmt="gray")
    np.testing.assert_array_equal(read_frames(path, range(6)), np.repeat(gray[..., None], 3, axis=-1))


def test_one_frame_video_decodes_and_loops_into_a_clip(tmp_path):
    frames = pattern_frames(1, 32, 32)
    path = write_lossless(tmp_path / "one.mkv", frames)
    np.testing.assert_array_equal(read_frames(path, [0, 0]), np.concatenate([frames, frames]))
    dataset = ClipDataset([(str(path), 0)], clips=ClipSampling(frames=4),
                          transform=ClipEvalPreset(size=32), train=False)
    clip = dataset[0]["video"]  # (4, 3, 32, 32): the one frame four times
    assert clip.shape == (4, 3, 32, 32) and all(torch.equal(clip[0], c) for c in clip)


def test_variable_frame_rate_gives_every_frame_in_order(tmp_path):
    frames = np.stack([np.full((32, 32, 3), 10 + 20 * t, np.uint8) for t in range(8)])
    gaps_ms = [0, 40, 100, 300, 320, 700, 740, 1200]  # 40 ms to 460 ms between frames
    path = write_lossless(tmp_path / "vfr.mkv", frames, pts_ms=gaps_ms)
    with av.open(str(path)) as container:
        written = [f.pts for f in container.decode(video=0)]
    assert len(set(np.diff(written))) > 2, f"the file is not variable-rate: pts {written}"
    with VideoReader(path) as reader:
        assert reader.info.num_frames == 8
        np.testing.assert_array_equal(reader.read(range(8)), frames)


def test_rotated_phone_clip_comes_out_upright():
    with VideoReader(shared_clip("video_90.mov")) as reader:
        info = reader.info
        frames = reader.read(range(info.num_frames))
    assert info.rotation == 90 and info.height > info.width
    assert frames.shape == (info.num_frames, info.height, info.width, 3)


def test_truncated_matroska_is_refused_even_though_its_frames_would_decode(tmp_path):
    path = truncated_copy(tmp_path, "flipping_a_pancake.mkv", 0.6)
    assert "Segment declares" in container_truncation(path)
    assert_typed_error(path, "truncated")


# --- files that raise the typed error ------------------------------------------------


@pytest.mark.parametrize("name", ["short_32frames.mp4", "ucf_like_320x240.avi", "flipping_a_pancake.mkv",
                                  "video_90.mov"])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9, 0.99])
def test_byte_truncated_real_clips_raise_the_typed_error(tmp_path, name, fraction):
    """A cut-off MPEG-4 AVI used to decode with a half-grey last picture and no error."""
    assert_typed_error(truncated_copy(tmp_path, name, fraction))


def test_whole_real_clips_are_not_called_truncated():
    for path in shared_clips():
        assert container_truncation(path) is None, path


def make_broken(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A broken input of the matrix and a word its error reason must contain."""
    if kind == "corrupt":
        return shared_clip("corrupted.mp4"), "decod"
    if kind == "empty":
        path = tmp_path / "empty.avi"
        path.touch()
        return path, "empty"
    if kind == "text":
        path = tmp_path / "notes.mp4"
        path.write_text("id,label\n1,=HYPERLINK(\"x\")\n")
        return path, "cannot open"
    if kind == "image":
        path = tmp_path / "still.avi"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
        return path, "cannot open"
    if kind == "audio_only":
        return write_audio_only(tmp_path / "speech.m4a"), "video stream"
    if kind == "missing":
        return tmp_path / "gone.mp4", "no such file"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["corrupt", "empty", "text", "image", "audio_only", "missing"])
def test_broken_inputs_raise_the_typed_error_naming_the_file(tmp_path, kind):
    path, word = make_broken(kind, tmp_path)
    assert_typed_error(path, word)
    dataset = ClipDataset([(str(path), 0)], clips=ClipSampling(frames=4),
                          transform=ClipEvalPreset(size=16), train=False)
    sample = dataset[0]  # data.on_error: skip -> an error sample, not an exception
    assert sample["video"] is None and str(path) in sample["error"]


def test_labels_not_in_the_class_list_are_named(tmp_path):
    (tmp_path / "classes.txt").write_text("wave\nclap\n")
    (tmp_path / "manifest.csv").write_text("path,label,split\na.avi,wave,train\nb.avi,jump,train\n")
    with pytest.raises(ManifestError, match=r"not in the class list: \['jump'\]"):
        read_manifest(tmp_path / "manifest.csv")


def test_hidden_folders_and_files_are_never_listed(tmp_path):
    frames = brightness_frames(4)
    for rel in ["wave/a_g01_.avi", "wave/b_g02_.avi", "clap/c_g01_.avi", "clap/d_g02_.avi",
                ".trash/e_g01_.avi", "wave/._a_g01_.avi", "clap/.cache/f.avi"]:
        write_video(tmp_path / rel, frames)
    manifest = manifest_from_folders(tmp_path, val_fraction=0, test_fraction=0.5)
    assert manifest.classes == ["clap", "wave"]
    assert sorted(r.path for r in manifest.rows) == ["clap/c_g01_.avi", "clap/d_g02_.avi", "wave/a_g01_.avi",
                                                     "wave/b_g02_.avi"]
    found = [Path(p).relative_to(tmp_path).as_posix() for p in expand_sources([str(tmp_path)])]
    assert sorted(found) == ["clap/c_g01_.avi", "clap/d_g02_.avi", "wave/a_g01_.avi", "wave/b_g02_.avi"]


# --- a training epoch over a dataset with 10% bad files ------------------------------


def bad_manifest(tmp_path: Path, bad_kinds: list[str]) -> tuple[Path, list[str]]:
    """18 good training clips plus the given broken ones, and 3 good validation clips."""
    rows, bad = [], []
    for i in range(21):
        frames = brightness_frames(8) if i % 2 else brightness_frames(8)[::-1].copy()
        path = write_video(tmp_path / f"clip{i:02d}.avi", frames)
        rows.append((path.name, "up" if i % 2 else "down", "train" if i < 18 else "test"))
    for i, kind in enumerate(bad_kinds):
        folder = tmp_path / f"bad{i}"
        folder.mkdir()
        if kind == "truncated":
            path = folder / "cut.avi"
            path.write_bytes((tmp_path / "clip00.avi").read_bytes()[:900])
        else:
            path, _ = make_broken(kind, folder)
        rows.append((os.path.relpath(path, tmp_path), "up", "train"))
        bad.append(os.path.normpath(tmp_path / rows[-1][0]))
    (tmp_path / "classes.txt").write_text("down\nup\n")
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    return tmp_path / "manifest.csv", bad


def bad_config(manifest: Path):
    return load_config(None, [
        f"data.manifest={manifest}", "data.frames=4", "data.size=32", "data.num_workers=2",
        "data.max_bad_fraction=0.1", "model.backbone=resnet18", "model.stage=layer1", "model.head=mean",
        "train.epochs=1",
        "train.batch_size=5", "train.lr=0.001",
    ])


def test_an_epoch_with_10_percent_bad_files_completes_and_lists_exactly_them(tmp_path):
    manifest, bad = bad_manifest(tmp_path / "data", ["empty", "truncated"])  # 2 of 20 train videos
    run = fit(bad_config(manifest), tmp_path / "run")
    with open(run / "bad_videos.csv", newline="") as f:
        listed = list(csv.DictReader(f))
    assert sorted(r["path"] for r in listed) == sorted(bad) and {r["split"] for r in listed} == {"train"}
    assert all(Path(r["path"]).name in r["error"] for r in listed)
    assert (run / "last.pt").is_file()


def test_past_the_bad_fraction_the_run_stops_with_a_clear_message(tmp_path):
    manifest, bad = bad_manifest(tmp_path / "data", ["empty", "truncated", "text"])  # 3 of 21 > 10%
    with pytest.raises(TooManyBadVideos, match=r"3 of 21 train videos .* data.max_bad_fraction=0.1"):
        fit(bad_config(manifest), tmp_path / "run")
    with open(tmp_path / "run" / "bad_videos.csv", newline="") as f:
        assert sorted(r["path"] for r in csv.DictReader(f)) == sorted(bad)


# --- fuzzing the real clips ------------------------------------------------------------


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage: flipped bytes, a zeroed block, a cut-out block, a duplicated block or a cut end."""
    data = bytearray(data)
    kind = rng.choice(["flip", "zero", "drop", "repeat", "cut"])
    start = rng.randrange(len(data))
    length = rng.randint(1, 4096)
    if kind == "flip":
        for _ in range(rng.randint(1, 64)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "zero":
        data[start:start + length] = bytes(len(data[start:start + length]))
    elif kind == "drop":
        del data[start:start + length]
    elif kind == "repeat":
        data[start:start] = data[start:start + length]
    else:
        del data[start:]
    return bytes(data)


FUZZ_CASES = 400


def fuzzed_clips(folder: Path, count: int, seed: int) -> Iterator[tuple[Path, Path]]:
    """``count`` damaged copies of the real clips (``mutate``, seeded), written one by one: (copy, its original)."""
    clips, rng = shared_clips(), random.Random(seed)
    originals = {clip: clip.read_bytes() for clip in clips}
    for case in range(count):
        clip = clips[case % len(clips)]
        path = folder / f"fuzz{case:03d}{clip.suffix}"
        path.write_bytes(mutate(originals[clip], rng))
        yield path, clip


def test_fuzzed_real_clips_decode_or_raise_the_typed_error(tmp_path):
    """Hundreds of damaged clips, decoded in a child process: only VideoDecodeError ever comes back."""
    outcomes, unexpected = {"decoded": 0, "typed": 0, "crashed": 0}, []
    with IsolatedDecoder(timeout=60) as decoder:
        for path, clip in fuzzed_clips(tmp_path, FUZZ_CASES, seed=8):
            try:
                info = decoder.probe(path, frames=3)
                assert info.num_frames > 0 and info.width > 0
                outcomes["decoded"] += 1
            except VideoDecodeError as err:
                assert err.path == str(path), err
                outcomes["crashed" if "process died" in err.reason or "longer than" in err.reason else "typed"] += 1
            except Exception as err:  # anything else escaping the decoder is a bug
                unexpected.append(f"{path.name} (from {clip.name}): {type(err).__name__}: {err}")
            path.unlink()
    assert not unexpected, unexpected[:5]
    assert outcomes["decoded"] > 20 and outcomes["typed"] > 20, outcomes
    print(f"fuzz outcomes over {FUZZ_CASES} cases: {outcomes}")


def test_fuzzed_clips_in_dataloader_workers_become_error_samples(tmp_path):
    """The training path: workers decode damaged clips; each sample is a clip or an error naming its file."""
    videos = [(str(path), 0) for path, _ in fuzzed_clips(tmp_path, 30, seed=80)]
    dataset = ClipDataset(videos, clips=ClipSampling(frames=3), transform=ClipEvalPreset(size=16), train=False)
    seen = 0
    for batch in make_loader(dataset, LoaderOptions(batch_size=4, num_workers=2, timeout=120), shuffle=False):
        for index, message in batch["errors"]:
            assert message.startswith(f"cannot decode {videos[index][0]}:"), message
        seen += len(batch["index"]) + len(batch["errors"])
    assert seen == len(videos)


PREDICT_FUZZ_CASES = 240


@pytest.mark.slow
def test_predict_over_fuzzed_real_clips_never_dies_and_gives_every_file_a_row(tiny_run, tmp_path):
    """The inference path: one ``videoseq predict`` process over 240 damaged clips (seeded) exits 0 or 1, never by
    a signal, and its CSV holds one row per file: a prediction, or an error naming the file."""
    folder = tmp_path / "fuzz"
    folder.mkdir()
    paths = [str(path) for path, _ in fuzzed_clips(folder, PREDICT_FUZZ_CASES, seed=14)]
    out = tmp_path / "predictions.csv"
    done = subprocess.run([sys.executable, "-m", "videoseq", "predict", str(tiny_run / "best.pt"), str(folder),
                           "--csv", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=3000,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode in (0, 1), f"predict ended with {done.returncode}: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(paths)  # every file, once
    failed = [r for r in rows if r["error"]]
    assert all(r["error"].startswith(f"cannot decode {r['path']}:") for r in failed)
    assert all(r["label_1"] and float(r["score_1"]) > 0 for r in rows if not r["error"])
    assert (done.returncode == 1) == bool(failed) and 20 < len(failed) < len(rows) - 20, len(failed)


# --- the isolated decoder turns crashes and hangs into the typed error -----------------


def test_a_decoder_crash_becomes_the_typed_error_and_the_next_file_decodes():
    clip = shared_clip("short_32frames.mp4")
    with IsolatedDecoder(timeout=60) as decoder:
        assert decoder.probe(clip).num_frames == 32
        child = decoder.pid
        os.kill(child, signal.SIGSTOP)  # the request below waits in the stopped child ...

        def crash() -> None:  # ... which then dies of a segmentation fault
            os.kill(child, signal.SIGSEGV)
            os.kill(child, signal.SIGCONT)

        timer = threading.Timer(0.5, crash)
        timer.start()
        died = r"short_32frames.mp4: decoding failed: the worker process died \(SIGSEGV\)"
        with pytest.raises(VideoDecodeError, match=died):
            decoder.read(clip, [0, 1])
        timer.join()
        assert read_frames(clip, [5]).tobytes() == decoder.read(clip, [5]).tobytes()
        assert decoder.pid != child


def test_a_hanging_decoder_is_stopped_after_the_timeout():
    clip = shared_clip("short_32frames.mp4")
    with IsolatedDecoder(timeout=1) as decoder:
        decoder.probe(clip)
        child = decoder.pid
        os.kill(child, signal.SIGSTOP)  # a decoder that never answers
        overran = r"short_32frames.mp4: decoding failed: took longer than 1 s and was stopped"
        with pytest.raises(VideoDecodeError, match=overran):
            decoder.probe(clip)
        assert decoder.probe(clip).num_frames == 32 and decoder.pid != child

