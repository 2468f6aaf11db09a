"""Values checked against their annotations: types, tuple lengths, mappings, choices and ranges.

The config dataclasses (``videoseq.config``) and the heads' keyword arguments
(``model.head_args``, checked in ``models.heads.check_head_args``) declare what a
value may be in the annotation itself::

    frames: Annotated[int, Range(1, 512)] = 8        # a whole number in [1, 512]
    sampling: Annotated[str, OneOf(METHODS)] = "segment"
    fps: Annotated[float, Range(0, low_open=True)] | None = None
    crop_scale: tuple[float, float] = (0.5, 1.0)      # a list of exactly 2 numbers

and ``check_value("data.frames", 2.5, hint)`` raises ``ConfigError("data.frames: must
be a whole number, got 2.5")``. Understood: ``int`` (not a bool), ``float`` (an int
or a finite float; text that reads as a number, such as YAML's ``1e-3``, is taken
as that number), ``bool``, ``str``, ``None``, unions (``X | None``), ``tuple[X, Y]``,
``tuple[X, ...]``, ``list[X]``, ``dict[K, V]``, ``Any``, and ``Annotated[X, marks]``
with the marks ``Range`` and ``OneOf``.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from videoseq.errors import UsageError


class ConfigError(UsageError):
    """A config file, key or value is wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``; ``low_open`` / ``high_open`` leave an end out; None: no bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, key: str, value: Any) -> None:
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if below or above:
            raise ConfigError(f"{key}: must be {self.describe()}, got {value!r}")

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


@dataclass(frozen=True)
class OneOf:
    """One of ``choices``."""

    choices: tuple

    def check(self, key: str, value: Any) -> None:
        if value not in self.choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(self.choices)}")


def check_value(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the annotation ``hint`` (and made a tuple or float where it says so)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        value = check_value(key, value, args[0])
        for mark in hint.__metadata__:
            mark.check(key, value)
        return value
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        return _check_union(key, value, args)
    if origin in (tuple, list):
        return _check_sequence(key, value, origin, args)
    if origin is dict or hint is dict:
        return _check_mapping(key, value, args or (Any, Any))
    return _check_plain(key, value, hint)


def _check_union(key: str, value: Any, args: tuple) -> Any:
    if value is None and type(None) in args:
        return None
    problems = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return check_value(key, value, arg)
        except ConfigError as err:
            problems.append(str(err).removeprefix(f"{key}: "))
    allowed = " or ".join(describe(a) for a in args)
    if len(problems) == 1 or all(p.startswith("must be a") or p.startswith("must be text") for p in problems):
        raise ConfigError(f"{key}: must be {allowed}, got {value!r}")
    raise ConfigError(f"{key}: {'; or '.join(problems)}")


def _check_sequence(key: str, value: Any, origin: type, args: tuple) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: must be {describe(origin[args])}, got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{key}: must be {describe(origin[args])}, got {len(value)} values: {list(value)!r}")
        return tuple(check_value(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    checked = [check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    return tuple(checked) if origin is tuple else checked


def _check_mapping(key: str, value: Any, args: tuple) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a mapping such as {{a: b}}, got {value!r}")
    key_hint, value_hint = args
    return {check_value(f"{key} key {k!r}", k, key_hint): check_value(f"{key}.{k}", v, value_hint)
            for k, v in value.items()}


def _check_plain(key: str, value: Any, hint: Any) -> Any:
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        value = _number(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is type(None):
        ok = value is None
    else:
        raise TypeError(f"{key}: the annotation {hint!r} is not one validation understands")
    if not ok:
        hint_text = "; quote it to make it text" if hint is str and isinstance(value, (int, float, bool)) else ""
        raise ConfigError(f"{key}: must be {describe(hint)}, got {value!r}{hint_text}")
    return value


def _number(value: Any) -> Any:
    """Text that reads as a finite number (YAML 1.1 reads ``1e-3`` as text) as that number; anything else as is."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


# Keyword arguments of model parts (heads, the caption decoder) that carry no range of their own:
# whole numbers are sizes or counts (>= 1), other numbers rates or weights (>= 0), dropouts below 1.
KEYWORD_RANGES = {int: Range(1), float: Range(0)}
DROPOUT = Range(0, 1, high_open=True)


def check_keyword_args(where: str, function: Callable, given: dict[str, Any], *, owner: str = "",
                       leave_out: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``given`` checked against the keyword-only parameters of ``function`` (their annotations and ranges).

    ``where`` is the config key (``model.head_args``), ``owner`` what takes them (``head 'gru'``). An
    unknown key names the valid ones (``extra`` are valid keys handled elsewhere, ``leave_out``
    parameters that are not the user's to set). Returns the checked values.
    """
    params = [p for p in inspect.signature(function).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in leave_out]
    valid = [p.name for p in params] + list(extra)
    hints = typing.get_type_hints(function)
    checked = {}
    for key, value in given.items():
        if key not in valid:
            raise ConfigError(f"{where}: unknown key {key!r}{f' for {owner}' if owner else ''}; valid keys: {valid}")
        if key in extra:
            checked[key] = value
            continue
        hint = hints.get(key, Any)
        checked[key] = check_value(f"{where}.{key}", value, hint)
        mark = DROPOUT if key == "dropout" else KEYWORD_RANGES.get(hint)
        if mark is not None:
            mark.check(f"{where}.{key}", checked[key])
    return checked


def describe(hint: Any) -> str:
    """What an annotation asks for, in words: ``a whole number``, ``a list of 2 numbers``, ..."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        marks = [m.describe() for m in hint.__metadata__ if isinstance(m, Range)]
        return describe(args[0]) + (f" {marks[0]}" if marks else "")
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_plural(args[0])}" if len(set(args)) == 1 else f"a list of {len(args)} values"
    if origin in (tuple, list):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping such as {a: b}"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "null",
             Any: "any value"}
    return names.get(hint, str(hint))


def _plural(hint: Any) -> str:
    return {int: "whole numbers", float: "numbers", str: "texts", bool: "booleans"}.get(hint, "values")
