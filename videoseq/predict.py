"""Predictions from a checkpoint alone: the ``Predictor`` (clips, videos, windows, stream steps, captions).

Caption checkpoints also caption (beam search, ``--beam K``). ``videoseq predict`` over
files, folders, globs and manifests, with the CSV and timelines, is ``predict_files``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from videoseq.checkpoint import ModelSource, open_source
from videoseq.config import Config
from videoseq.errors import UsageError
from videoseq.exported import export_format, load_export
from videoseq.modality import eval_preset, motion_input
from videoseq.models import VideoClassifier
from videoseq.models.decoding import Decoding
from videoseq.models.motion import shift_modules
from videoseq.reading import Crop, MotionCrop, VideoViews, Windows
from videoseq.runtime import select_device
from videoseq.sampling import ClipSampling
from videoseq.stream import FeatureRing, FrameClock, MotionStream, stream_interval
from videoseq.text import Vocabulary
from videoseq.transforms import normalize_clip
from videoseq.video.decoder import VideoReader


class Predictor:
    """A trained model with its own preprocessing; needs only the checkpoint (or exported ONNX) file.

    >>> p = Predictor.from_checkpoint("runs/demo/best.pt")      # doctest: +SKIP
    >>> p.predict_clip(frames)        # uint8 RGB (T, H, W, 3) -> class probabilities (C,)
    >>> p.reset_stream(source_fps=30)                           # doctest: +SKIP
    >>> for i, frame in enumerate(camera):                      # doctest: +SKIP
    ...     probs = p.step(frame, time_s=i / 30)    # (C,), or None while the buffer fills
    >>> p.caption_clip(frames, beam=3)   # a caption model: "a red square moves left"

    ``model`` is a :class:`VideoClassifier` or an export, ONNX or TorchScript
    (``exported.ExportedModel``); all answer ``model(clip)``, ``model.forward_frames``
    and ``model.forward_head``.

    ``classifies`` / ``captions`` say which the model can do (``model.task``).

    A model of motion inputs (``data.modality`` flow, rgbdiff, or a fused model's
    rgb+flow) reads its clips' images from the frames of the file (``read_views``,
    windows); ``prepare`` then takes those images, not RGB frames. ``step`` still takes
    RGB frames: each kept frame's motion against the previous kept frame is computed
    there (``stream.MotionStream``). With ``model.temporal_shift: online`` each step also
    carries the shifted channels of the previous frame (``shift_cache``).
    """

    def __init__(self, model: VideoClassifier, config: Config, classes: list[str], device: torch.device,
                 vocab: Vocabulary | None = None) -> None:
        self.model = model.to(device).eval()
        self.config, self.classes, self.device, self.vocab = config, classes, device, vocab
        self.preset, self.motion = eval_preset(config.data), motion_input(config.data)
        self.clips = ClipSampling.from_data(config.data)
        stats = getattr(model, "backbone", model)  # an ONNX export carries mean/std itself
        self.mean, self.std = tuple(stats.mean), tuple(stats.std)
        self.reset_stream()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> Predictor:
        """A ``.pt`` checkpoint, or an ``.onnx`` / ``.torchscript.pt`` file written by ``videoseq export``
        (exports run on the CPU)."""
        if export_format(path):
            model, config, classes = load_export(path)
            return cls(model, config, classes, torch.device("cpu"))
        return cls.from_source(open_source(path), device)

    @classmethod
    def from_source(cls, source: ModelSource, device: str = "auto") -> Predictor:
        """The trained model of an opened checkpoint (``checkpoint.open_source``)."""
        if source.payload is None:
            raise UsageError(f"{source.path} is a config, not a trained checkpoint; train it first (videoseq train)")
        payload = source.payload
        vocab = Vocabulary(payload["vocab"]) if payload.get("vocab") else None
        return cls(source.model(), source.config, list(payload["classes"]), select_device(device), vocab)

    @property
    def classifies(self) -> bool:
        return self.config.model.task != "caption"

    @property
    def captions(self) -> bool:
        return self.vocab is not None

    @property
    def clip_len(self) -> int:
        return self.config.data.frames

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(..., T, H, W, 3)`` -> ``(..., T, S, S, 3)``: the eval preset, every frame alike."""
        lead = frames.shape[:-4]
        flat = frames.reshape(-1, *frames.shape[-4:])  # (V, T, H, W, 3)
        cropped = np.stack([self.preset(clip, 0)[0] for clip in flat])  # (V, T, S, S, 3)
        return cropped.reshape(*lead, *cropped.shape[1:])

    def to_input(self, cropped: np.ndarray) -> torch.Tensor:
        """Cropped uint8 ``(..., T, S, S, 3)`` -> normalised float ``(..., T, 3, S, S)`` on the device."""
        batch = torch.from_numpy(np.ascontiguousarray(cropped)).movedim(-1, -3).contiguous()  # (..., T, 3, S, S)
        batch = batch.to(self.device)
        return normalize_clip(batch, self.mean, self.std)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(..., T, H, W, C)`` -> normalised float ``(..., T, C, S, S)`` on the device.

        C is 3 (RGB frames), or the channels of the model's motion images (``read_views``).
        The eval preset resizes and centre-crops every frame alike, so one frame
        at a time gives the same pixels as the whole clip.
        """
        channels = self.config.data.input_channels()
        if frames.shape[-1] != channels:
            raise UsageError(f"this model takes {channels} channels per frame (data.modality="
                             f"{self.config.data.modality}), got {frames.shape[-1]}: its motion images are "
                             "computed from the frames of whole video files (predict without --stream, eval, "
                             "serve uploads); single frames, images and streams give RGB frames only")
        return self.to_input(self.crop(frames))

    @torch.no_grad()
    def input_probs(self, x: torch.Tensor) -> np.ndarray:
        """Prepared clips ``(V, T, C, S, S)`` -> probabilities ``(V, C)``."""
        return self.model(x).float().softmax(1).cpu().numpy()

    @torch.no_grad()
    def clip_logits(self, clips: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``(V, T, H, W, 3)`` views -> logits ``(V, C)``."""
        return self.model(self.prepare(clips)).float()

    def predict_clips(self, clips: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(V, T, H, W, 3)`` views -> probabilities ``(V, C)``."""
        return self.input_probs(self.prepare(clips))

    @torch.no_grad()
    def caption_input(self, x: torch.Tensor, beam: int | None = None) -> str:
        """One prepared clip ``(1, T, 3, S, S)`` -> a caption (beam search; default: the config's beam)."""
        if self.vocab is None:
            raise UsageError("this checkpoint has no caption decoder (model.task=classify)")
        ids = Decoding.of(self.config.caption, beam).generate(self.model, x)
        return self.vocab.decode(ids[0])

    def caption_clip(self, frames: np.ndarray, beam: int | None = None) -> str:
        """One clip, uint8 RGB ``(T, H, W, 3)`` -> a caption (beam search; default: the config's beam)."""
        return self.caption_input(self.prepare(frames[None]), beam)

    def predict_clip(self, frames: np.ndarray) -> np.ndarray:
        """One clip, uint8 RGB ``(T, H, W, 3)`` -> class probabilities ``(C,)``."""
        return self.predict_clips(frames[None])[0]

    def stream_interval(self, source_fps: float | None) -> float | None:
        """Seconds between the frames a stream keeps (see ``stream.stream_interval``)."""
        d = self.config.data
        return stream_interval(d.stride, d.fps, source_fps)

    def reset_stream(self, source_fps: float | None = None) -> None:
        """Start a new stream: empty feature buffer, frame clock for ``source_fps``."""
        self.clock = FrameClock(self.stream_interval(source_fps))
        self.ring = FeatureRing(self.clip_len)
        self.frames_kept = 0  # frames of this stream that entered the model
        self.motion_stream = MotionStream(self.motion) if self.motion is not None else None
        self.shift_cache: list[torch.Tensor] | None = None  # online temporal shift: the previous frame's channels

    def check_streamable(self) -> None:
        """A stream runs one frame at a time: a bidirectional temporal shift, which reads the next frame, cannot."""
        if self.config.model.temporal_shift == "bidirectional" or "bidirectional" in shift_modes(self.model):
            raise UsageError("this model has a bidirectional temporal shift (model.temporal_shift=bidirectional): "
                             "each frame's features read the next frame, which a stream has not seen yet. Stream a "
                             "model trained with model.temporal_shift=online, or predict whole files or --window "
                             "spans without --stream")

    def stream_copy(self, source_fps: float | None = None) -> Predictor:
        """The same model (shared, not copied) with a stream state of its own: one per live connection."""
        self.check_streamable()
        other = copy.copy(self)
        if self.motion is not None:  # a flow estimator of its own: OpenCV's is not shared between threads
            other.motion = dataclasses.replace(self.motion)
        other.reset_stream(source_fps)
        return other

    @torch.no_grad()
    def step_logits(self, frame: np.ndarray, time_s: float | None = None) -> torch.Tensor | None:
        """One incoming uint8 RGB frame ``(H, W, 3)`` -> logits ``(C,)`` of the last ``clip_len`` kept frames.

        The backbone runs once on a kept frame; the head runs over the feature
        buffer. None while the buffer fills or when the clock skips the frame
        (``time_s`` None: every frame is kept, the caller sets the pace).
        """
        if self.frames_kept == 0:
            self.check_streamable()
        if not self.clock.take(time_s):
            return None
        self.frames_kept += 1
        image = frame if self.motion_stream is None else self.motion_stream.push(frame)  # (h, w, C)
        x = self.prepare(image[None, None])[0]  # (1, C, S, S)
        features, self.shift_cache = self.model.step_frames(x, self.shift_cache)  # (1, D) or (1, D, h, w)
        self.ring.push(features)
        if not self.ring.full:
            return None
        return self.model.forward_head(self.ring.clip())[0].float()  # (C,)

    def step(self, frame: np.ndarray, time_s: float | None = None) -> np.ndarray | None:
        """Streaming: class probabilities ``(C,)`` after this frame, or None (see ``step_logits``)."""
        logits = self.step_logits(frame, time_s)
        return None if logits is None else logits.softmax(0).cpu().numpy()

    def view_indices(self, num_frames: int, views: int | None = None) -> np.ndarray:
        """``views`` test clips of a video (default: ``data.test_views``), ``(V, T)``."""
        return self.clips.views(num_frames, views or self.config.data.test_views)

    def shrink(self, frames: np.ndarray) -> np.ndarray:
        """The eval preset's resize of decoded frames ``(n, H, W, 3)`` (``prepare`` resizing them again changes
        nothing): what ``read_views`` and ``window_clips`` apply as frames are decoded, so a read of a large
        video holds small frames."""
        return self.preset.shrink(frames)

    def plan(self, window: float | None = None, stride: float | None = None) -> VideoViews | Windows:
        """What to read of each video: its test views, or windows of ``window`` s every ``stride`` s."""
        if window:
            return Windows(self.clips, window, stride or window)
        lookback = 0 if self.motion is None else self.motion.lookback  # room for the frames motion reads before
        return VideoViews(self.clips, self.config.data.test_views, lookback=lookback)

    def reader_prepare(self) -> Crop | MotionCrop:
        """What the decoding workers make of a unit's frames (``reading.read_chunk``): the eval crop of RGB
        frames, or the model's motion images through the motion eval preset."""
        if self.motion is None:
            return Crop(self.config.data.size)
        return MotionCrop(self.motion, self.preset)

    def read_views(self, path: str | Path, views: int | None = None) -> np.ndarray:
        """The test views of a whole video, uint8 ``(V, T, h, w, C)``: RGB frames resized as decoded (``shrink``),
        or the model's motion images (``reading.MotionCrop``)."""
        with VideoReader(path) as reader:
            plan = self.plan()
            indices, _ = VideoViews(self.clips, views or self.config.data.test_views, lookback=plan.lookback).units(
                reader.info)  # (V, T)
            if self.motion is not None:
                return np.stack([self.motion.read_clip(reader.read, kept) for kept in indices])
            frames = reader.read(indices.reshape(-1), transform=self.shrink)
        return frames.reshape(*indices.shape, *frames.shape[1:])

    def predict_video(self, path: str | Path, views: int | None = None) -> np.ndarray:
        """Mean probabilities over the test views of a whole video, ``(C,)``."""
        return self.predict_clips(self.read_views(path, views)).mean(0)

    def window_clips(self, path: str | Path, window: float, stride: float) -> Iterator[tuple[float, float, np.ndarray]]:
        """``(start_s, end_s, clip (T, H, W, 3))`` for windows of ``window`` seconds every ``stride`` seconds.

        Times are the frames' own (``VideoReader.frame_times``): on a variable-frame-rate
        file a window holds ``window`` seconds' worth of frames at the file's mean rate, and
        its start and end are the decoded timestamps of its first frame and of its end.
        """
        plan = Windows(self.clips, window, stride)
        with VideoReader(path) as reader:
            indices, spans = plan.units(reader.info, reader.frame_times())  # (W, T), (W, 2)
            if self.motion is not None:  # each window's motion images, from its frames and those before them
                for kept, (start, end) in zip(indices, spans):
                    yield float(start), float(end), self.motion.read_clip(reader.read, kept)
                return
            for first in range(0, len(indices), plan.chunk):  # decoded a chunk at a time, as predict_files does
                chunk = indices[first:first + plan.chunk]
                frames = reader.read(chunk.reshape(-1), transform=self.shrink)
                for clip, (start, end) in zip(frames.reshape(*chunk.shape, *frames.shape[1:]), spans[first:]):
                    yield float(start), float(end), clip

    def predict_windows(self, path: str | Path, window: float,
                        stride: float) -> Iterator[tuple[float, float, np.ndarray]]:
        """``(start_s, end_s, probabilities)`` for windows of ``window`` seconds every ``stride`` seconds."""
        for start, end, clip in self.window_clips(path, window, stride):
            yield start, end, self.predict_clip(clip)


def shift_modes(model: object) -> set[str]:
    """The temporal shift modes inside a PyTorch model (an ONNX export: none to see; its config says)."""
    return {s.mode for s in shift_modules(model)} if isinstance(model, nn.Module) else set()


def topk(scores: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-scores)[:k]
    return [(classes[i], float(scores[i])) for i in order]


@dataclass(frozen=True)
class SpanPrediction:
    """A whole video (``start_s`` / ``end_s`` None) or one window of it."""

    start_s: float | None
    end_s: float | None
    scores: np.ndarray | None  # (C,) probabilities, mean over the views; None for a model that only captions
    caption: str | None = None  # of the first view, for caption models


def predict_spans(predictor: Predictor, path: str | Path, *, window: float | None = None,
                  stride: float | None = None, beam: int | None = None) -> Iterator[SpanPrediction]:
    """The whole video (its test views) or, with ``window`` seconds, one span per window every ``stride`` s.

    ``videoseq serve`` computes its numbers here (``videoseq predict`` the same ones from
    chunks decoded ahead, ``predict_files``). Raises ``VideoDecodeError`` for a file that cannot be read.
    """
    if window:
        spans = ((s, e, clip[None]) for s, e, clip in predictor.window_clips(path, window, stride or window))
    else:
        spans = iter([(None, None, predictor.read_views(path))])
    for start, end, clips in spans:  # clips: (V, T, H, W, 3)
        scores = predictor.predict_clips(clips).mean(0) if predictor.classifies else None
        caption = predictor.caption_clip(clips[0], beam) if predictor.captions else None
        yield SpanPrediction(start, end, scores, caption)
