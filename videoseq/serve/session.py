"""``WS /v1/stream``: one live stream per connection, JPEG frames in, results and gesture events out.

The client opens ``/v1/stream?topk=3&fps=30&events=1`` and sends every frame as
one binary message: a 12-byte little-endian header (``uint32`` frame number,
``float64`` timestamp in seconds) followed by the JPEG bytes. The server sends
JSON text messages:

- ``{"type": "ready", ...}`` once (classes, clip length, seconds between kept frames);
- per processed frame ``{"type": "result", "seq": 17, "time_s": 1.2, "kept": true,
  "topk": [{"label": "Grow", "score": 0.91}, ...], "server_ms": 4.1, "queue_ms": 0.2,
  "dropped": [15, 16], "dropped_total": 2}``. ``kept``: the frame entered the model
  (the frame clock keeps one frame every ``data.stride / data.fps`` seconds, see
  ``stream.FrameClock``); ``topk`` is null while the feature buffer fills and for
  frames the clock skips; ``dropped`` lists the frames pushed out of the queue
  since the previous result;
- ``{"type": "event", "label", "start_s", "end_s", "start_frame", "end_frame", "peak"}``
  when a gesture ends (``events=1``; frames are frame numbers);
- ``{"type": "error", "status", "code", "message", "seq"}`` for a frame it cannot
  use (the stream goes on);
- after the text message ``{"type": "end"}``: the remaining results, the event
  still open, ``{"type": "summary", ...}`` (counts), then the server closes.

Bounded latency: frames wait in a queue of ``stream_queue`` (default 1) while the
model works on the previous one, and a newer frame pushes the oldest waiting one
out. Receiving never waits for the model, so a client that sends faster than the
model runs has its newest frames answered and every dropped frame reported.

Each frame runs through ``live.step_frame`` (``Predictor.step`` and the event
detector), the code of ``predict --stream``, with a predictor state of its own
(``Predictor.stream_copy``), in the server's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from videoseq.events import EventDetector, GestureEvent
from videoseq.live import event_record, step_frame, topk_records
from videoseq.predict import Predictor
from videoseq.serve.limits import ApiError, ServeLimits
from videoseq.serve.metrics import ServeMetrics
from videoseq.serve.params import StreamParams

HEADER = struct.Struct("<Id")  # frame number, timestamp in seconds; the JPEG follows
HEADER_TEXT = f"{HEADER.size} header bytes (little-endian uint32 frame number, float64 seconds) and a JPEG"


@dataclass(frozen=True)
class InFrame:
    seq: int
    time_s: float
    jpeg: bytes
    received: float  # time.monotonic() on arrival


@dataclass(frozen=True)
class StepResult:
    kept: bool  # entered the model
    top: list[tuple[str, float]] | None
    events: list[GestureEvent]
    seconds: float  # JPEG decode + model
    started: float  # time.monotonic() when the worker began


@dataclass
class StreamCounts:
    received: int = 0
    processed: int = 0
    kept: int = 0
    steps: int = 0
    dropped: int = 0
    bad: int = 0
    events: int = 0


def parse_frame(data: bytes, limits: ServeLimits) -> InFrame:
    """A binary message -> frame number, timestamp and JPEG bytes; ``ApiError`` for a bad one."""
    if len(data) <= HEADER.size:
        raise ApiError(400, "bad_frame", f"a frame message is {HEADER_TEXT}; got {len(data)} bytes")
    seq, time_s = HEADER.unpack_from(data)
    if len(data) - HEADER.size > limits.max_frame_bytes:
        raise ApiError(413, "frame_too_large", f"frame {seq} is {(len(data) - HEADER.size) / 1024:.0f} KB, over the "
                       f"{limits.max_frame_kb:g} KB limit (serve --max-frame-kb); send smaller or lower-quality JPEGs")
    if not math.isfinite(time_s):
        raise ApiError(400, "bad_frame", f"frame {seq}: its timestamp {time_s} is not a finite number of seconds")
    return InFrame(seq, time_s, data[HEADER.size:], time.monotonic())


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a JPEG's start-of-frame marker, read before anything is decoded."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("it is not a JPEG (no FFD8 start marker)")
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"corrupt JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, markers without a length
            i += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    raise ValueError("corrupt JPEG: no frame header (SOF marker)")


def decode_jpeg(frame: InFrame, max_pixels: int) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)``; the size is checked against the pixel cap before decoding."""
    try:
        width, height = jpeg_size(frame.jpeg)
    except ValueError as err:
        raise ApiError(400, "bad_frame", f"frame {frame.seq}: {err}; each frame is {HEADER_TEXT}") from None
    if width * height > max_pixels:
        raise ApiError(422, "too_many_pixels", f"frame {frame.seq} is {width}x{height}, over the {max_pixels:,} "
                       "pixel limit (serve --max-pixels); scale the frames down before sending")
    bgr = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ApiError(400, "bad_frame", f"frame {frame.seq}: OpenCV cannot decode the JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class StreamSession:
    """One accepted WebSocket: a receiving loop and a worker loop, the worker the only sender."""

    def __init__(self, websocket: WebSocket, predictor: Predictor, params: StreamParams, limits: ServeLimits,
                 pool: Executor, metrics: ServeMetrics) -> None:
        self.ws, self.params, self.limits, self.pool, self.metrics = websocket, params, limits, pool, metrics
        self.predictor = predictor.stream_copy(params.fps)
        self.detector = EventDetector(predictor.classes, params.events) if params.events else None
        self.queue: deque[InFrame] = deque()
        self.outbox: list[dict] = []  # messages of the receiving side, sent by the worker
        self.dropped_since: list[int] = []
        self.counts = StreamCounts()
        self.wake = asyncio.Event()
        self.ending = self.gone = False
        self.start = time.monotonic()

    async def run(self) -> None:
        await self.ws.send_json(self.ready())
        worker = asyncio.create_task(self.work())
        try:
            await self.receive()
        finally:
            self.gone = not self.ending
            self.wake.set()
            await worker

    def ready(self) -> dict:
        p = self.predictor
        return {"type": "ready", "classes": p.classes, "clip_len": p.clip_len, "interval_s": p.clock.interval,
                "topk": self.params.topk, "events": self.detector is not None, "stream_queue": self.limits.stream_queue}

    async def receive(self) -> None:
        while not self.ending:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                self.offer(message["bytes"])
            elif message.get("text") is not None:
                self.control(message["text"])
            self.wake.set()

    def offer(self, data: bytes) -> None:
        """Queue a frame; a full queue drops its oldest frame."""
        self.counts.received += 1
        self.metrics.frame("received")
        try:
            frame = parse_frame(data, self.limits)
        except ApiError as err:
            self.refuse(err)
            return
        if len(self.queue) >= self.limits.stream_queue:
            old = self.queue.popleft()
            self.counts.dropped += 1
            self.dropped_since.append(old.seq)
            self.metrics.frame("dropped")
        self.queue.append(frame)

    def control(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("type") == "end":
            self.ending = True
            return
        self.refuse(ApiError(400, "bad_message", 'text messages are JSON control messages: {"type": "end"} ends '
                             f"the stream; frames are binary messages of {HEADER_TEXT}"))

    def refuse(self, err: ApiError, seq: int | None = None) -> None:
        self.counts.bad += 1
        self.metrics.frame("bad")
        self.metrics.error("/v1/stream", err.code)
        self.outbox.append({"type": "error", **err.body(), "seq": seq})

    async def work(self) -> None:
        """Process queued frames one at a time until the client ends the stream or leaves."""
        try:
            while not self.gone:
                await self.wake.wait()
                self.wake.clear()
                await self.flush_outbox()
                while self.queue and not self.gone:
                    await self.process(self.queue.popleft())
                    await self.flush_outbox()
                if self.ending and not self.queue:
                    await self.finish()
                    return
        except (OSError, RuntimeError, WebSocketDisconnect):  # the client went away while a message was sent
            self.gone = True

    async def process(self, frame: InFrame) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.pool, self.compute, frame)
        except ApiError as err:
            self.refuse(err, frame.seq)
            return
        except Exception as err:  # the model failed: say so and end this stream (the server goes on)
            await self.ws.send_json({"type": "error", "status": 500, "code": "internal_error", "seq": frame.seq,
                                     "message": f"the model failed on frame {frame.seq}: {type(err).__name__}: {err}"})
            await self.ws.close(code=1011)
            self.gone = True
            return
        self.count(result)
        message = {"type": "result", "seq": frame.seq, "time_s": frame.time_s, "kept": result.kept,
                   "topk": topk_records(result.top) if result.top else None,
                   "server_ms": round(result.seconds * 1000, 3),
                   "queue_ms": round((result.started - frame.received) * 1000, 3),
                   "dropped": self.dropped_since, "dropped_total": self.counts.dropped}
        self.dropped_since = []
        await self.ws.send_json(message)
        for event in result.events:
            await self.ws.send_json({"type": "event", **event_record(event)})

    def compute(self, frame: InFrame) -> StepResult:
        """Decode and step one frame (in a worker thread; one at a time per stream)."""
        started = time.monotonic()
        image = decode_jpeg(frame, self.limits.max_pixels)
        kept_before = self.predictor.frames_kept
        top, events = step_frame(self.predictor, image, frame.time_s, frame.seq, self.params.topk, self.detector)
        return StepResult(self.predictor.frames_kept > kept_before, top, events, time.monotonic() - started, started)

    def count(self, result: StepResult) -> None:
        c = self.counts
        c.processed += 1
        c.kept += result.kept
        c.steps += result.top is not None
        c.events += len(result.events)
        self.metrics.frame("processed", result.seconds)

    async def flush_outbox(self) -> None:
        messages, self.outbox = self.outbox, []
        for message in messages:
            await self.ws.send_json(message)

    async def finish(self) -> None:
        """After ``{"type": "end"}``: the open event, the summary, then close."""
        for event in self.detector.flush() if self.detector else []:
            self.counts.events += 1
            await self.ws.send_json({"type": "event", **event_record(event)})
        summary = {"type": "summary", **asdict(self.counts), "seconds": round(time.monotonic() - self.start, 3)}
        await self.ws.send_json(summary)
        await self.ws.close(code=1000)
