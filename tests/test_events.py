import numpy as np
import pytest

from videoseq.events import EventDetector, EventOptions, detect_events, span_steps

CLASSES = ["Nothing", "Swipe", "Grow"]


def probs(label: str, score: float) -> np.ndarray:
    """``score`` on ``label``, the rest spread over the other classes."""
    p = np.full(len(CLASSES), (1 - score) / (len(CLASSES) - 1))
    p[CLASSES.index(label)] = score
    return p


def run(steps, options):
    """The events of ``(label, score)`` steps 0.1 s apart."""
    return detect_events(CLASSES, [(i / 10, i, probs(label, score)) for i, (label, score) in enumerate(steps)],
                         options)


def test_worked_example_of_the_module_docstring():
    steps = [("Swipe", 0.3), ("Swipe", 0.6), ("Swipe", 0.9), ("Swipe", 0.7), ("Nothing", 0.9)]
    (event,) = run(steps, EventOptions(smooth=1, threshold=0.5, background="Nothing", min_duration=0.2))
    assert (event.label, event.start_s, event.end_s, event.start_frame, event.end_frame) == ("Swipe", 0.1, 0.3, 1, 3)
    assert event.peak == pytest.approx(0.9) and event.mean == pytest.approx((0.6 + 0.9 + 0.7) / 3)


def test_background_class_and_low_scores_never_make_events():
    steps = [("Nothing", 0.99)] * 5 + [("Grow", 0.4)] * 5
    assert run(steps, EventOptions(smooth=1, threshold=0.5, background="Nothing")) == []


def test_min_duration_drops_blips_and_refractory_drops_quick_repeats():
    blip = [("Swipe", 0.9), ("Nothing", 0.9)]
    assert run(blip * 2, EventOptions(smooth=1, background="Nothing", min_duration=0.05)) == []
    long = [("Swipe", 0.9)] * 3 + [("Nothing", 0.9)]
    assert len(run(long * 2, EventOptions(smooth=1, background="Nothing"))) == 2
    events = run(long * 2, EventOptions(smooth=1, background="Nothing", refractory=0.3))
    assert len(events) == 1 and events[0].end_s == pytest.approx(0.2)


def test_mean_smoothing_bridges_a_one_step_dropout():
    steps = [("Swipe", 0.9), ("Swipe", 0.9), ("Nothing", 0.6), ("Swipe", 0.9), ("Swipe", 0.9), ("Nothing", 0.9),
             ("Nothing", 0.9), ("Nothing", 0.9)]
    assert len(run(steps, EventOptions(smooth=1, background="Nothing"))) == 2
    (event,) = run(steps, EventOptions(smooth=3, background="Nothing", threshold=0.5))
    assert event.label == "Swipe" and event.start_frame == 0


def test_majority_smoothing_takes_the_most_frequent_label():
    steps = [("Grow", 0.6), ("Swipe", 0.7), ("Grow", 0.6), ("Grow", 0.6)]
    events = run(steps, EventOptions(smooth=3, method="majority", threshold=0.5))
    assert [e.label for e in events] == ["Grow"]


@pytest.mark.parametrize("kwargs, match", [({"method": "median"}, "smoothing"), ({"smooth": 0}, "window"),
                                           ({"threshold": 2}, "threshold"), ({"refractory": -1}, "refractory")])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EventOptions(**kwargs)


def test_unknown_background_class_is_named():
    with pytest.raises(ValueError, match="'No gesture'"):
        EventDetector(CLASSES, EventOptions(background="No gesture"))


def test_a_finished_sequence_has_the_events_of_a_live_detector_and_the_open_one_at_the_end():
    steps = [("Swipe", 0.9)] * 4 + [("Nothing", 0.9)] * 3 + [("Grow", 0.8)] * 4  # Grow still open at the end
    options = EventOptions(smooth=1, background="Nothing")
    live = EventDetector(CLASSES, options)
    closed = [e for i, (label, score) in enumerate(steps) for e in live.update(i / 10, i, probs(label, score))]
    assert [e.label for e in closed] == ["Swipe"]
    events = run(steps, options)
    assert events == closed + live.flush()
    assert [(e.label, e.start_frame, e.end_frame) for e in events] == [("Swipe", 0, 3), ("Grow", 7, 10)]


def test_steps_with_spans_make_events_from_the_first_start_to_the_last_end():
    steps = [("Nothing", 0.9), ("Swipe", 0.8), ("Swipe", 0.6), ("Grow", 0.7)]
    spans = np.array([[0.0, 2.0], [1.0, 3.0], [2.0, 4.0], [3.0, 5.0]])
    frames = (spans * 25).astype(int)
    step_probs = np.stack([probs(label, score) for label, score in steps])
    events = detect_events(CLASSES, span_steps(step_probs, spans, frames),
                           EventOptions(smooth=1, background="Nothing", min_duration=2.5))
    (event,) = events  # Grow lasts 2 s, shorter than 2.5
    assert (event.label, event.start_s, event.end_s, event.start_frame, event.end_frame) == ("Swipe", 1.0, 4.0, 25, 100)
    assert event.peak == pytest.approx(0.8) and event.mean == pytest.approx(0.7)
