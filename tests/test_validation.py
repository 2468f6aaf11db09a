"""Values checked against their annotations: every kind the configs and heads use, with the key named."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

from videoseq.validation import ConfigError, OneOf, Range, check_keyword_args, check_value, describe


@pytest.mark.parametrize(("hint", "value", "expected"), [
    (int, 3, 3), (float, 2, 2), (float, "1e-3", 0.001), (bool, False, False), (str, "x", "x"),
    (int | None, None, None), (tuple[float, float], [0.5, 1], (0.5, 1)), (dict[str, str], {"a": "b"}, {"a": "b"}),
    (dict[str, Any], {"hidden": 3}, {"hidden": 3}), (Annotated[int, Range(1, 4)], 4, 4), (bool | str, "bf16", "bf16"),
    (Annotated[str, OneOf(("a", "b"))], "b", "b"), (Annotated[float, Range(0, low_open=True)] | None, 0.5, 0.5),
    (list[int], [1, 2], [1, 2]), (tuple[int, ...], [1, 2, 3], (1, 2, 3)),
])
def test_values_of_the_right_kind_pass_and_come_back_normalised(hint, value, expected):
    got = check_value("k", value, hint)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("hint", "value", "message"), [
    (int, 2.5, "k: must be a whole number, got 2.5"), (int, True, "k: must be a whole number, got True"),
    (int, "abc", "k: must be a whole number, got 'abc'"), (float, "abc", "k: must be a number, got 'abc'"),
    (float, float("nan"), "k: must be a number, got nan"), (float, ".inf", "must be a number"),
    (bool, 1, "k: must be true or false, got 1"), (str, 123, "k: must be text, got 123; quote it"),
    (tuple[float, float], [1], "k: must be a list of 2 numbers, got 1 values"),
    (tuple[float, float], [1, "x"], r"k\[1\]: must be a number, got 'x'"),
    (dict[str, str], [1], "k: must be a mapping"), (dict[str, str], {"a": 1}, "k.a: must be text, got 1"),
    (Annotated[int, Range(1, 4)], 0, r"k: must be in \[1, 4\], got 0"),
    (Annotated[float, Range(0, 1, high_open=True)], 1.0, r"k: must be in \[0, 1\), got 1.0"),
    (Annotated[float, Range(0, low_open=True)], 0, "k: must be > 0, got 0"),
    (Annotated[str, OneOf(("a", "b"))], "c", r"k: 'c' is not one of \['a', 'b'\]"),
    (Annotated[int, Range(1)] | None, "x", "k: must be a whole number >= 1 or null, got 'x'"),
])
def test_wrong_values_name_the_key_what_was_wanted_and_what_came(hint, value, message):
    with pytest.raises(ConfigError, match=message):
        check_value("k", value, hint)


def test_descriptions_read_as_words():
    assert describe(tuple[float, float]) == "a list of 2 numbers"
    assert describe(Annotated[int, Range(1)] | None) == "a whole number >= 1 or null"


def sample(feature_dim: int, *, hidden: int = 8, dropout: float = 0.5, bidirectional: bool = False) -> None:
    """A stand-in for a head's signature."""


def test_keyword_arguments_are_checked_by_name_type_and_range():
    assert check_keyword_args("model.head_args", sample, {"hidden": 4, "dropout": 0.0}) == {"hidden": 4, "dropout": 0.0}
    for given, message in [({"hiden": 4}, "model.head_args: unknown key 'hiden' for head 'x'; valid keys: "
                                          r"\['hidden', 'dropout', 'bidirectional'\]"),
                           ({"hidden": "abc"}, "model.head_args.hidden: must be a whole number, got 'abc'"),
                           ({"hidden": 0}, "model.head_args.hidden: must be >= 1, got 0"),
                           ({"dropout": 1.0}, r"model.head_args.dropout: must be in \[0, 1\), got 1.0"),
                           ({"bidirectional": "yes"}, "must be true or false")]:
        with pytest.raises(ConfigError, match=message):
            check_keyword_args("model.head_args", sample, given, owner="head 'x'")
