import ctypes
import multiprocessing
import os
import time

import pytest

from videoseq.video.isolated import IsolatedPool, Outcome, Worker, run_isolated


def test_isolated_workers_survive_a_hang_and_a_crash():
    # time.sleep stands in for a decoder that hangs, ctypes.string_at(0) for one that segfaults
    outcomes = sorted(run_isolated(time.sleep, [0.0, 60.0, 0.0], workers=2, timeout=3),
                      key=lambda o: o.index)
    assert [o.error for o in outcomes][::2] == ["", ""]
    assert outcomes[1].error == "took longer than 3 s and was stopped" and outcomes[1].exception is None
    crashed = sorted(run_isolated(ctypes.string_at, [0, 0], workers=1, timeout=30),
                     key=lambda o: o.index)
    assert [o.error for o in crashed] == ["the worker process died (SIGSEGV)"] * 2
    errors = list(run_isolated(os.fspath, [3], workers=1, timeout=30))
    assert errors[0].error.startswith("TypeError") and isinstance(errors[0].exception, TypeError)


def test_a_worker_call_returns_the_value_raises_nothing_and_reports_an_overrun():
    worker = Worker(multiprocessing.get_context("spawn"), time.sleep)
    try:
        assert worker.call(0.0, timeout=30) == Outcome(0, None)
        assert worker.call("x", timeout=30).exception.__class__ is TypeError
        late = worker.call(60.0, timeout=1)
        assert late.error == "took longer than 1 s and was stopped" and worker.closed
    finally:
        worker.stop(kill=True)


def test_outcomes_cover_every_item_once_with_its_value():
    outcomes = list(run_isolated(abs, [-3, 4, -5, 0, -1], workers=2, timeout=30))
    assert sorted((o.index, o.value) for o in outcomes) == [(0, 3), (1, 4), (2, 5), (3, 0), (4, 1)]


def test_bad_pool_settings_are_refused():
    with pytest.raises(ValueError, match="workers >= 1"):
        list(run_isolated(abs, [1], workers=0))


def test_a_pool_reports_each_submitted_item_once_as_it_is_submitted_and_replaces_a_dead_worker():
    with IsolatedPool(ctypes.string_at, workers=1, timeout=30) as pool:
        pool.submit(7, 0)  # segfaults its worker
        first = pool.wait()
        assert [(o.index, o.error) for o in first] == [(7, "the worker process died (SIGSEGV)")] and not pool.busy
    with IsolatedPool(abs, workers=2, timeout=30, start="forkserver") as pool:
        for index in (3, 1, 2):
            pool.submit(index, -index)
        outcomes = []
        while pool.busy:
            outcomes += pool.wait()
        assert sorted((o.index, o.value) for o in outcomes) == [(1, 1), (2, 2), (3, 3)] and pool.wait() == []


def test_a_look_without_waiting_and_an_idle_worker_killed_from_outside_costs_no_item():
    with IsolatedPool(time.sleep, workers=1, timeout=30, start="forkserver") as pool:
        pool.submit(0, 0.0)
        outcomes = pool.wait()  # the worker starts, takes the item, answers
        pool.submit(1, 1.0)  # handed to the idle worker at once
        started = time.monotonic()
        assert pool.wait(block=False) == [] and time.monotonic() - started < 0.5 and pool.busy == 1
        outcomes += pool.wait()
        pool.workers[0].process.kill()  # dies while idle
        pool.workers[0].process.join()
        pool.submit(2, 0.0)
        while pool.busy:
            outcomes += pool.wait()
        assert [(o.index, o.error) for o in outcomes] == [(0, ""), (1, ""), (2, "")]
