"""``videoseq bench serve``: a load test of ``videoseq serve`` on loopback (not a timed test).

It starts the server in a process of its own (``python -m videoseq serve CHECKPOINT``
on a free 127.0.0.1 port), then runs at once ``--clients`` upload clients, each
posting ``--uploads`` real clips one after another, and ``--streams`` webcam-like
streams that send JPEG frames at ``--stream-fps`` for ``--seconds`` without waiting
for answers, as a camera does (the server drops what it cannot keep up with). It
prints errors, upload latency (p50 / p95), per stream the frames answered per
second, predictions per second, result latency and drops, and the server's resident
memory at start and end. Traffic goes to 127.0.0.1 only; every loop is bounded in
count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx2
import numpy as np
import websockets

from videoseq.bench.stream import write_test_video
from videoseq.resources import shared_videos
from videoseq.serve.session import HEADER  # frame number, seconds, then the JPEG

UPLOAD_CLIPS = ("ucf_like_320x240.avi", "short_32frames.mp4", "flipping_a_pancake.mkv")
STREAM_CLIP = "vtest.avi"


@dataclass
class UploadStats:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finished: float = 0.0  # time.perf_counter() when the last upload came back


@dataclass
class StreamStats:
    sent: int = 0
    processed: int = 0
    steps: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds from sending a frame to its result
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)  # the server's closing counts (received, dropped, ...)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory of a process in MB (``VmHWM``: its peak), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(checkpoint: str, port: int, workers: int, streams: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "videoseq", "serve", checkpoint, "--port", str(port), "--workers", str(workers),
               "--max-streams", str(max(streams, 1))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


async def wait_healthy(client, base: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"videoseq serve exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if (await client.get(base + "/healthz")).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"videoseq serve did not answer /healthz within {timeout:g} s; see {log}")


async def upload_client(client, base: str, clips: list[tuple[str, bytes]], count: int, offset: int,
                        stats: UploadStats) -> None:
    for i in range(count):
        name, data = clips[(offset + i) % len(clips)]
        start = time.perf_counter()
        try:
            response = await client.post(base + "/v1/predict", files={"file": (name, data)}, timeout=300)
        except httpx2.HTTPError as err:
            stats.errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        if response.status_code == 200:
            stats.latencies.append(time.perf_counter() - start)
        else:
            stats.errors.append(f"{name}: HTTP {response.status_code} {response.text[:300]}")
    stats.finished = max(stats.finished, time.perf_counter())


async def stream_client(url: str, frames: list[bytes], fps: float, seconds: float) -> StreamStats:
    """Send frames at ``fps`` for ``seconds`` (never waiting for answers), then end the stream."""
    stats, sent_at = StreamStats(), {}
    async with websockets.connect(url, max_size=None) as ws:
        json.loads(await ws.recv())  # ready
        receiver = asyncio.create_task(stream_results(ws, sent_at, stats))
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            await asyncio.sleep(max(0.0, start + stats.sent / fps - time.perf_counter()))
            sent_at[stats.sent] = time.perf_counter()
            await ws.send(HEADER.pack(stats.sent, stats.sent / fps) + frames[stats.sent % len(frames)])
            stats.sent += 1
        await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(receiver, 120)
        stats.seconds = time.perf_counter() - start
    return stats


async def stream_results(ws, sent_at: dict[int, float], stats: StreamStats) -> None:
    async for text in ws:
        message = json.loads(text)
        if message["type"] == "result":
            stats.processed += 1
            stats.steps += message["topk"] is not None
            stats.latencies.append(time.perf_counter() - sent_at.pop(message["seq"]))
            for seq in message["dropped"]:
                sent_at.pop(seq, None)
        elif message["type"] == "error":
            stats.errors.append(f"{message['code']}: {message['message']}")
        elif message["type"] == "summary":
            stats.summary = message
            return


def upload_clips() -> list[tuple[str, bytes]]:
    found = [shared_videos() / name for name in UPLOAD_CLIPS if (shared_videos() / name).is_file()]
    if not found:
        found = [write_test_video(Path(tempfile.mkdtemp()) / "synthetic.avi", frames=150)]
    return [(p.name, p.read_bytes()) for p in found]


def stream_frames(count: int = 120, long_side: int = 320) -> list[bytes]:
    """JPEGs of a real clip scaled as the page scales the webcam (long side 320 px)."""
    path = shared_videos() / STREAM_CLIP
    if not path.is_file():
        path = write_test_video(Path(tempfile.mkdtemp()) / "synthetic.avi", frames=count)
    capture, frames = cv2.VideoCapture(str(path)), []
    while len(frames) < count:
        ok, bgr = capture.read()
        if not ok:
            break
        scale = long_side / max(bgr.shape[:2])
        small = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        frames.append(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    capture.release()
    return frames


async def load(args: argparse.Namespace, base: str, process: subprocess.Popen, log: Path) -> dict:
    limits = httpx2.Limits(max_connections=args.clients + 4)
    async with httpx2.AsyncClient(limits=limits) as client:
        await wait_healthy(client, base, process, log)
        rss_start = rss_mb(process.pid)
        clips, frames, uploads = upload_clips(), stream_frames(), UploadStats()
        url = base.replace("http://", "ws://") + f"/v1/stream?topk=3&events=1&fps={args.stream_fps:g}"
        start = time.perf_counter()
        tasks = [upload_client(client, base, clips, args.uploads, i, uploads) for i in range(args.clients)]
        tasks += [stream_client(url, frames, args.stream_fps, args.seconds) for _ in range(args.streams)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
    streams = list(results[args.clients:])
    return {"uploads": uploads, "streams": streams, "wall": uploads.finished - start, "rss_start": rss_start,
            "rss_end": rss_mb(process.pid), "rss_peak": rss_mb(process.pid, "VmHWM"), "clips": [n for n, _ in clips]}


def percentiles(values: list[float], scale: float = 1.0) -> str:
    if not values:
        return "p50 -, p95 -"
    p50, p95 = np.percentile(values, [50, 95]) * scale
    return f"p50 {p50:.0f}, p95 {p95:.0f}"


def report(args: argparse.Namespace, found: dict) -> int:
    uploads, streams = found["uploads"], found["streams"]
    errors = list(uploads.errors)
    rate = len(uploads.latencies) / found["wall"] if found["wall"] > 0 else 0.0
    print(f"uploads: {len(uploads.latencies)} ok, {len(uploads.errors)} errors in {max(found['wall'], 0):.1f} s "
          f"({rate:.2f} uploads/s); latency ms {percentiles(uploads.latencies, 1e3)}"
          f" (clips: {', '.join(found['clips'])})")
    for i, s in enumerate(streams, 1):
        if isinstance(s, BaseException):
            errors.append(f"stream {i}: {type(s).__name__}: {s}")
            print(f"stream {i}: failed: {type(s).__name__}: {s}")
            continue
        errors += s.errors
        print(f"stream {i}: {s.sent} frames sent ({s.sent / s.seconds:.1f}/s), {s.processed} answered "
              f"({s.processed / s.seconds:.1f} frames/s), {s.steps} predictions ({s.steps / s.seconds:.1f}/s), "
              f"{s.summary.get('dropped', 0)} dropped; result latency ms {percentiles(s.latencies, 1e3)}")
    print(f"errors: {len(errors)}")
    for error in errors[:10]:
        print(f"  {error}")
    print(f"server RSS: {found['rss_start']:.0f} MB at start, {found['rss_end']:.0f} MB at end "
          f"(peak {found['rss_peak']:.0f} MB)")
    return 1 if errors else 0


def bench_serve(args: argparse.Namespace) -> int:
    port, log = free_port(), Path(tempfile.mkdtemp(prefix="videoseq-bench-serve-")) / "server.log"
    process = start_server(args.model, port, args.workers, args.streams, log)
    print(f"bench serve: {args.model} on 127.0.0.1:{port}, {args.workers or 'default'} model threads; "
          f"{args.clients} clients x {args.uploads} uploads + {args.streams} streams x {args.seconds:g} s at "
          f"{args.stream_fps:g} fps (server log {log})", flush=True)
    try:
        found = asyncio.run(load(args, f"http://127.0.0.1:{port}", process, log))
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    return report(args, found)

