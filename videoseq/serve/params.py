"""Query parameters of ``POST /v1/predict`` and ``WS /v1/stream``, validated alike.

A bad value or an unknown name is an ``ApiError`` (422, ``invalid_parameter``)
that names the parameter, the value and the rule; event options are checked by
``events.EventOptions`` and ``events.EventDetector`` themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from videoseq.events import EventDetector, EventOptions
from videoseq.serve.limits import ApiError

EVENT_PARAMS = ("threshold", "smooth", "method", "background", "min_duration", "refractory")
PREDICT_PARAMS = ("topk", "window", "stride", "beam") + EVENT_PARAMS
STREAM_PARAMS = ("topk", "fps", "events") + EVENT_PARAMS


def invalid(name: str, text: str, rule: str) -> ApiError:
    return ApiError(422, "invalid_parameter", f"query parameter {name}={text!r} {rule}")


def check_names(query: Mapping[str, str], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(valid))
    if unknown:
        raise ApiError(422, "invalid_parameter",
                       f"unknown query parameter {unknown[0]!r}; valid ones here: {', '.join(valid)}")


def number(query: Mapping[str, str], name: str, kind: Callable = float, default=None, *,
           low: float | None = None, high: float | None = None, strict: bool = False):
    """``query[name]`` as ``kind`` (int or float) within ``[low, high]`` (``strict``: above ``low``)."""
    text = query.get(name, "")
    if text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise invalid(name, text, f"is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise invalid(name, text, "is not a finite number")
    if low is not None and (value <= low if strict else value < low):
        raise invalid(name, text, f"must be {'>' if strict else '>='} {low:g}")
    if high is not None and value > high:
        raise invalid(name, text, f"must be <= {high:g}")
    return value


def topk(query: Mapping[str, str], classes: list[str]) -> int:
    return number(query, "topk", int, min(5, len(classes)), low=1, high=len(classes))


def flag(query: Mapping[str, str], name: str) -> bool:
    text = query.get(name, "0").lower()
    if text not in ("0", "1", "true", "false", ""):
        raise invalid(name, text, "must be 1 or 0 (true or false)")
    return text in ("1", "true")


def event_options(query: Mapping[str, str], classes: list[str], smooth: int) -> EventOptions:
    """Event (segment) options from the query; ``smooth`` is the default smoothing window."""
    try:
        options = EventOptions(
            smooth=number(query, "smooth", int, smooth), method=query.get("method") or "mean",
            threshold=number(query, "threshold", float, 0.5), background=query.get("background") or None,
            min_duration=number(query, "min_duration", float, 0.0), refractory=number(query, "refractory", float, 0.0))
        EventDetector(classes, options)  # checks the background class
    except ValueError as err:
        raise ApiError(422, "invalid_parameter", f"{err} (query parameters {', '.join(EVENT_PARAMS)})") from None
    return options


@dataclass(frozen=True)
class PredictParams:
    topk: int
    window: float | None  # seconds; None: the whole video only
    stride: float | None
    beam: int | None
    events: EventOptions


def predict_params(query: Mapping[str, str], classes: list[str]) -> PredictParams:
    check_names(query, PREDICT_PARAMS)
    window = number(query, "window", float, None, low=0, strict=True)
    stride = number(query, "stride", float, None, low=0, strict=True)
    if stride is not None and window is None:
        raise invalid("stride", query["stride"], "needs window (both in seconds)")
    return PredictParams(topk(query, classes), window, stride or window, number(query, "beam", int, None, low=1),
                         event_options(query, classes, smooth=1))


@dataclass(frozen=True)
class StreamParams:
    topk: int
    fps: float | None  # the client's frame rate, for models without data.fps
    events: EventOptions | None


def stream_params(query: Mapping[str, str], classes: list[str]) -> StreamParams:
    check_names(query, STREAM_PARAMS)
    events = event_options(query, classes, smooth=3) if flag(query, "events") else None
    return StreamParams(topk(query, classes), number(query, "fps", float, None, low=0, strict=True, high=1000), events)
