"""Predictions from a checkpoint alone: clips, files, images, folders, globs, sliding windows, CSV.

Caption checkpoints add a ``caption`` column (beam search, ``--beam K``).

A file that cannot be read gets a CSV row with its error and a message on stderr;
the other files are still processed.
"""

from __future__ import annotations

import copy
import glob
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videoseq.checkpoint import ModelSource, open_source
from videoseq.config import Config
from videoseq.export import export_format, load_export
from videoseq.models import VideoClassifier
from videoseq.models.decoding import Decoding
from videoseq.progress import progress_bar
from videoseq.runtime import select_device, set_threads
from videoseq.sampling import ClipSampling, window_starts
from videoseq.stream import FeatureRing, FrameClock, stream_interval
from videoseq.tables import write_csv, write_rows
from videoseq.text import Vocabulary
from videoseq.transforms import ClipEvalPreset, clip_to_tensor, normalize_clip
from videoseq.video.decoder import (
    VideoDecodeError,
    VideoReader,
    find_videos,
    is_frame_folder,
)


class Predictor:
    """A trained model with its own preprocessing; needs only the checkpoint (or exported ONNX) file.

    >>> p = Predictor.from_checkpoint("runs/demo/best.pt")      # doctest: +SKIP
    >>> p.predict_clip(frames)        # uint8 RGB (T, H, W, 3) -> class probabilities (C,)
    >>> p.reset_stream(source_fps=30)                           # doctest: +SKIP
    >>> for i, frame in enumerate(camera):                      # doctest: +SKIP
    ...     probs = p.step(frame, time_s=i / 30)    # (C,), or None while the buffer fills
    >>> p.caption_clip(frames, beam=3)   # a caption model: "a red square moves left"

    ``model`` is a :class:`VideoClassifier` or an export, ONNX or TorchScript
    (``export.ExportedModel``); all answer ``model(clip)``, ``model.forward_frames``
    and ``model.forward_head``.

    ``classifies`` / ``captions`` say which the model can do (``model.task``).
    """

    def __init__(self, model: VideoClassifier, config: Config, classes: list[str], device: torch.device,
                 vocab: Vocabulary | None = None) -> None:
        self.model = model.to(device).eval()
        self.config, self.classes, self.device, self.vocab = config, classes, device, vocab
        self.preset = ClipEvalPreset(size=config.data.size)
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
            raise ValueError(f"{source.path} is a config, not a trained checkpoint; train it first (videoseq train)")
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

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``(..., T, H, W, 3)`` -> normalised float ``(..., T, 3, S, S)`` on the device.

        The eval preset resizes and centre-crops every frame alike, so one frame
        at a time gives the same pixels as the whole clip.
        """
        lead = frames.shape[:-4]
        flat = frames.reshape(-1, *frames.shape[-4:])  # (V, T, H, W, 3)
        batch = torch.stack([clip_to_tensor(self.preset(clip, 0)[0]) for clip in flat])  # (V, T, 3, S, S)
        batch = normalize_clip(batch.to(self.device), self.mean, self.std)
        return batch.reshape(*lead, *batch.shape[1:])

    @torch.no_grad()
    def clip_logits(self, clips: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``(V, T, H, W, 3)`` views -> logits ``(V, C)``."""
        return self.model(self.prepare(clips)).float()

    def predict_clips(self, clips: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(V, T, H, W, 3)`` views -> probabilities ``(V, C)``."""
        return self.clip_logits(clips).softmax(1).cpu().numpy()

    @torch.no_grad()
    def caption_clip(self, frames: np.ndarray, beam: int | None = None) -> str:
        """One clip, uint8 RGB ``(T, H, W, 3)`` -> a caption (beam search; default: the config's beam)."""
        if self.vocab is None:
            raise ValueError("this checkpoint has no caption decoder (model.task=classify)")
        ids = Decoding.of(self.config.caption, beam).generate(self.model, self.prepare(frames[None]))
        return self.vocab.decode(ids[0])

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

    def stream_copy(self, source_fps: float | None = None) -> Predictor:
        """The same model (shared, not copied) with a stream state of its own: one per live connection."""
        other = copy.copy(self)
        other.reset_stream(source_fps)
        return other

    @torch.no_grad()
    def step_logits(self, frame: np.ndarray, time_s: float | None = None) -> torch.Tensor | None:
        """One incoming uint8 RGB frame ``(H, W, 3)`` -> logits ``(C,)`` of the last ``clip_len`` kept frames.

        The backbone runs once on a kept frame; the head runs over the feature
        buffer. None while the buffer fills or when the clock skips the frame
        (``time_s`` None: every frame is kept, the caller sets the pace).
        """
        if not self.clock.take(time_s):
            return None
        self.frames_kept += 1
        x = self.prepare(frame[None, None])[0]  # (1, 3, S, S)
        self.ring.push(self.model.forward_frames(x))  # (1, D) or (1, D, h, w)
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

    def read_views(self, path: str | Path, views: int | None = None) -> np.ndarray:
        """The test views of a whole video, uint8 RGB ``(V, T, H, W, 3)``."""
        with VideoReader(path) as reader:
            indices = self.view_indices(reader.info.num_frames, views)  # (V, T)
            frames = reader.read(indices.reshape(-1))
        return frames.reshape(*indices.shape, *frames.shape[1:])

    def predict_video(self, path: str | Path, views: int | None = None) -> np.ndarray:
        """Mean probabilities over the test views of a whole video, ``(C,)``."""
        return self.predict_clips(self.read_views(path, views)).mean(0)

    def window_clips(self, path: str | Path, window: float, stride: float) -> Iterator[tuple[float, float, np.ndarray]]:
        """``(start_s, end_s, clip (T, H, W, 3))`` for windows of ``window`` seconds every ``stride`` seconds."""
        with VideoReader(path) as reader:
            info = reader.info
            size, step = max(1, round(window * info.fps)), max(1, round(stride * info.fps))
            for start in window_starts(info.num_frames, size, step):
                length = min(size, info.num_frames - start)
                indices = start + self.view_indices(length, 1)[0]
                end = start + length
                yield start / info.fps, end / info.fps, reader.read(indices)

    def predict_windows(self, path: str | Path, window: float,
                        stride: float) -> Iterator[tuple[float, float, np.ndarray]]:
        """``(start_s, end_s, probabilities)`` for windows of ``window`` seconds every ``stride`` seconds."""
        for start, end, clip in self.window_clips(path, window, stride):
            yield start, end, self.predict_clip(clip)


def topk(scores: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-scores)[:k]
    return [(classes[i], float(scores[i])) for i in order]


def expand_sources(sources: list[str]) -> list[str]:
    """Files as given, folders searched recursively for videos, globs expanded, sorted per source.

    A source that matches nothing is kept so it gets an error row.
    """
    found: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir() and not is_frame_folder(path):
            found += [str(p) for p in find_videos(path)]
        elif not path.exists() and glob.has_magic(source):
            found += sorted(glob.glob(source, recursive=True)) or [source]
        else:
            found.append(source)
    return found


@dataclass
class PredictionRows:
    header: list[str]
    rows: list[list]
    failures: int = 0


def prediction_rows(
    predictor: Predictor, sources: list[str], *, k: int = 5, window: float | None = None, stride: float | None = None,
    beam: int | None = None,
) -> PredictionRows:
    """One row per video (or per window): path, [start_s, end_s,] top-k labels and scores, [caption,] error.

    Class columns come from classifying models, the caption column (beam search,
    ``beam`` wide; default the config's) from captioning ones; a video's caption is
    that of its first test view.
    """
    k = min(k, len(predictor.classes)) if predictor.classifies else 0
    header = ["path"] + (["start_s", "end_s"] if window else [])
    header += [c for i in range(1, k + 1) for c in (f"label_{i}", f"score_{i}")]
    header += (["caption"] if predictor.captions else []) + ["error"]
    result = PredictionRows(header, [])
    for path in progress_bar(expand_sources(sources), desc="predict", unit="video"):
        try:
            spans = list(predict_spans(predictor, path, window=window, stride=stride, beam=beam))
        except VideoDecodeError as err:
            print(f"error: {err}", file=sys.stderr)
            result.rows.append([path] + [""] * (len(header) - 2) + [str(err)])
            result.failures += 1
            continue
        for span in spans:
            times = [round(span.start_s, 3), round(span.end_s, 3)] if window else []
            result.rows.append([path] + times + _prediction_cells(span, predictor.classes, k) + [""])
    return result


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

    ``videoseq predict`` and ``videoseq serve`` compute their numbers here. Raises
    ``VideoDecodeError`` for a file that cannot be read.
    """
    if window:
        spans = ((s, e, clip[None]) for s, e, clip in predictor.window_clips(path, window, stride or window))
    else:
        spans = iter([(None, None, predictor.read_views(path))])
    for start, end, clips in spans:  # clips: (V, T, H, W, 3)
        scores = predictor.predict_clips(clips).mean(0) if predictor.classifies else None
        caption = predictor.caption_clip(clips[0], beam) if predictor.captions else None
        yield SpanPrediction(start, end, scores, caption)


def _prediction_cells(span: SpanPrediction, classes: list[str], k: int) -> list:
    """Top-k label/score cells and the caption cell of one span."""
    cells = [v for label, score in topk(span.scores, classes, k) for v in (label, round(score, 6))] if k else []
    return cells + ([span.caption] if span.caption is not None else [])


def predict_to_csv(
    checkpoint: str | Path, sources: list[str], csv_path: str | Path | None, *, k: int = 5,
    window: float | None = None, stride: float | None = None, device: str = "auto", beam: int | None = None,
    threads: int | str = "auto",
) -> int:
    """Predict every source and write (or print) the CSV; returns the number of failed inputs.

    ``threads``: CPU threads of torch and OpenCV (``runtime.thread_policy``; no DataLoader workers here).
    """
    set_threads(threads)
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    table = prediction_rows(predictor, sources, k=k, window=window, stride=stride, beam=beam)
    if csv_path:
        write_csv(csv_path, table.header, table.rows)
        print(f"wrote {len(table.rows)} rows to {csv_path}")
    else:
        write_rows(sys.stdout, table.header, table.rows)
    if table.failures:
        print(f"{table.failures} input(s) failed", file=sys.stderr)
    return table.failures
