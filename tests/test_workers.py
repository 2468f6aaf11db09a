import ctypes
import os
import time

import pytest

from videoseq.workers import run_isolated


def test_isolated_workers_survive_a_hang_and_a_crash():
    # time.sleep stands in for a decoder that hangs, ctypes.string_at(0) for one that segfaults
    outcomes = sorted(run_isolated(time.sleep, [0.0, 60.0, 0.0], workers=2, timeout=3, progress=False),
                      key=lambda o: o.index)
    assert [o.error for o in outcomes][::2] == ["", ""]
    assert outcomes[1].error.startswith("timed out after 3 s")
    crashed = sorted(run_isolated(ctypes.string_at, [0, 0], workers=1, timeout=30, progress=False),
                     key=lambda o: o.index)
    assert [o.error for o in crashed] == ["the worker process died from SIGSEGV (a crash in the decoder?)"] * 2
    errors = list(run_isolated(os.fspath, [3], workers=1, timeout=30, progress=False))
    assert errors[0].error.startswith("TypeError")


def test_outcomes_cover_every_item_once_with_its_value():
    outcomes = list(run_isolated(abs, [-3, 4, -5, 0, -1], workers=2, timeout=30, progress=False))
    assert sorted((o.index, o.value) for o in outcomes) == [(0, 3), (1, 4), (2, 5), (3, 0), (4, 1)]


def test_bad_pool_settings_are_refused():
    with pytest.raises(ValueError, match="workers >= 1"):
        list(run_isolated(abs, [1], workers=0))
