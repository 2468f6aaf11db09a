"""Numbers on the command line: argparse ``type=`` functions that check the range as they parse.

A value out of range is refused by argparse itself (``argument --topk: must be an
integer >= 1, got -1``, exit 2) before the command opens or writes anything.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> _ = p.add_argument("--window", type=positive_float)
>>> p.parse_args(["--window", "2.5"]).window
2.5
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers in ``[low, high]`` (either end open when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number{_range(low, high)}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number{_range(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def real(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """A parser of finite numbers in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a finite number{_range(low, high, low_open)}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def _range(low: float | None, high: float | None, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    return f" <= {high:g}" if high is not None else ""


positive_int = integer(1)  # counts: --topk, --max-frames, --batch-size, --beam, ...
non_negative_int = integer(0)  # --workers, --retries
positive_float = real(0.0, low_open=True)  # seconds and rates: --window, --stride, --fps, --timeout
non_negative_float = real(0.0)  # --retry-delay, --min-duration, --refractory
probability = real(0.0, 1.0)  # --threshold
fraction = real(0.0, 0.99)  # --val-fraction, --test-fraction
