"""The decoder: video files and frame folders to uint8 RGB frames.

Files are decoded with decord (CPU, one thread by default); JPEG/PNG frame folders
(Jester style ``<id>/00001.jpg ...``) read like videos, and a single image is a one-frame
video (so image captioning takes the same path); cameras and network streams
go through OpenCV (``video.cameras``). Every failure is a ``VideoDecodeError`` that
names the file and says what to do: a broken file never escapes as a raw decord
traceback, and a read never returns fewer or duplicated frames in silence.

Rotation: phone videos store frames sideways plus a display rotation in their
metadata. decord (0.6.0 and later, on CPU) turns the frames upright itself with
FFmpeg's transpose filter, from the same ``rotate`` tag / display matrix that
OpenCV reports as ``CAP_PROP_ORIENTATION_META``. ``VideoInfo.rotation`` records
that angle and ``VideoInfo.width/height`` are those of the upright frames; every
read checks that the decoded frames have exactly that shape. A decord build that
left frames as stored would be turned upright here with ``rotate_frames``.

Readers are opened per ``VideoReader`` and never cached globally. A decord reader
does not survive ``fork`` (its decoder thread stays in the parent and the child
hangs), so a ``VideoReader`` used in another process than the one that opened it
reopens the file there.

Decoders are C code: a crafted or damaged file may crash or hang them. Training
decodes in DataLoader workers (a crash there cannot take the main process down and
``data.timeout`` bounds a hang); ``video.isolated.IsolatedDecoder`` runs probes and reads in a
child process of its own and turns a crash or a hang into a ``VideoDecodeError``
naming the file, for checking many unknown files in one long-lived process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import decord
import numpy as np

from videoseq.errors import InputError
from videoseq.video.containers import TRUNCATED, container_truncation
from videoseq.video.limits import DEFAULT_MAX_PIXELS, capped_size, fit_frame, pixel_limit

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"
)
FRAME_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")

# decord replaces an undecodable frame near the end of a file with a copy of the
# previous one unless ``fault_tol`` is set; a tiny fraction makes the first such
# substitution an error instead (decord raises once copies > fault_tol * frames).
_DECORD_FAULT_TOL = "1e-9"
READ_CHUNK = 16  # frames decoded at a time when a read resizes them as they come (``read(..., transform=)``)
Transform = Callable[[np.ndarray], np.ndarray]  # uint8 (n, H, W, 3) -> uint8 (n, h, w, 3)

_DEFAULT_HINT = (
    "check that it is a complete, playable video (ffprobe shows its streams), "
    "re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4) or drop it from the manifest"
)


class VideoDecodeError(InputError, RuntimeError):
    """A video (file, frame folder, camera or stream) could not be opened or decoded.

    ``path`` is the source, ``reason`` what went wrong; ``str()`` adds what to do.
    """

    def __init__(self, path: str | os.PathLike | int, reason: str, hint: str = _DEFAULT_HINT) -> None:
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        super().__init__(f"cannot decode {self.path}: {reason}; {hint}")

    def __reduce__(self) -> tuple:
        # Picklable with its three arguments, so worker processes can send it back.
        return (type(self), (self.path, self.reason, self.hint))


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds. ``width`` and ``height`` are those of the upright frames."""

    path: str
    num_frames: int
    fps: float
    duration: float  # seconds: num_frames / fps
    width: int
    height: int
    rotation: int  # degrees clockwise that the stored frames were turned to stand upright


def is_frame_folder(path: str | os.PathLike) -> bool:
    """True for a directory that holds at least one JPEG/PNG image (a decoded video)."""
    path = Path(path)
    try:
        with os.scandir(path) as entries:
            return any(e.is_file() and e.name.lower().endswith(FRAME_EXTENSIONS) for e in entries)
    except OSError:  # not a folder, or one this user may not read
        return False


