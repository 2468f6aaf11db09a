"""Command-line numbers: parsed and range-checked by argparse, the flag named in the one-line error."""

import argparse

import pytest

from videoseq.flags import fraction, integer, non_negative_int, positive_float, positive_int, probability


@pytest.mark.parametrize(("parse", "text", "value"), [
    (positive_int, "3", 3), (non_negative_int, "0", 0), (positive_float, "0.25", 0.25), (probability, "1", 1.0),
    (fraction, "0", 0.0), (integer(1, 100), "100", 100),
])
def test_values_in_range_parse(parse, text, value):
    assert parse(text) == value and type(parse(text)) is type(value)


@pytest.mark.parametrize(("parse", "text", "said"), [
    (positive_int, "0", "a whole number >= 1, got 0"), (positive_int, "-1", ">= 1, got -1"),
    (positive_int, "2.5", "got '2.5'"), (non_negative_int, "-3", ">= 0"), (positive_float, "0", "> 0, got '0'"),
    (positive_float, "inf", "finite number > 0, got 'inf'"), (positive_float, "nan", "got 'nan'"),
    (positive_float, "-1e-9", "> 0"), (probability, "1.5", "in [0, 1]"), (fraction, "1", "in [0, 0.99]"),
    (integer(1, 100), "101", "in [1, 100], got 101"), (positive_float, "abc", "got 'abc'"),
])
def test_values_out_of_range_are_refused_naming_the_range(parse, text, said):
    with pytest.raises(argparse.ArgumentTypeError, match=said.replace("[", r"\[").replace("(", r"\(")):
        parse(text)


def test_the_command_line_names_the_flag_on_one_line(capsys):
    from videoseq.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["predict", "model.pt", "clip.avi", "--topk", "-1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["videoseq predict: error: argument --topk: must be a whole number >= 1, got -1; "
                                "see videoseq predict --help"]
