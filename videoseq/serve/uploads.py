"""``POST /v1/predict``: a multipart upload to a temporary file, checked against the caps, then predicted.

The numbers come from ``predict.predict_spans``, the code ``videoseq predict`` runs,
on the uploaded bytes decoded by the project's ``VideoReader``; with ``window`` the
windows are merged into segments by ``events.detect_events``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from videoseq.events import detect_events
from videoseq.predict import Predictor, SpanPrediction, predict_spans, topk
from videoseq.serve.limits import ApiError, ServeLimits
from videoseq.serve.params import PredictParams
from videoseq.video.decoder import VideoDecodeError, VideoInfo, VideoReader

UPLOAD_FIELD = "file"


@dataclass
class Upload:
    filename: str  # as the client named it (only its suffix reaches the file system)
    file: BinaryIO  # the received bytes (spooled to disk beyond 1 MB)


class Cancelled(Exception):
    """The request timed out; the worker stops at the next window."""


def too_large(limits: ServeLimits) -> ApiError:
    return ApiError(413, "upload_too_large", f"the upload is larger than the {limits.max_upload_mb:g} MB limit "
                    "(serve --max-upload-mb); send a shorter or smaller video")


async def capped(stream: AsyncIterator[bytes], limits: ServeLimits) -> AsyncIterator[bytes]:
    """The request body, refused as soon as it passes the upload limit."""
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limits.max_upload_bytes:
            raise too_large(limits)
        yield chunk


async def receive_upload(request: Request, limits: ServeLimits) -> Upload:
    """The video of a ``multipart/form-data`` request, field ``file``; refusals are ``ApiError``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart", "POST /v1/predict takes multipart/form-data with the video in a field "
                       f"named {UPLOAD_FIELD!r} (curl -F {UPLOAD_FIELD}=@clip.mp4 URL); got Content-Type "
                       f"{content_type or 'none'!r}")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limits.max_upload_bytes:
        raise too_large(limits)
    parser = MultiPartParser(request.headers, capped(request.stream(), limits), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise ApiError(400, "bad_multipart", f"the multipart body cannot be read: {err.message} "
                       f"(send one video in a field named {UPLOAD_FIELD!r})") from None
    upload = form.get(UPLOAD_FIELD)
    if not isinstance(upload, UploadFile):
        sent = sorted(form.keys())
        await form.close()
        raise ApiError(422, "no_file", f"no video file in the multipart field {UPLOAD_FIELD!r} "
                       f"(fields sent: {sent or 'none'}); curl -F {UPLOAD_FIELD}=@clip.mp4 URL")
    return Upload(upload.filename or "upload", upload.file)


def safe_suffix(filename: str) -> str:
    """The file's extension if it is a plain one (decoders look at it), else none."""
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def check_video(path: str, filename: str, limits: ServeLimits) -> VideoInfo:
    """Open the video (its header, no frames) and refuse one over the pixel or duration cap."""
    with VideoReader(path) as reader:
        info = reader.info
    pixels = info.width * info.height
    if pixels > limits.max_pixels:
        raise ApiError(422, "too_many_pixels", f"{filename} is {info.width}x{info.height} = {pixels:,} pixels a "
                       f"frame, over the {limits.max_pixels:,} limit (serve --max-pixels); downscale it "
                       "(ffmpeg -i IN -vf scale=-2:480 OUT.mp4)")
    if info.duration > limits.max_duration:
        raise ApiError(422, "video_too_long", f"{filename} lasts {info.duration:.1f} s, over the "
                       f"{limits.max_duration:g} s limit (serve --max-duration); cut it (ffmpeg -i IN -t 60 OUT.mp4)")
    return info


def predict_upload(predictor: Predictor, upload: Upload, params: PredictParams, limits: ServeLimits,
                   cancel: threading.Event) -> dict:
    """The JSON answer for one upload (runs in a worker thread)."""
    start = time.perf_counter()
    with upload.file, tempfile.NamedTemporaryFile(prefix="videoseq-", suffix=safe_suffix(upload.filename)) as tmp:
        if cancel.is_set():  # timed out while waiting for a worker
            raise Cancelled
        shutil.copyfileobj(upload.file, tmp)
        tmp.flush()
        try:
            info = check_video(tmp.name, upload.filename, limits)
            body = {"file": upload.filename, "video": video_card(info)}
            body.update(span_json(next(predict_spans(predictor, tmp.name, beam=params.beam)), predictor, params))
            if params.window:
                body.update(window_json(predictor, tmp.name, params, cancel))
        except VideoDecodeError as err:
            raise ApiError(422, "undecodable_video", f"cannot decode {upload.filename}: {err.reason}; "
                           f"{err.hint}") from None
    body["seconds"] = round(time.perf_counter() - start, 6)
    return body


def video_card(info: VideoInfo) -> dict:
    return {"frames": info.num_frames, "fps": info.fps, "duration_s": round(info.duration, 6),
            "width": info.width, "height": info.height}


def span_json(span: SpanPrediction, predictor: Predictor, params: PredictParams) -> dict:
    """Top-k labels and probabilities (classifiers) and the caption (caption models) of one span."""
    out: dict = {}
    if span.scores is not None:
        out["topk"] = [{"label": label, "score": score} for label, score in topk(span.scores, predictor.classes,
                                                                                  params.topk)]
    if span.caption is not None:
        out["caption"] = span.caption
    return out


def window_json(predictor: Predictor, path: str, params: PredictParams, cancel: threading.Event) -> dict:
    """Per-window top-k and every class's probability, and the windows merged into segments."""
    windows: list[SpanPrediction] = []
    for span in predict_spans(predictor, path, window=params.window, stride=params.stride, beam=params.beam):
        if cancel.is_set():
            raise Cancelled
        windows.append(span)
    rows = [{"start_s": round(w.start_s, 6), "end_s": round(w.end_s, 6), **span_json(w, predictor, params),
             **({"scores": [round(float(p), 6) for p in w.scores]} if w.scores is not None else {})}
            for w in windows]
    out: dict = {"window_s": params.window, "stride_s": params.stride, "windows": rows}
    if predictor.classifies:
        out["segments"] = window_segments(windows, predictor.classes, params)
    return out


def window_segments(windows: list[SpanPrediction], classes: list[str], params: PredictParams) -> list[dict]:
    """Runs of windows with one smoothed top-1 label (``events.detect_events`` over the window start times),
    each from its first window's start to its last window's end."""
    steps = [(w.start_s, i, w.scores) for i, w in enumerate(windows)]
    return [{"label": e.label, "start_s": round(windows[e.start_frame].start_s, 6),
             "end_s": round(windows[e.end_frame].end_s, 6), "peak": round(e.peak, 6),
             "first_window": e.start_frame, "last_window": e.end_frame}
            for e in detect_events(classes, steps, params.events)]