def find_videos(root: str | os.PathLike, *, frame_folders: bool = False, skip: Path | None = None) -> list[Path]:
    """Video files under ``root``, recursively and sorted; hidden files and folders are left out.

    With ``frame_folders`` a folder of frame images counts as one video (and is not
    searched further). ``skip`` is a folder not to enter (an output tree inside ``root``).
    """
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        visible = sorted(d for d in dirs if not d.startswith(".") and (skip is None or Path(folder, d) != skip))
        frames = [d for d in visible if frame_folders and is_frame_folder(os.path.join(folder, d))]
        dirs[:] = [d for d in visible if d not in frames]
        found += [Path(folder, d) for d in frames]
        found += [Path(folder, f) for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS]
    return sorted(found)


def rotate_frames(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Turn stored ``(T, H, W, 3)`` frames upright: rotate them ``rotation`` degrees clockwise.

    ``rotation`` is the display rotation of the metadata (0, 90, 180 or 270), the
    angle by which a player turns the stored picture clockwise. A 568x320 frame
    stored with rotation 90 comes out 320 wide and 568 high.
    """
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation}")
    # np.rot90 turns counter-clockwise for positive k.
    return np.ascontiguousarray(np.rot90(frames, k=-rotation // 90, axes=(1, 2)))


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps, duration, upright size and rotation of a video file or frame folder."""
    with VideoReader(path) as reader:
        return reader.info


def read_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Frames ``indices`` of a video as uint8 RGB ``(T, H, W, 3)``, upright, in the order given.

    Indices may repeat and come in any order. Reading several clips of one video?
    Open a ``VideoReader`` once instead.
    """
    with VideoReader(path) as reader:
        return reader.read(indices)


class VideoReader:
    """One video file or frame folder, opened once and read several times.

    >>> with VideoReader("clip.mp4") as reader:             # doctest: +SKIP
    ...     n = reader.info.num_frames
    ...     first, last = reader.read([0, 1, 2]), reader.read([n - 1])

    ``num_threads`` is decord's decoding thread count (0: FFmpeg decides); keep it
    low when several data-loader workers decode at once. ``frame_folder_fps`` is
    the frame rate given to frame folders, which store none (Jester is 12 fps).
    Frames larger than ``max_pixels`` (default: ``max_pixels()``, 4096 x 2160) are
    decoded at a smaller size, aspect kept; ``info`` gives the size they come out at.
    """

    def __init__(
        self, path: str | os.PathLike, *, num_threads: int = 1, frame_folder_fps: float = 12.0,
        known: tuple[VideoInfo, np.ndarray] | None = None, max_pixels: int | None = None,
    ) -> None:
        self.path = str(path)
        source = Path(path)
        if not source.exists():
            raise VideoDecodeError(self.path, "no such file or folder", "check the path and the data root")
        if not os.access(source, os.R_OK):
            raise VideoDecodeError(self.path, "permission denied", "make it readable (chmod) or run as its owner")
        limit = max_pixels or pixel_limit()
        if source.is_dir() or source.suffix.lower() in FRAME_EXTENSIONS:  # an image is a one-frame clip
            self._source: _FrameFolder | _DecordFile = _FrameFolder(source, frame_folder_fps, limit)
        else:
            self._source = _DecordFile(source, num_threads, known, limit)

    @property
    def known(self) -> tuple[VideoInfo, np.ndarray] | None:
        """What opening a file learnt (info, keyframes): pass it as ``known=`` to reopen it cheaply.

        A sequential read then opens one OpenCV capture instead of decord plus two captures
        (None for frame folders, which are cheap to open).
        """
        source = self._source
        return (source.info, source.keyframes, source.scaled) if isinstance(source, _DecordFile) else None

    @property
    def info(self) -> VideoInfo:
        """What the video holds (read when the reader was opened)."""
        return self._source.info

    def __len__(self) -> int:
        return self._source.info.num_frames

    def read(self, indices: Sequence[int], transform: Transform | None = None) -> np.ndarray:
        """Frames ``indices`` as a C-contiguous uint8 RGB ``(T, H, W, 3)`` array, upright.

        Each distinct frame is decoded once, in ascending order (one forward pass
        per keyframe interval), then the frames are laid out in the order asked.
        ``transform`` (a resize) runs on the frames as they are decoded, ``READ_CHUNK``
        at a time, so a long read holds only the transformed frames.
        """
        wanted = _check_indices(self.path, indices, self.info.num_frames)
        info = self.info
        if wanted.size == 0:
            return np.empty((0, info.height, info.width, 3), dtype=np.uint8)
        unique, order = np.unique(wanted, return_inverse=True)
        frames = self._source.read_sorted(unique, transform)
        if len(unique) == len(wanted) and np.array_equal(unique, wanted):
            return frames
        return frames[order.reshape(-1)]  # fancy indexing returns a fresh C-contiguous array

    def frame_times(self) -> np.ndarray:
        """``(N + 1,)`` seconds: where each frame starts, from the first one, and where the last one ends.

        ``i / fps`` for a file whose timestamps keep the header's rate (within two frames over the
        whole file) or make no sense (not increasing: some AVIs); a variable-frame-rate file gets
        its decoded timestamps instead.
        """
        info = self.info
        uniform = np.arange(info.num_frames + 1, dtype=np.float64) / info.fps
        stamps = self._source.timestamps()
        if stamps is None or not np.all(np.diff(stamps) > 0) or stamps[-1] - stamps[0] > 1e6:
            return uniform
        if abs((stamps[-1] - stamps[0]) - uniform[-1]) <= 2 / info.fps + 1e-6:
            return uniform
        return stamps - stamps[0]

    def close(self) -> None:
        """Release the decoder; reading again reopens the file."""
        self._source.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def finish_frames(path: str | Path, frames: np.ndarray, info: VideoInfo, transform: Transform | None) -> np.ndarray:
    """Decoded frames checked to have the video's upright geometry, then through ``transform``."""
    if frames.shape[1:] != (info.height, info.width, 3):
        raise VideoDecodeError(
            path,
            f"decoded frames have shape {frames.shape[1:]}, expected upright "
            f"{(info.height, info.width, 3)} (rotation {info.rotation})",
            "report this file: the installed decord handles its geometry differently",
        )
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    return frames if transform is None else np.ascontiguousarray(transform(frames), dtype=np.uint8)


