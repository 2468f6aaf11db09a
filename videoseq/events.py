"""Gesture events from a stream of per-step class probabilities, and segments of sliding windows.

Each step's probabilities are smoothed over the last ``smooth`` steps (``mean``:
average the probability vectors; ``majority``: the most frequent top-1 label,
scored by its mean probability). A step is *active* when the smoothed label is
not the background class and its score reaches ``threshold``. A run of active
steps with one label is a candidate event from its first to its last step; it is
kept when it lasts at least ``min_duration`` seconds and starts at least
``refractory`` seconds after the previous kept event ended.

A step is a point in time (a live stream's frame) or a span (a sliding window of a
long video, ``update(..., end_s=...)``): an event then runs from the start of its first
step to the end of its last, and ``detect_events`` turns a whole sequence of windows
into the segments of a timeline (``videoseq.timeline``). Every event carries its peak
and its mean smoothed score.

Worked example (threshold 0.5, smooth 1, min_duration 0.2): top-1 scores of
``Swipe`` at t = 0.0, 0.1, 0.2, 0.3 of 0.3, 0.6, 0.9, 0.7 then ``Nothing``
(background) -> one event ``Swipe`` from 0.1 s to 0.3 s, peak 0.9, mean 0.733.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from videoseq.errors import UsageError

SMOOTHING = ("mean", "majority")


@dataclass(frozen=True)
class EventOptions:
    smooth: int = 3  # steps in the smoothing window (1: no smoothing)
    method: str = "mean"  # mean | majority
    threshold: float = 0.5  # smoothed score an active step needs
    background: str | None = None  # the "no gesture" class, never an event
    min_duration: float = 0.0  # seconds from first to last active step
    refractory: float = 0.0  # seconds after an event during which no new event starts

    def __post_init__(self) -> None:
        if self.method not in SMOOTHING:
            raise UsageError(f"event smoothing {self.method!r} is not one of {list(SMOOTHING)}")
        if self.smooth < 1:
            raise UsageError(f"event smoothing window must be >= 1 step, got {self.smooth}")
        if not 0 <= self.threshold <= 1:
            raise UsageError(f"event threshold must be in [0, 1], got {self.threshold}")
        if self.min_duration < 0 or self.refractory < 0:
            raise UsageError("event min duration and refractory period must be >= 0 seconds")


@dataclass(frozen=True)
class GestureEvent:
    label: str
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    peak: float  # highest smoothed score during the event
    mean: float  # mean smoothed score over the event's steps


class EventDetector:
    """Feed it every step with :meth:`update`; it returns the events that just closed."""

    def __init__(self, classes: list[str], options: EventOptions) -> None:
        if options.background is not None and options.background not in classes:
            raise UsageError(f"background class {options.background!r} is not a class of the model: {classes}")
        self.classes, self.options = classes, options
        self.window: deque[np.ndarray] = deque(maxlen=options.smooth)
        self.current: list | None = None  # [label, start_s, start_frame, end_s, end_frame, peak, score sum, steps]
        self.last_end = -np.inf

    def smoothed(self, probs: np.ndarray) -> tuple[str, float]:
        """Add one step's probabilities ``(C,)``; the smoothed label and score."""
        self.window.append(np.asarray(probs, dtype=np.float64))
        stack = np.stack(self.window)  # (N, C)
        if self.options.method == "mean":
            mean = stack.mean(0)
            best = int(mean.argmax())
        else:
            votes = Counter(stack.argmax(1).tolist())
            top = max(votes.values())
            best = next(i for i in reversed(stack.argmax(1).tolist()) if votes[i] == top)  # ties: most recent
            mean = stack.mean(0)
        return self.classes[best], float(mean[best])

    def update(self, time_s: float, frame: int, probs: np.ndarray, end_s: float | None = None,
               end_frame: int | None = None) -> list[GestureEvent]:
        """One step: its time (or start of its span, ending at ``end_s``), frame and probabilities ``(C,)``."""
        label, score = self.smoothed(probs)
        active = label != self.options.background and score >= self.options.threshold
        closed: list[GestureEvent] = []
        if self.current is not None and (not active or label != self.current[0]):
            closed = self._close()
        end_s, end_frame = time_s if end_s is None else end_s, frame if end_frame is None else end_frame
        if active:
            if self.current is None:
                self.current = [label, time_s, frame, end_s, end_frame, score, score, 1]
            else:
                c = self.current
                self.current[3:8] = [end_s, end_frame, max(c[5], score), c[6] + score, c[7] + 1]
        return closed

    def flush(self) -> list[GestureEvent]:
        """Close the event still open at the end of the stream."""
        return self._close() if self.current is not None else []

    def _close(self) -> list[GestureEvent]:
        label, start_s, start_frame, end_s, end_frame, peak, total, steps = self.current
        self.current = None
        opts = self.options
        if end_s - start_s < opts.min_duration - 1e-9 or start_s < self.last_end + opts.refractory - 1e-9:
            return []
        self.last_end = end_s
        return [GestureEvent(label, start_s, end_s, start_frame, end_frame, peak, total / steps)]


def span_steps(probs: np.ndarray, spans: np.ndarray, frames: np.ndarray | None = None) -> list[tuple]:
    """The steps of windows for :func:`detect_events`: probabilities ``(N, C)``, ``(N, 2)`` start and end seconds,
    ``frames`` the ``(N, 2)`` first and last frames (default: the window numbers)."""
    frames = np.stack([np.arange(len(spans))] * 2, axis=1) if frames is None else frames
    return [(float(start), int(first), p, float(end), int(last))
            for p, (start, end), (first, last) in zip(probs, spans, frames)]


def detect_events(classes: list[str], steps: Iterable[tuple], options: EventOptions) -> list[GestureEvent]:
    """Every event of a finished sequence of steps, each ``(time_s, index, probabilities (C,))``, or for steps
    that span time (windows) ``(start_s, first_frame, probabilities, end_s, last_frame)``.

    The same :class:`EventDetector` as a live stream, fed every step and flushed at
    the end (``videoseq serve`` and ``predict --timeline`` merge sliding windows into segments with it).
    """
    detector = EventDetector(classes, options)
    events = [event for step in steps for event in detector.update(*step)]
    return events + detector.flush()
