"""Prometheus metrics of one server (``GET /metrics``), in a registry of its own.

``videoseq_requests_total{route,method,status}``, ``videoseq_request_seconds``
(latency histogram per route), ``videoseq_errors_total{route,code}``,
``videoseq_stream_frames_total{outcome}`` (received, processed, dropped, bad),
``videoseq_stream_step_seconds`` (server time per stream frame: JPEG decode + model),
``videoseq_streams_active`` and ``videoseq_stream_frames_per_second`` (processed
stream frames per second over the last 10 s, all streams together).
"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class RateWindow:
    """Events per second over the last ``seconds``."""

    def __init__(self, seconds: float = 10.0) -> None:
        self.seconds = seconds
        self.times: deque[float] = deque()

    def add(self) -> None:
        self.times.append(time.monotonic())

    def rate(self) -> float:
        cutoff = time.monotonic() - self.seconds
        while self.times and self.times[0] < cutoff:
            self.times.popleft()
        return len(self.times) / self.seconds


class ServeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("videoseq_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("videoseq_request_seconds", "HTTP request latency in seconds", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("videoseq_errors", "refused or failed requests and stream frames", ["route", "code"],
                              registry=r)
        self.frames = Counter("videoseq_stream_frames", "WebSocket stream frames", ["outcome"], registry=r)
        self.step_seconds = Histogram("videoseq_stream_step_seconds", "server time per stream frame (decode + model)",
                                      buckets=STEP_BUCKETS, registry=r)
        self.streams = Gauge("videoseq_streams_active", "open WebSocket streams", registry=r)
        self.processed = RateWindow()
        fps = Gauge("videoseq_stream_frames_per_second", "processed stream frames per second over the last 10 s",
                    registry=r)
        fps.set_function(self.processed.rate)
        self.model = Info("videoseq_model", "the model being served", registry=r)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def error(self, route: str, code: str) -> None:
        self.errors.labels(route, code).inc()

    def frame(self, outcome: str, seconds: float | None = None) -> None:
        self.frames.labels(outcome).inc()
        if outcome == "processed":
            self.processed.add()
            self.step_seconds.observe(seconds or 0.0)

    def text(self) -> bytes:
        return generate_latest(self.registry)