def _check_indices(path: str, indices: Sequence[int], num_frames: int) -> np.ndarray:
    """Indices as int64, each in ``[0, num_frames)``; out of range is a ``VideoDecodeError``."""
    wanted = np.asarray(indices)
    if wanted.size and not np.issubdtype(wanted.dtype, np.integer):
        raise TypeError(f"frame indices must be integers, got dtype {wanted.dtype}")
    wanted = wanted.astype(np.int64).reshape(-1)
    bad = wanted[(wanted < 0) | (wanted >= num_frames)]
    if bad.size:
        raise VideoDecodeError(
            path,
            f"frame index {int(bad[0])} is out of range: the video has {num_frames} frames",
            f"ask for indices in [0, {num_frames})",
        )
    return wanted


class _DecordFile:
    """A video file decoded by decord, reopened after a fork or a decode error."""

    def __init__(self, path: Path, num_threads: int, known: tuple[VideoInfo, np.ndarray, bool] | None = None,
                 limit: int = DEFAULT_MAX_PIXELS) -> None:
        self.path = path
        self.num_threads = num_threads
        self._reader: decord.VideoReader | None = None
        self._pid = -1
        if known is not None:  # opened before: decord is opened only if a read seeks
            self.info, self.keyframes, self.scaled = known
            return
        if path.stat().st_size == 0:
            raise VideoDecodeError(path, "the file is empty (0 bytes)", "re-copy or re-download it")
        truncated = container_truncation(path)
        if truncated:
            raise VideoDecodeError(path, f"{TRUNCATED} {truncated}", "re-copy or re-download it")
        self.scaled = False
        reader = self._open()
        rotation, coded_width, coded_height = _stream_geometry(path)
        upright = (coded_height, coded_width) if rotation in (90, 270) else (coded_width, coded_height)
        size = capped_size(*upright, limit)
        if size != upright:  # decode at the capped (upright) size from now on
            self.scaled, self._reader = True, None
            self.info = VideoInfo(str(path), 0, 0.0, 0.0, size[0], size[1], rotation)  # what _open decodes at
            reader = self._open()
        num_frames, fps = len(reader), float(reader.get_avg_fps())
        self.keyframes = _keyframes(reader)
        if not np.isfinite(fps) or fps <= 0:
            raise VideoDecodeError(path, f"the container reports no usable frame rate ({fps})")
        self.info = VideoInfo(str(path), num_frames, fps, num_frames / fps, size[0], size[1], rotation)

    def _open(self) -> decord.VideoReader:
        """The decord reader of this process, opened on first use here."""
        self._forget_inherited()
        if self._reader is None:
            try:
                width, height = (self.info.width, self.info.height) if self.scaled else (-1, -1)
                self._reader = decord.VideoReader(
                    str(self.path), ctx=decord.cpu(0), num_threads=self.num_threads, fault_tol=_DECORD_FAULT_TOL,
                    width=width, height=height,
                )
            except Exception as err:  # decord raises RuntimeError, AssertionError, DECORDError
                raise VideoDecodeError(self.path, f"decord cannot open it ({_decord_message(err)})") from err
            self._pid = os.getpid()
        return self._reader

    def _forget_inherited(self) -> None:
        """Drop a decord reader inherited through fork without touching it.

        Its decoder thread lives in the parent: using it hangs and freeing it
        aborts (it joins a thread that is not here), so this process forgets its
        handle and leaks the copy.
        """
        reader = getattr(self, "_reader", None)  # absent when __init__ failed early
        if reader is not None and self._pid != os.getpid():
            reader._handle = None
            self._reader = None

    def read_sorted(self, indices: np.ndarray, transform: Transform | None = None) -> np.ndarray:
        """Frames at sorted, distinct ``indices``, upright, through ``transform`` (``READ_CHUNK`` at a time).

        Two decord faults on files that play fine are known: it sometimes loses the
        race for the last frame of a file (MPEG-4 AVIs with packed B-frames,
        UCF101's format) and would hand back a copy of an earlier frame (``fault_tol``
        turns that into an error), and it cannot copy frames of some widths (48 px,
        "DECORDArrayCopyFromTo"). For those two the same frames are decoded by
        OpenCV, one forward pass, and checked against the expected geometry; any
        other failure is a ``VideoDecodeError``.
        """
        if decode_plan(indices, self.keyframes) == "sequential":
            return opencv_read_sorted(self.path, indices, self.info, transform)
        chunks = np.array_split(indices, -(-len(indices) // READ_CHUNK)) if transform else [indices]
        return np.concatenate([self._decord_read(chunk, transform) for chunk in chunks])

    def _decord_read(self, indices: np.ndarray, transform: Transform | None) -> np.ndarray:
        try:
            frames = self._open().get_batch(indices.tolist()).asnumpy()
        except decord.DECORDLimitReachedError:
            self._reader = None  # the substitution is a timing race: start afresh next time
            return opencv_read_sorted(self.path, indices, self.info, transform)
        except Exception as err:
            self._reader = None  # the decoder thread may be wedged: start afresh next time
            if "DECORDArrayCopyFromTo" not in str(err):
                raise VideoDecodeError(
                    self.path,
                    f"decoding frames {_span(indices)} of {self.info.num_frames} failed ({_decord_message(err)})",
                ) from err
            return opencv_read_sorted(self.path, indices, self.info, transform)
        if not _DECORD_ROTATES and self.info.rotation:
            frames = rotate_frames(frames, self.info.rotation)
        return finish_frames(self.path, frames, self.info, transform)

    def timestamps(self) -> np.ndarray | None:
        """``(N + 1,)`` decoded presentation times in seconds: each frame's start, then the last one's end."""
        try:
            stamps = np.asarray(self._open().get_frame_timestamp(range(self.info.num_frames)), dtype=np.float64)
        except Exception:  # decord keeps no timestamps for some containers
            return None
        if stamps.shape != (self.info.num_frames, 2) or not np.all(np.isfinite(stamps)):
            return None
        return np.append(stamps[:, 0], stamps[-1, 1])

    def close(self) -> None:
        self._forget_inherited()
        self._reader = None

    def __del__(self) -> None:
        self._forget_inherited()



# Decoding one frame with decord (seek, decode, convert to RGB) costs about this many
# OpenCV grabs (decode only: frames that are not wanted are never converted). Measured
# on the UCF-geometry AVI and the H.264 MKV of ../shared/videos, one thread each:
# decord reading every frame gave 13.7 and 2.7 clips/s, OpenCV 27-37 and 7.2.
SEEK_FRAME_COST = 2.5


def decode_plan(indices: np.ndarray, keyframes: np.ndarray, seek_cost: float = SEEK_FRAME_COST) -> str:
    """``"sequential"`` (one OpenCV pass from frame 0) or ``"seek"`` (decord jumps to keyframes).

    A sequential pass decodes frames ``0..last``. Seeking decodes, in each keyframe
    interval that holds wanted frames, from its keyframe to its last wanted frame, at
    ``seek_cost`` times the price. Example: keyframes ``[0, 150, 300]`` and frames
    ``[10, 160, 305]``: sequential 306 frames; seeking 11 + 11 + 6 = 28 frames x 2.5 = 70,
    so seek. A file with one keyframe (UCF101's AVIs) is always read sequentially.
    """
    if len(indices) == 0:
        return "sequential"
    gop = np.searchsorted(keyframes, indices, side="right") - 1  # interval of each wanted frame
    starts = np.where(gop >= 0, keyframes[np.maximum(gop, 0)], 0)
    last_in_gop = {int(g): int(i) for g, i in zip(gop, indices)}  # indices are sorted: the last wins
    first_of_gop = {int(g): int(s) for g, s in zip(gop, starts)}
    seek_frames = sum(last_in_gop[g] - first_of_gop[g] + 1 for g in last_in_gop)
    return "seek" if seek_cost * seek_frames < int(indices[-1]) + 1 else "sequential"


def _keyframes(reader: decord.VideoReader) -> np.ndarray:
    """Keyframe indices from decord's index of the file (``[0]`` when it has none)."""
    try:
        keys = np.asarray(reader.get_key_indices(), dtype=np.int64)
    except Exception:  # some containers give no index: plan as if there were one keyframe
        keys = np.zeros(0, dtype=np.int64)
    return np.unique(np.append(keys, 0))


def opencv_read_sorted(path: Path, indices: np.ndarray, info: VideoInfo | None = None,
                       transform: Transform | None = None) -> np.ndarray:
    """Frames at sorted, distinct ``indices`` by one sequential OpenCV pass (upright, RGB).

    One FFmpeg thread (like decord's readers: one decode thread per data-loader worker);
    frames that are not wanted are grabbed (decoded) but never converted or copied. With
    ``info`` each frame is brought to its size (a capped video), checked and put through
    ``transform`` as soon as it is decoded.
    """
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    wanted, frames, position = set(indices.tolist()), [], 0
    try:
        while position <= int(indices[-1]):
            if not capture.grab():
                break
            if position in wanted:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if info is not None:
                    frame = finish_frames(path, fit_frame(frame, (info.width, info.height))[None], info, transform)[0]
                frames.append(frame)
            position += 1
    finally:
        capture.release()
    if len(frames) != len(indices):
        raise VideoDecodeError(
            path, f"decoding frames {_span(indices)} failed (the stream ends after {position} frames)"
        )
    return np.stack(frames)


class _FrameFolder:
    """A folder of JPEG/PNG frames, sorted by name with numbers compared as numbers,
    or a single image file: a one-frame clip (so images go through the video path)."""

    def __init__(self, path: Path, fps: float, limit: int = DEFAULT_MAX_PIXELS) -> None:
        if fps <= 0:
            raise ValueError(f"frame_folder_fps must be positive, got {fps}")
        self.path = path
        self.files = [path] if path.is_file() else sorted(
            (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
            key=_natural_key,
        )
        if not self.files:
            raise VideoDecodeError(
                path,
                "the folder holds no .jpg/.jpeg/.png frames and no video files (searched recursively)",
                "point to a video file, a folder of videos or a folder of frame images",
            )
        height, width = self._image(0).shape[:2]
        self.stored = (width, height)  # every image must have the first one's size
        width, height = capped_size(width, height, limit)
        n = len(self.files)
        self.info = VideoInfo(str(path), n, float(fps), n / fps, width, height, 0)

    def _image(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB; an unreadable image is a ``VideoDecodeError`` naming it."""
        file = self.files[index]
        try:
            # imdecode of the bytes also works for paths OpenCV's imread cannot open.
            image = cv2.imdecode(np.fromfile(file, dtype=np.uint8), cv2.IMREAD_COLOR)
        except (OSError, cv2.error) as err:
            raise VideoDecodeError(file, f"cannot read frame {index} ({err})", "replace or remove the image") from err
        if image is None:
            raise VideoDecodeError(file, f"frame {index} is not a readable image", "replace or remove the image")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def read_sorted(self, indices: np.ndarray, transform: Transform | None = None) -> np.ndarray:
        """The images at ``indices``, one at a time: checked, brought to the capped size, transformed."""
        return np.stack([self._frame(int(i), transform) for i in indices])

    def _frame(self, index: int, transform: Transform | None) -> np.ndarray:
        frame = self._image(index)
        if (frame.shape[1], frame.shape[0]) != self.stored:
            raise VideoDecodeError(
                self.files[index],
                f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the folder's first frame {self.stored[0]}x{self.stored[1]}",
                "resize the frames of the folder to one size",
            )
        size = (self.info.width, self.info.height)
        return finish_frames(self.files[index], fit_frame(frame, size)[None], self.info, transform)[0]

    def timestamps(self) -> None:
        return None  # frame images carry no times: frame i starts at i / fps

    def close(self) -> None:
        pass



def _stream_geometry(path: Path) -> tuple[int, int, int]:
    """``(rotation, stored width, stored height)`` of a video file, from OpenCV's FFmpeg.

    Auto-orientation is switched off so the size is that of the stored frames.
    """
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot read its stream metadata (rotation, size)")
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        rotation = int(round(capture.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if rotation not in (0, 90, 180, 270):
        raise VideoDecodeError(
            path,
            f"its rotation metadata is {rotation} degrees, not a multiple of 90",
            "re-encode it upright (ffmpeg -i IN -c:v libx264 OUT.mp4 applies the rotation)",
        )
    return rotation, width, height


def _decord_rotates() -> bool:
    """Whether the installed decord turns rotated videos upright itself (0.6.0 and later on CPU)."""
    version = tuple(int(part) for part in re.findall(r"\d+", decord.__version__)[:2])
    return version >= (0, 6)


_DECORD_ROTATES = _decord_rotates()


def _decord_message(err: BaseException) -> str:
    """decord's error text without its timestamps and C++ source locations, on one line."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip() and "Stack trace" not in line]
    message = lines[0] if lines else type(err).__name__
    return message[:300]


def _span(indices: np.ndarray) -> str:
    """Short description of sorted indices for error messages."""
    if len(indices) == 1:
        return str(int(indices[0]))
    return f"{int(indices[0])}..{int(indices[-1])} ({len(indices)} frames)"


def _natural_key(path: Path) -> list:
    """Sort key comparing digit runs as numbers: frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]
