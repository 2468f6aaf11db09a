"""Synthetic gesture clips: determinism, geometry of each motion, captions and the UCF-style tree."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoseq.synth import (
    FLIP_SWAP,
    GESTURE_CLASSES,
    MOTION_WORDS,
    PALETTE,
    ClipSpec,
    caption_sentences,
    random_spec,
    render_clip,
    trajectory,
    write_gesture_dataset,
)

FRAMES, SIZE = 8, 64
PAIRS = [("MoveLeft", "MoveRight"), ("MoveUp", "MoveDown"), ("Shrink", "Grow"),
         ("RotateCounterClockwise", "RotateClockwise")]


def _clip(label: str, seed: int, *, size: int = SIZE, noise: float | None = None) -> tuple[ClipSpec, np.ndarray]:
    rng = np.random.default_rng(seed)
    spec = random_spec(label, rng)
    if noise is not None:
        spec = dataclasses.replace(spec, noise=noise)
    return spec, render_clip(spec, frames=FRAMES, size=size, rng=rng)


def _masks(spec: ClipSpec, clip: np.ndarray) -> np.ndarray:
    """Object pixels found by colour alone (independent of the renderer's geometry), (T, H, W)."""
    distance = np.linalg.norm(clip.astype(np.float32) - np.array(PALETTE[spec.colour], np.float32), axis=-1)
    return distance < 70


def _centroids(masks: np.ndarray) -> np.ndarray:
    """(T, 2) mean x, y of each frame's object pixels."""
    centres = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        assert len(xs) > 0, "object not found in a frame"
        centres.append((xs.mean(), ys.mean()))
    return np.array(centres)


def _orientations(masks: np.ndarray) -> np.ndarray:
    """Unwrapped angle (degrees, image coordinates) from the centroid to the object's far tip."""
    angles = []
    for mask, (cx, cy) in zip(masks, _centroids(masks)):
        ys, xs = np.nonzero(mask)
        dist = np.hypot(xs - cx, ys - cy)
        tip = dist > 0.8 * dist.max()
        angles.append(np.arctan2(ys[tip].mean() - cy, xs[tip].mean() - cx))
    return np.degrees(np.unwrap(np.array(angles)))


def test_class_order_flip_swap_and_motion_words() -> None:
    assert GESTURE_CLASSES == ("MoveLeft", "MoveRight", "MoveUp", "MoveDown", "Grow", "Shrink",
                               "RotateClockwise", "RotateCounterClockwise", "Static")
    assert FLIP_SWAP == {"MoveLeft": "MoveRight", "MoveRight": "MoveLeft",
                         "RotateClockwise": "RotateCounterClockwise", "RotateCounterClockwise": "RotateClockwise"}
    assert set(MOTION_WORDS) == set(GESTURE_CLASSES)


def test_render_is_deterministic_per_seed() -> None:
    for label in GESTURE_CLASSES:
        _, first = _clip(label, 7)
        _, again = _clip(label, 7)
        _, other = _clip(label, 8)
        assert first.dtype == np.uint8 and first.shape == (FRAMES, SIZE, SIZE, 3)
        assert np.array_equal(first, again)
        assert not np.array_equal(first, other)


@pytest.mark.parametrize("label", GESTURE_CLASSES)
def test_object_stays_inside_the_frame(label: str) -> None:
    for seed in range(20):
        spec, clip = _clip(label, seed)
        track = trajectory(spec, frames=FRAMES, size=SIZE)
        assert (track.x - track.radius).min() >= 1 and (track.x + track.radius).max() <= SIZE - 2
        assert (track.y - track.radius).min() >= 1 and (track.y + track.radius).max() <= SIZE - 2
        masks = _masks(spec, clip)
        border = masks[:, 0, :].any() or masks[:, -1, :].any() or masks[:, :, 0].any() or masks[:, :, -1].any()
        assert not border, f"{spec} touches the frame edge"


@pytest.mark.parametrize(("label", "axis", "sign"), [("MoveLeft", 0, -1), ("MoveRight", 0, 1),
                                                     ("MoveUp", 1, -1), ("MoveDown", 1, 1)])
def test_moves_are_monotonic_and_cross_much_of_the_frame(label: str, axis: int, sign: int) -> None:
    for seed in range(10):
        spec, clip = _clip(label, seed)
        centres = _centroids(_masks(spec, clip))
        along, across = centres[:, axis] * sign, centres[:, 1 - axis]
        assert np.all(np.diff(along) > 0), f"{label} not monotonic: {centres[:, axis]}"
        assert along[-1] - along[0] >= 0.4 * SIZE
        assert np.ptp(across) < 1.5


@pytest.mark.parametrize(("label", "sign"), [("Grow", 1), ("Shrink", -1)])
def test_grow_and_shrink_change_area_monotonically(label: str, sign: int) -> None:
    for seed in range(10):
        spec, clip = _clip(label, seed)
        masks = _masks(spec, clip)
        areas = masks.sum(axis=(1, 2)) * sign
        assert np.all(np.diff(areas) > 0), f"{label} areas {areas}"
        # The radius changes at least 1.6-fold, so the area at least 2.56-fold (less at pixel resolution).
        assert max(abs(areas[0]), abs(areas[-1])) >= 2.0 * min(abs(areas[0]), abs(areas[-1]))
        assert np.ptp(_centroids(masks), axis=0).max() < 1.5


@pytest.mark.parametrize(("label", "sign"), [("RotateClockwise", 1), ("RotateCounterClockwise", -1)])
def test_rotation_direction_as_seen_by_a_viewer(label: str, sign: int) -> None:
    # y points down in an image, so a growing atan2(dy, dx) turns clockwise on screen.
    for seed in range(10):
        spec, clip = _clip(label, seed, size=96)
        angles = _orientations(_masks(spec, clip)) * sign
        assert np.all(np.diff(angles) > 0), f"{label} angles {angles}"
        assert angles[-1] - angles[0] > 80


def test_static_object_stays_put() -> None:
    for seed in range(10):
        spec, clip = _clip("Static", seed)
        masks = _masks(spec, clip)
        assert np.ptp(_centroids(masks), axis=0).max() < 0.5
        areas = masks.sum(axis=(1, 2))
        assert areas.max() - areas.min() <= 0.05 * areas.max() + 2


@pytest.mark.parametrize(("backwards", "forward"), PAIRS)
def test_mirrored_class_is_the_same_frames_in_reverse_order(backwards: str, forward: str) -> None:
    for seed in range(5):
        _, back = _clip(backwards, seed, noise=0.0)
        _, fwd = _clip(forward, seed, noise=0.0)
        assert np.array_equal(back, fwd[::-1])
        # Hence identical mean-over-time images: order is the only cue.
        assert np.array_equal(back.mean(axis=0), fwd.mean(axis=0))
        _, noisy_back = _clip(backwards, seed)
        _, noisy_fwd = _clip(forward, seed)
        assert np.abs(noisy_back.astype(float) - noisy_fwd[::-1]).mean() < 6


def test_horizontal_flip_matches_flip_swap() -> None:
    for seed in range(5):
        spec, clip = _clip("MoveLeft", seed)
        flipped_x = _centroids(_masks(spec, clip[:, :, ::-1]))[:, 0]
        assert FLIP_SWAP["MoveLeft"] == "MoveRight" and np.all(np.diff(flipped_x) > 0)
        spec, clip = _clip("RotateClockwise", seed, size=96)
        flipped_angles = _orientations(_masks(spec, clip[:, :, ::-1]))
        assert FLIP_SWAP["RotateClockwise"] == "RotateCounterClockwise" and np.all(np.diff(flipped_angles) < 0)


@pytest.mark.parametrize("label", GESTURE_CLASSES)
def test_captions_name_colour_shape_and_motion(label: str) -> None:
    rng = np.random.default_rng(3)
    for n in range(2, 6):
        spec = random_spec(label, rng)
        sentences = caption_sentences(spec, rng, n)
        assert len(sentences) == n and len(set(sentences)) == n
        for sentence in sentences:
            words = sentence.split()
            assert spec.colour in words and spec.shape in words and MOTION_WORDS[label] in sentence
            for article, noun in zip(words, words[1:]):
                assert article != ("a" if noun[0] in "aeiou" else "an"), sentence
            if label == "RotateClockwise":
                assert "counter" not in sentence
            if label == "MoveLeft":
                assert "right" not in sentence
            if label == "MoveRight":
                assert "left" not in sentence


def test_invalid_specs_and_arguments_are_rejected() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="shape"):
        ClipSpec(label="RotateClockwise", shape="square", colour="red", size="small", speed="slow")
    with pytest.raises(ValueError, match="colour"):
        ClipSpec(label="Grow", shape="square", colour="pink", size="small", speed="slow")
    with pytest.raises(ValueError, match="label"):
        random_spec("Jump", rng)
    spec = random_spec("Grow", rng)
    with pytest.raises(ValueError, match="n="):
        caption_sentences(spec, rng, 6)
    with pytest.raises(ValueError, match="frames"):
        render_clip(spec, frames=3, size=SIZE, rng=rng)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"per_class": 0}, "per_class"), ({"size": 16}, "size"), ({"frames": 3}, "frames"),
    ({"groups": 3, "test_groups": (4,)}, "test_groups"), ({"groups": 3, "test_groups": (1, 2, 3)}, "test_groups"),
    ({"per_class": 2, "groups": 6}, "per_class"),
])
def test_dataset_arguments_are_validated(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        write_gesture_dataset(tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "videos").exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gestures")
    return write_gesture_dataset(root, per_class=4, seed=1, frames=6, size=32, groups=3, test_groups=(3,),
                                 captions=True, progress=False)


def _read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_split_files_follow_ucf101_format(dataset: Path) -> None:
    class_ind = (dataset / "splits" / "classInd.txt").read_text().splitlines()
    assert class_ind == [f"{i} {name}" for i, name in enumerate(GESTURE_CLASSES, 1)]
    train = [line.split() for line in (dataset / "splits" / "trainlist01.txt").read_text().splitlines()]
    test = [line.split() for line in (dataset / "splits" / "testlist01.txt").read_text().splitlines()]
    assert all(len(row) == 2 for row in train) and all(len(row) == 1 for row in test)
    for path, label_id in train:
        label = path.split("/")[0]
        assert int(label_id) == GESTURE_CLASSES.index(label) + 1
        assert Path(path).name.startswith(f"v_{label}_g")
    train_groups = {Path(row[0]).stem.split("_")[2] for row in train}
    test_groups = {Path(row[0]).stem.split("_")[2] for row in test}
    assert train_groups == {"g01", "g02"} and test_groups == {"g03"}
    # per_class=4 over 3 groups: g01 holds c01 and c02, the others c01.
    assert len(train) == 9 * 3 and len(test) == 9
    assert Counter(Path(row[0]).parent.name for row in test) == Counter(GESTURE_CLASSES)


def test_every_listed_clip_exists_and_decodes(dataset: Path) -> None:
    lines = (dataset / "splits" / "trainlist01.txt").read_text().splitlines()
    lines += (dataset / "splits" / "testlist01.txt").read_text().splitlines()
    for line in lines:
        frames = _read_frames(dataset / "videos" / line.split()[0])
        assert len(frames) == 6 and frames[0].shape == (32, 32, 3)


def test_twin_clips_of_a_pair_are_reversed_copies(dataset: Path) -> None:
    videos = dataset / "videos"
    left = np.array(_read_frames(videos / "MoveLeft" / "v_MoveLeft_g01_c01.avi"), np.float32)
    right = np.array(_read_frames(videos / "MoveRight" / "v_MoveRight_g01_c01.avi"), np.float32)
    unrelated = np.array(_read_frames(videos / "MoveRight" / "v_MoveRight_g02_c01.avi"), np.float32)
    twin_gap = np.abs(left - right[::-1]).mean()
    assert twin_gap < 8 and twin_gap < 0.5 * np.abs(left - unrelated[::-1]).mean()


def test_captions_csv_has_two_to_five_rows_per_clip(dataset: Path) -> None:
    with open(dataset / "captions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    per_clip = Counter(row["path"] for row in rows)
    assert len(per_clip) == 9 * 4 and all(2 <= count <= 5 for count in per_clip.values())
    for row in rows:
        label = row["path"].split("/")[0]
        assert (dataset / "videos" / row["path"]).is_file()
        assert MOTION_WORDS[label] in row["caption"] and any(c in row["caption"].split() for c in PALETTE)


def test_rewriting_gives_the_same_splits_and_captions(dataset: Path, tmp_path: Path) -> None:
    again = write_gesture_dataset(tmp_path, per_class=4, seed=1, frames=6, size=32, groups=3, test_groups=(3,),
                                  captions=True, progress=False)
    for name in ("splits/trainlist01.txt", "splits/testlist01.txt", "captions.csv"):
        assert (again / name).read_text() == (dataset / name).read_text()
    write_gesture_dataset(tmp_path, per_class=4, seed=1, frames=6, size=32, groups=3, test_groups=(3,),
                          progress=False)  # overwriting in place is allowed
    assert len(_read_frames(tmp_path / "videos" / "Grow" / "v_Grow_g01_c01.avi")) == 6
