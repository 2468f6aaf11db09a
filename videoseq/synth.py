"""Synthetic gesture videos whose classes differ only in temporal order.

Each clip shows one coloured shape on a low-contrast textured background. The
nine classes come in mirrored pairs: a MoveLeft clip is a MoveRight path played
backwards, Shrink is Grow backwards, RotateCounterClockwise is RotateClockwise
backwards (plus Static). The set of frames in a clip therefore says nothing
about which class of a pair it is; only their order does. A mean-pooling
temporal head sits near chance within each pair, a recurrent head can reach
~100%: the project's own check that a temporal head uses time.

``write_gesture_dataset`` writes the clips as a UCF101-style tree (videos/,
splits/classInd.txt, trainlist01.txt, testlist01.txt) so the same preparation
code serves UCF101 and this set. Clip ``k`` of MoveLeft and clip ``k`` of
MoveRight are twins drawn from the same random stream: identical frames in
reversed order (only the per-frame pixel noise differs).

Conventions: frames are uint8 RGB ``(T, H, W, 3)``; positions are pixels with
x to the right and y down; angles are degrees in image coordinates, so an
increasing angle turns clockwise as seen by a viewer of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from videoseq.errors import UsageError
from videoseq.progress import progress_bar
from videoseq.tables import write_csv

GESTURE_CLASSES: tuple[str, ...] = (
    "MoveLeft",
    "MoveRight",
    "MoveUp",
    "MoveDown",
    "Grow",
    "Shrink",
    "RotateClockwise",
    "RotateCounterClockwise",
    "Static",
)

# Label swap under a horizontal flip (mirror left-right); other labels keep theirs.
FLIP_SWAP: dict[str, str] = {
    "MoveLeft": "MoveRight",
    "MoveRight": "MoveLeft",
    "RotateClockwise": "RotateCounterClockwise",
    "RotateCounterClockwise": "RotateClockwise",
}

# The word(s) every caption of a class contains.
MOTION_WORDS: dict[str, str] = {
    "MoveLeft": "left",
    "MoveRight": "right",
    "MoveUp": "up",
    "MoveDown": "down",
    "Grow": "grows",
    "Shrink": "shrinks",
    "RotateClockwise": "clockwise",
    "RotateCounterClockwise": "counter-clockwise",
    "Static": "still",
}

PALETTE: dict[str, tuple[int, int, int]] = {  # RGB, saturated so the object stands out
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "orange": (250, 140, 30),
    "purple": (160, 60, 210),
    "cyan": (40, 220, 230),
}

SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "star", "cross", "arrow")
# Shapes without rotational symmetry: their orientation is unambiguous, so a turn is visible.
ROTATION_SHAPES: tuple[str, ...] = ("arrow",)
SIZES: tuple[str, ...] = ("small", "large")
SPEEDS: tuple[str, ...] = ("slow", "fast")
BACKGROUNDS: tuple[str, ...] = ("noise", "stripes", "checker")

# The mirrored class of each pair plays the forward class's path backwards.
_PLAYS_BACKWARDS: dict[str, str] = {
    "MoveLeft": "MoveRight",
    "MoveUp": "MoveDown",
    "Shrink": "Grow",
    "RotateCounterClockwise": "RotateClockwise",
}

# Geometry, as fractions of the frame side.
_MARGIN = 0.03  # gap kept between the object's bounding circle and the frame edge
_MARGIN_PX = 2.0  # ... and at least this many pixels, so anti-aliased edges stay inside too
_RADIUS = {"small": 0.17, "large": 0.22}  # circumradius of the object
_TRAVEL = {"slow": (0.42, 0.52), "fast": (0.52, 0.62)}  # distance moved over the clip
_GROW_MAX = 1.35  # largest radius of Grow/Shrink, relative to _RADIUS
_GROW_RATIO = {"slow": (1.6, 2.0), "fast": (2.2, 2.8)}  # largest / smallest radius
_SPIN_SCALE = 1.6  # turning arrows are drawn larger, so the sweep of the tip reads at small input sizes
_SPIN = {"slow": (160.0, 220.0), "fast": (240.0, 320.0)}  # degrees turned over the clip
# A turn sweeps symmetrically about pointing up, give or take this many degrees, as a hand
# turns from upright (a uniform start angle over the circle left the direction of turning
# unlearnable for the demo's small from-scratch model: ~50% within the pair).
_UPRIGHT_JITTER = 20.0
_NOISE_STD = (1.5, 4.0)  # per-frame Gaussian pixel noise, grey levels


@dataclass(frozen=True)
class ClipSpec:
    """The parameters a clip is made from (everything but background texture and noise).

    ``place`` says where the path lies in the room the object has: each value in
    [0, 1] maps to the lowest to highest possible position along x and y.
    ``angle`` is the orientation (degrees) where the forward class's path
    starts; the backwards class of a pair ends there. ``amount`` in [0, 1] picks
    the extent of the motion within the range of its ``speed``.
    """

    label: str
    shape: str
    colour: str
    size: str
    speed: str
    background: str = "noise"
    place: tuple[float, float] = (0.5, 0.5)
    angle: float = 0.0
    amount: float = 0.5
    noise: float = 2.0

    def __post_init__(self) -> None:
        for field, valid in (
            ("label", GESTURE_CLASSES),
            ("shape", SHAPES),
            ("colour", tuple(PALETTE)),
            ("size", SIZES),
            ("speed", SPEEDS),
            ("background", BACKGROUNDS),
        ):
            if getattr(self, field) not in valid:
                raise ValueError(f"ClipSpec.{field}={getattr(self, field)!r} is unknown; use one of {list(valid)}")
        if self.label.startswith("Rotate") and self.shape not in ROTATION_SHAPES:
            raise ValueError(
                f"ClipSpec.shape={self.shape!r} looks the same after a turn, so {self.label} would be "
                f"invisible; use one of {list(ROTATION_SHAPES)}"
            )
        if len(self.place) != 2 or not all(0.0 <= v <= 1.0 for v in (*self.place, self.amount)):
            raise ValueError(f"ClipSpec.place={self.place!r} and amount={self.amount!r} must lie in [0, 1]")
        if self.noise < 0:
            raise ValueError(f"ClipSpec.noise={self.noise!r} must be >= 0 (std of pixel noise)")


@dataclass(frozen=True)
class Trajectory:
    """Per-frame object pose in pixels: centre, circumradius and orientation (degrees)."""

    x: np.ndarray  # (T,)
    y: np.ndarray  # (T,)
    radius: np.ndarray  # (T,)
    angle: np.ndarray  # (T,) increasing = clockwise on screen

    def reversed(self) -> Trajectory:
        """The same path played backwards."""
        return Trajectory(self.x[::-1], self.y[::-1], self.radius[::-1], self.angle[::-1])


def _check_clip_shape(frames: int, size: int) -> None:
    if frames < 4:
        raise UsageError(f"frames={frames} is too short to show a motion; use frames >= 4")
    if size < 32:
        raise UsageError(f"size={size} is too small to draw a shape; use size >= 32")


def _lerp(bounds: tuple[float, float], t: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * t


def _low_end(u: float, radius: float, span: float, margin: float) -> float:
    """Lowest centre coordinate (frame fraction) of a path of length ``span`` placed at ``u``."""
    room = 1.0 - 2.0 * margin - 2.0 * radius - span
    return margin + radius + u * room


def _forward_track(label: str, spec: ClipSpec, progress: np.ndarray, margin: float) -> Trajectory:
    """Pose over time in frame fractions for a forward (or Static) class."""
    radius = _RADIUS[spec.size] * (_SPIN_SCALE if label == "RotateClockwise" else 1.0)
    ones = np.ones_like(progress)
    x = ones * _low_end(spec.place[0], radius, 0.0, margin)
    y = ones * _low_end(spec.place[1], radius, 0.0, margin)
    radii = ones * radius
    angle = ones * spec.angle
    if label in ("MoveRight", "MoveDown"):
        # Capped by the room left in tiny frames, where the pixel margin eats into it.
        travel = min(_lerp(_TRAVEL[spec.speed], spec.amount), 1.0 - 2.0 * margin - 2.0 * radius)
        axis = 0 if label == "MoveRight" else 1
        path = _low_end(spec.place[axis], radius, travel, margin) + travel * progress
        x, y = (path, y) if axis == 0 else (x, path)
    elif label == "Grow":
        largest = radius * _GROW_MAX
        smallest = largest / _lerp(_GROW_RATIO[spec.speed], spec.amount)
        radii = smallest + (largest - smallest) * progress
        x = ones * _low_end(spec.place[0], largest, 0.0, margin)
        y = ones * _low_end(spec.place[1], largest, 0.0, margin)
    elif label == "RotateClockwise":
        angle = spec.angle + _lerp(_SPIN[spec.speed], spec.amount) * progress
    return Trajectory(x, y, radii, angle)


def trajectory(spec: ClipSpec, *, frames: int, size: int) -> Trajectory:
    """Where the object is, how big and how turned, in every frame of a ``size`` x ``size`` clip.

    The backwards class of a pair gets the forward path reversed, so for the same
    spec MoveLeft's frames are exactly MoveRight's in reverse order.
    """
    _check_clip_shape(frames, size)
    forward = _PLAYS_BACKWARDS.get(spec.label, spec.label)
    margin = max(_MARGIN, _MARGIN_PX / size)
    track = _forward_track(forward, spec, np.linspace(0.0, 1.0, frames), margin)
    if forward != spec.label:
        track = track.reversed()
    return Trajectory(track.x * size, track.y * size, track.radius * size, track.angle)


def _unit_polygon(points: np.ndarray) -> np.ndarray:
    """Move a polygon's area centroid to the origin and scale its farthest vertex to 1."""
    x, y = points[:, 0], points[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2.0
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6.0 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6.0 * area)
    centred = points - np.array([cx, cy])
    return centred / np.linalg.norm(centred, axis=1).max()


