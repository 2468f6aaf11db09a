"""Progress of long work: one helper, ``progress_bar``, for every command.

On a terminal it is tqdm's redrawn bar. When stderr is not a terminal (a log file, a
pipe, a CI job) redrawing would fill the file with carriage-return frames, so the
bar prints one whole line every ``LOG_INTERVAL`` seconds instead, and a last line
when it ends:

    epoch 3/12 train:  41% 39/95 [00:06<00:08,  6.45it/s, loss=1.234, acc=0.551]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

LOG_INTERVAL = 5.0  # seconds between progress lines when stderr is not a terminal
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LOG_FORMAT_OPEN = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"  # no total known (a camera, a stream)


class LogLines(tqdm):
    """A tqdm bar that writes a new line for each update instead of redrawing the last one."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing a finished bar: a log keeps its lines
            return False
        self.fp.write(f"{self.__str__() if msg is None else msg}\n")
        self.fp.flush()
        self.shown = self.n
        return True

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)  # shown with the next timed line

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)

    def close(self) -> None:
        if not self.disable and getattr(self, "shown", None) != self.n:
            self.display()  # the final count, once
        self.leave = False  # the line is written: nothing for tqdm to redraw or clear
        super().close()


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress_bar(iterable: Iterable | None = None, *, desc: str = "", total: float | None = None,
                 unit: str = "it", leave: bool = False, disable: bool = False, **options: Any) -> tqdm:
    """A progress bar over ``iterable`` (or updated by hand with ``update``): redrawn on a terminal,
    a line every few seconds otherwise. ``options`` go to tqdm (``initial``, ``postfix``, ...)."""
    if stderr_is_terminal():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, dynamic_ncols=True,
                    **options)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if "TQDM_MININTERVAL" not in os.environ:  # tqdm's own setting, when given, decides
        options.setdefault("mininterval", LOG_INTERVAL)
    return LogLines(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, miniters=1,
                    bar_format=LOG_FORMAT if total is not None else LOG_FORMAT_OPEN, **options)
