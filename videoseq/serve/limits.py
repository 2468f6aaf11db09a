"""What the server accepts, and the JSON error that every refusal becomes.

Every refusal is an :class:`ApiError`: an HTTP status, a short machine-readable
``code`` and a message that names the problem and what to do. The app turns it
into ``{"error": {"status": 413, "code": "upload_too_large", "message": "..."}}``;
a WebSocket stream sends the same object as ``{"type": "error", ...}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


class ApiError(Exception):
    """A request the server refuses: ``status`` (4xx, or 504 for a timeout), ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"status": self.status, "code": self.code, "message": self.message}


def default_workers() -> int:
    """Model threads of each pool: one per core, at most 4 (each runs one torch thread)."""
    from videoseq.runtime import available_workers  # torch: not when the command line is only being built

    return max(1, min(4, available_workers()))


def _limit(default: float, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ServeLimits:
    """The caps of one server; each is a flag of ``videoseq serve`` (``max_upload_mb`` -> ``--max-upload-mb``)."""

    max_upload_mb: float = _limit(100.0, "largest upload in MB (413 above)")
    max_duration: float = _limit(600.0, "longest uploaded video in seconds (422 above)")
    max_pixels: int = _limit(1920 * 1080, "largest frame, width x height, of uploads and stream frames (422 above)")
    max_streams: int = _limit(4, "WebSocket streams at once (a further one is refused and closed)")
    timeout: float = _limit(60.0, "seconds one upload may take, waiting for a model thread included (504 after)")
    workers: int = _limit(0, "model threads for uploads, and as many for stream frames (0: one per core, at most 4)")
    max_frame_kb: float = _limit(1024.0, "largest JPEG frame of a stream in KB")
    stream_queue: int = _limit(1, "frames of a stream waiting for the model; a newer one pushes out the oldest")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, zero_ok = getattr(self, f.name), f.name == "workers"
            if (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
                    or (value == 0 and not zero_ok)):
                raise ValueError(f"serve limit {f.name} must be a number {'>= 0' if zero_ok else '> 0'}, got {value!r}")
        if self.workers == 0:
            object.__setattr__(self, "workers", default_workers())

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_frame_bytes(self) -> int:
        return int(self.max_frame_kb * 1024)

    def card(self) -> dict:
        """The limits as plain numbers (``GET /v1/model``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