def _regular(n: int, start: float, radii: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """Vertices on circles around the origin; alternating radii give a star."""
    angles = start + np.arange(n) * 2.0 * np.pi / n
    r = np.resize(np.array(radii), n)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


# Outlines at orientation 0; asymmetric shapes point along +x.
_UNIT_SHAPES: dict[str, np.ndarray] = {
    "square": _unit_polygon(_regular(4, np.pi / 4)),
    "circle": _unit_polygon(_regular(48, 0.0)),
    "triangle": _unit_polygon(np.array([[1.0, 0.0], [-0.6, 0.5], [-0.6, -0.5]])),
    "star": _unit_polygon(_regular(10, -np.pi / 2, (1.0, 0.45))),
    "cross": _unit_polygon(
        np.array(
            [[0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3],
             [-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3]]
        )
    ),
    "arrow": _unit_polygon(
        np.array([[1.0, 0.0], [0.2, 0.55], [0.2, 0.22], [-0.9, 0.22], [-0.9, -0.22], [0.2, -0.22], [0.2, -0.55]])
    ),
}

_SUBPIXEL_BITS = 4  # cv2 drawing with 1/16-pixel vertex precision, so slow motion stays smooth


def _object_alpha(shape: str, track: Trajectory, size: int) -> np.ndarray:
    """Anti-aliased coverage of the object in each frame, (T, H, W, 1) in [0, 1]."""
    outline = _UNIT_SHAPES[shape]
    alpha = np.zeros((len(track.x), size, size), np.uint8)
    for t in range(len(track.x)):
        theta = math.radians(float(track.angle[t]))
        rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        points = outline @ rotation.T * track.radius[t] + np.array([track.x[t], track.y[t]])
        fixed = np.rint(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillPoly(alpha[t], [fixed], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    return alpha[..., None].astype(np.float32) / 255.0


def _pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A background texture in [-1, 1], (H, W)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "noise":  # smooth noise: a coarse random grid upsampled
        cells = int(rng.integers(3, 7))
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        smooth = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        return smooth / max(float(np.abs(smooth).max()), 1e-6)
    if kind == "stripes":
        theta, cycles, phase = rng.uniform(0, np.pi), rng.uniform(2, 6), rng.uniform(0, 2 * np.pi)
        along = (xx * math.cos(theta) + yy * math.sin(theta)) / size
        return np.sin(2 * np.pi * cycles * along + phase)
    cells = int(rng.integers(3, 9))  # checker
    return np.where(((xx * cells // size) + (yy * cells // size)) % 2 == 0, 1.0, -1.0).astype(np.float32)


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A dim, slightly tinted, low-contrast textured background, float (H, W, 3)."""
    pattern = _pattern(kind, size, rng)
    grey, tint, contrast = rng.uniform(35, 105), rng.uniform(-12, 12, 3), rng.uniform(8, 16)
    return (grey + tint + contrast * pattern[..., None]).astype(np.float32)


def render_clip(spec: ClipSpec, *, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a clip, uint8 RGB ``(frames, size, size, 3)``.

    ``rng`` supplies the background texture and the per-frame pixel noise; the
    same spec and the same generator state give byte-identical frames.
    """
    track = trajectory(spec, frames=frames, size=size)
    background = _background(spec.background, size, rng)  # (H, W, 3)
    alpha = _object_alpha(spec.shape, track, size)  # (T, H, W, 1)
    noise = rng.standard_normal((frames, size, size, 3), dtype=np.float32) * np.float32(spec.noise)
    colour = np.array(PALETTE[spec.colour], np.float32)
    clip = background * (1.0 - alpha) + colour * alpha + noise  # (T, H, W, 3)
    return np.clip(np.rint(clip), 0, 255).astype(np.uint8)


def random_spec(label: str, rng: np.random.Generator) -> ClipSpec:
    """Draw clip parameters for ``label``.

    The draws do not depend on which class of a mirrored pair is asked for, so
    the same generator state gives MoveLeft and MoveRight the same path, one
    reversed: the two classes share one distribution of frames.
    """
    if label not in GESTURE_CLASSES:
        raise ValueError(f"label={label!r} is unknown; use one of {list(GESTURE_CLASSES)}")
    shapes = ROTATION_SHAPES if label.startswith("Rotate") else SHAPES
    spec = ClipSpec(
        label=label,
        shape=str(rng.choice(shapes)),
        colour=str(rng.choice(list(PALETTE))),
        size=str(rng.choice(SIZES)),
        speed=str(rng.choice(SPEEDS)),
        background=str(rng.choice(BACKGROUNDS)),
        place=(float(rng.uniform()), float(rng.uniform())),
        angle=float(rng.uniform(0.0, 360.0)),
        amount=float(rng.uniform()),
        noise=float(rng.uniform(*_NOISE_STD)),
    )
    if label.startswith("Rotate"):
        spin = _lerp(_SPIN[spec.speed], spec.amount)
        jitter = (spec.angle / 180.0 - 1.0) * _UPRIGHT_JITTER  # reuses the uniform draw
        spec = replace(spec, angle=-90.0 - spin / 2.0 + jitter)
    return spec


_PREDICATES: dict[str, tuple[str, ...]] = {
    "MoveLeft": ("moves left", "slides to the left", "travels left across the frame",
                 "drifts toward the left", "glides left"),
    "MoveRight": ("moves right", "slides to the right", "travels right across the frame",
                  "drifts toward the right", "glides right"),
    "MoveUp": ("moves up", "slides up", "rises up the frame", "floats upward", "travels up"),
    "MoveDown": ("moves down", "slides down", "drops down the frame", "sinks downward", "travels down"),
    "Grow": ("grows", "grows larger", "grows bigger", "grows in size", "grows to fill more of the frame"),
    "Shrink": ("shrinks", "shrinks smaller", "shrinks in size", "shrinks away", "shrinks to a smaller size"),
    "RotateClockwise": ("rotates clockwise", "turns clockwise", "spins clockwise",
                        "rotates in a clockwise direction", "turns around clockwise"),
    "RotateCounterClockwise": ("rotates counter-clockwise", "turns counter-clockwise",
                               "spins counter-clockwise", "rotates in a counter-clockwise direction",
                               "turns around counter-clockwise"),
    "Static": ("stays still", "sits still", "remains still", "holds still", "stands still in place"),
}
_SUBJECTS = ("a {size} {colour} {shape}", "the {colour} {shape}", "a {colour} {shape}", "the {size} {colour} {shape}")
_SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
_ADVERBS = {"slow": ("slowly", "gently"), "fast": ("quickly", "rapidly")}


def _with_article(phrase: str) -> str:
    """Turn a leading "a" into "an" before a vowel ("a orange" -> "an orange")."""
    words = phrase.split(" ", 2)
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def caption_sentences(spec: ClipSpec, rng: np.random.Generator, n: int) -> list[str]:
    """``n`` (2-5) different lower-case sentences describing the clip.

    Every sentence names the object's colour and shape and contains the motion
    word of its class (``MOTION_WORDS``), e.g. "a small red square slides to the
    left", "the red square moves left".
    """
    if not 2 <= n <= 5:
        raise ValueError(f"n={n} captions asked for; use 2 to 5 reference sentences per clip")
    predicates = _PREDICATES[spec.label]
    sentences = []
    for index in rng.choice(len(predicates), size=n, replace=False):
        subject = str(rng.choice(_SUBJECTS)).format(
            size=str(rng.choice(_SIZE_WORDS[spec.size])), colour=spec.colour, shape=spec.shape
        )
        adverb = str(rng.choice(_ADVERBS[spec.speed])) + " " if spec.label != "Static" and rng.uniform() < 0.3 else ""
        sentences.append(_with_article(f"{subject} {adverb}{predicates[index]}"))
    return sentences


def _clip_rngs(seed: int, label: str, index: int) -> list[np.random.Generator]:
    """Generators for a clip's spec, pixels and captions.

    Keyed by the label's pair (not the label) and the clip index, so clip ``k`` of
    MoveLeft and of MoveRight are twins, and adding clips leaves earlier ones unchanged.
    """
    pair = GESTURE_CLASSES.index(_PLAYS_BACKWARDS.get(label, label))
    children = np.random.SeedSequence([seed, pair, index]).spawn(3)
    return [np.random.default_rng(child) for child in children]


def _clip_path(label: str, index: int, groups: int) -> tuple[str, int]:
    """UCF-style relative path and 1-based group of clip ``index``; clips cycle through the groups."""
    group, within = index % groups + 1, index // groups + 1
    return f"{label}/v_{label}_g{group:02d}_c{within:02d}.avi", group


def write_avi(path: Path, clip: np.ndarray, fps: float) -> None:
    """Write RGB frames as an MJPG .avi."""
    height, width = clip.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot open {path} for writing with the MJPG codec; check the folder is writable")
    try:
        for frame in clip:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _resolve_test_groups(groups: int, test_groups: tuple[int, ...] | None) -> tuple[int, ...]:
    """Default: the last third of the groups (at least one)."""
    if groups < 2:
        raise UsageError(f"groups={groups} leaves nothing to split; use groups >= 2")
    if test_groups is None:
        return tuple(range(groups - max(1, groups // 3) + 1, groups + 1))
    chosen = tuple(sorted(set(test_groups)))
    if not chosen or chosen[0] < 1 or chosen[-1] > groups or len(chosen) == groups:
        raise UsageError(
            f"test_groups={test_groups!r} must name some but not all of the groups 1..{groups}"
        )
    return chosen


def _check_dataset_args(per_class: int, groups: int, test_groups: tuple[int, ...], fps: float) -> None:
    if per_class < 1:
        raise UsageError(f"per_class={per_class}; use per_class >= 1")
    if fps <= 0:
        raise UsageError(f"fps={fps}; use a positive frame rate")
    if per_class < test_groups[0]:
        raise UsageError(
            f"per_class={per_class} with groups={groups} puts no clip in test groups {test_groups} "
            f"(clip k goes to group k % groups + 1); use per_class >= {test_groups[0]} or fewer groups"
        )


def _write_clip(videos: Path, relative: str, seed: int, index: int, *, frames: int, size: int, fps: float
                ) -> list[tuple[str, str]]:
    """Render and write one clip; return its (path, caption) rows, 2-5 of them."""
    label = relative.split("/", 1)[0]
    spec_rng, pixel_rng, caption_rng = _clip_rngs(seed, label, index)
    spec = random_spec(label, spec_rng)
    (videos / label).mkdir(parents=True, exist_ok=True)
    write_avi(videos / relative, render_clip(spec, frames=frames, size=size, rng=pixel_rng), fps)
    count = int(caption_rng.integers(2, 6))
    return [(relative, text) for text in caption_sentences(spec, caption_rng, count)]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_gesture_dataset(
    out_dir: str | Path,
    *,
    per_class: int = 30,
    seed: int = 0,
    frames: int = 24,
    size: int = 112,
    fps: float = 12.0,
    groups: int = 6,
    test_groups: tuple[int, ...] | None = None,
    captions: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``per_class`` clips of each gesture class as a UCF101-style tree; return ``out_dir``.

    Layout::

        out_dir/videos/<Class>/v_<Class>_gNN_cNN.avi
        out_dir/splits/classInd.txt      "1 MoveLeft" ... (1-based)
        out_dir/splits/trainlist01.txt   "<Class>/v_<Class>_gNN_cNN.avi <label_id>"
        out_dir/splits/testlist01.txt    "<Class>/v_<Class>_gNN_cNN.avi"
        out_dir/captions.csv             path,caption (2-5 rows per clip; only with captions=True)
        out_dir/manifest.csv, classes.txt the same clips and splits as a manifest with a caption
                                         column, one row per reference (only with captions=True)

    Clip ``k`` (0-based) of a class goes to group ``k % groups + 1``; the groups in
    ``test_groups`` (default: the last third) form the test split, so train and test
    are group-disjoint. Files of the same name are overwritten; clips of an
    earlier, larger run stay in videos/ but are not listed in the splits.
    """
    _check_clip_shape(frames, size)
    chosen = _resolve_test_groups(groups, test_groups)
    _check_dataset_args(per_class, groups, chosen, fps)
    root = Path(out_dir)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    train, test, caption_rows = [], [], []
    jobs = [(label, index) for label in GESTURE_CLASSES for index in range(per_class)]
    for label, index in progress_bar(jobs, desc="gesture clips", unit="clip", disable=not progress):
        relative, group = _clip_path(label, index, groups)
        rows = _write_clip(root / "videos", relative, seed, index, frames=frames, size=size, fps=fps)
        if group in chosen:
            test.append(relative)
        else:
            train.append(f"{relative} {GESTURE_CLASSES.index(label) + 1}")
        caption_rows += [(path, text, group) for path, text in rows] if captions else []
    _write_lines(root / "splits" / "classInd.txt", [f"{i} {c}" for i, c in enumerate(GESTURE_CLASSES, 1)])
    _write_lines(root / "splits" / "trainlist01.txt", train)
    _write_lines(root / "splits" / "testlist01.txt", test)
    if captions:
        write_csv(root / "captions.csv", ["path", "caption"], [(path, text) for path, text, _ in caption_rows])
        _write_caption_manifest(root, caption_rows, chosen)
    return root


def _write_caption_manifest(root: Path, caption_rows: list[tuple[str, str, int]],
                            test_groups: tuple[int, ...]) -> Path:
    """``manifest.csv`` + ``classes.txt``: one row per (clip, reference caption, group), the splits of the tree."""
    from videoseq.manifest import Manifest, ManifestRow, write_manifest

    rows = []
    for relative, text, group in caption_rows:
        label = relative.split("/", 1)[0]
        split = "test" if group in test_groups else "train"
        rows.append(ManifestRow(f"videos/{relative}", label, split, f"{label}_{group:02d}", text))
    return write_manifest(Manifest(rows, list(GESTURE_CLASSES), root.resolve()), root)

