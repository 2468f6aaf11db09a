"""Motion inputs: optical flow and RGB differences between the kept frames of a clip.

Pure numpy / OpenCV; no torch. A clip of ``T`` time steps with ``L`` stacked
fields per step (``stack``) reads, for every kept frame ``i``, the frames
``i - L*step, ..., i - step, i`` (``step`` is the model's frame stride,
``data.stride``), and time step ``t`` holds the ``L`` fields between those
consecutive frames, oldest first. With ``L = 1`` a clip of ``T`` kept frames needs
``T + 1`` decoded frames: the one ``step`` frames before the first kept frame
gives the first field. That is also what a stream computes: the flow of each kept
frame against the previous kept frame. Worked example, dense clip of 4 frames at
stride 2 starting at frame 10, ``L = 2``: kept ``[10, 12, 14, 16]``, frame table
``[[6, 8, 10], [8, 10, 12], [10, 12, 14], [12, 14, 16]]``, 6 distinct pairs.

Flow is stored as the usual two-channel x/y images: each component is clipped to
``[-bound, bound]`` px and quantised to ``1..255`` with 0 px at 128 exactly
(``q = 128 + round(127 f / bound)``), so negating a field is ``256 - q`` and a
mirrored clip's flow is exact in the quantised domain. Channels are ``x0, y0, x1,
y1, ...`` (field ``l`` of the step at ``2l``). RGB differences (``rgbdiff``, TSN)
are ``frame_i - frame_{i-step}`` per channel, stored as ``128 + d`` clipped to ``1..255``.

Flow vectors are in pixels of the frames they were computed on; resizing or
cropping a flow image must scale them (``rescale_flow``) and a horizontal flip
mirrors the image and negates x (``flip_flow``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoseq.errors import UsageError
from videoseq.video.geometry import resize_short_side

MODALITIES = ("rgb", "flow", "rgbdiff")
DIS_PRESETS = {"dis_ultrafast": "ULTRAFAST", "dis_fast": "FAST", "dis_medium": "MEDIUM"}
FLOW_METHODS = (*DIS_PRESETS, "farneback", "tvl1")
ZERO_LEVEL = 128  # the quantised value of 0 px (flow) or 0 grey levels (rgbdiff)
LEVELS = 127  # quantised steps on either side of zero
# Normalisation of motion images: 0 motion -> 0, and about ImageNet's spread per channel.
MOTION_MEAN = ZERO_LEVEL / 255.0
MOTION_STD = 0.226


def modality_parts(modality: str) -> list[str]:
    """The inputs a modality stacks on the channel axis: ``"rgb+flow"`` -> ``["rgb", "flow"]`` (a fused model's)."""
    parts = str(modality).split("+")
    if any(p not in MODALITIES for p in parts) or len(set(parts)) != len(parts):
        raise UsageError(f"modality {modality!r} is not one of {list(MODALITIES)}, nor distinct ones joined by '+' "
                         "(rgb+flow: the input of a fused two-stream model)")
    return parts


def part_channels(part: str, stack: int = 1) -> int:
    return {"rgb": 3, "flow": 2 * stack, "rgbdiff": 3 * stack}[part]


def modality_channels(modality: str, stack: int = 1) -> int:
    """Input channels per time step: 3 for RGB, 2 per stacked field of flow, 3 per RGB difference (summed over
    the parts of ``rgb+flow``)."""
    return sum(part_channels(p, stack) for p in modality_parts(modality))


def flow_channels(modality: str, stack: int = 1) -> slice | None:
    """Where the flow images are among a clip's channels (None: no flow)."""
    parts = modality_parts(modality)
    if "flow" not in parts:
        return None
    start = sum(part_channels(p, stack) for p in parts[: parts.index("flow")])
    return slice(start, start + part_channels("flow", stack))


def available_flow_methods() -> tuple[str, ...]:
    """The flow methods this OpenCV build has (TV-L1 needs opencv-contrib's ``cv2.optflow``)."""
    return tuple(m for m in FLOW_METHODS if m != "tvl1" or hasattr(cv2, "optflow"))


class FlowEstimator:
    """Dense optical flow between two grey uint8 frames, ``(H, W)`` x 2 -> float32 ``(H, W, 2)`` px.

    The OpenCV object is created on first use (so inside a DataLoader worker) and is
    not pickled with the estimator.
    """

    def __init__(self, method: str = "dis_fast") -> None:
        if method not in available_flow_methods():
            hint = " (TV-L1 needs opencv-contrib-python)" if method == "tvl1" else ""
            raise UsageError(f"flow method {method!r} is not one of {list(available_flow_methods())}{hint}")
        self.method = method
        self._engine = None

    def __getstate__(self) -> dict:
        return {"method": self.method, "_engine": None}

    def _create(self):
        if self.method in DIS_PRESETS:
            return cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{DIS_PRESETS[self.method]}"))
        if self.method == "tvl1":
            return cv2.optflow.DualTVL1OpticalFlow_create()
        return None  # Farneback is a plain function

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self.method == "farneback":  # a wide window: smooth flow on the low-contrast, noisy frames of small clips
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, pyr_scale=0.5, levels=3, winsize=21, iterations=3,
                                                poly_n=5, poly_sigma=1.1, flags=0)
        if self._engine is None:
            self._engine = self._create()
        return self._engine.calc(prev, nxt, None)


def quantize_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """float px -> uint8: clipped to ``[-bound, bound]``, 0 px at 128, ``bound`` px at 255."""
    q = np.rint(np.clip(flow, -bound, bound) * (LEVELS / bound)) + ZERO_LEVEL
    return q.astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float) -> np.ndarray:
    """uint8 -> float32 px, the inverse of ``quantize_flow`` (within half a step, ``bound / 254``)."""
    return (q.astype(np.float32) - ZERO_LEVEL) * np.float32(bound / LEVELS)


def negate_flow_x(q: np.ndarray) -> np.ndarray:
    """Quantised flow ``(..., 2L)`` with every x component negated (``256 - q``, exact)."""
    out = q.copy()
    out[..., 0::2] = 2 * ZERO_LEVEL - q[..., 0::2].astype(np.int16)
    return out


def flip_flow(q: np.ndarray) -> np.ndarray:
    """Mirror quantised flow images ``(..., H, W, 2L)`` left-right and negate every x component."""
    return negate_flow_x(q[..., :, ::-1, :])


def rescale_flow(q: np.ndarray, sx: float, sy: float, bound: float) -> np.ndarray:
    """Scale the x and y vectors of quantised flow ``(..., 2L)`` (after resizing the image by ``sx``, ``sy``)."""
    if sx == 1.0 and sy == 1.0:
        return q
    flow = dequantize_flow(q, bound)
    flow[..., 0::2] *= sx
    flow[..., 1::2] *= sy
    return quantize_flow(flow, bound)


def quantize_difference(diff: np.ndarray) -> np.ndarray:
    """Signed grey-level differences -> uint8, 0 at 128, clipped to ``[-127, 127]`` (motion is rarely brighter)."""
    return (np.clip(diff, -LEVELS, LEVELS) + ZERO_LEVEL).astype(np.uint8)


def motion_frame_table(kept: np.ndarray, step: int, stack: int) -> np.ndarray:
    """Frames each time step reads: ``(T, L+1)``, row ``t`` = ``kept[t] - step * [L, ..., 1, 0]``, at least 0."""
    offsets = step * np.arange(stack, -1, -1, dtype=np.int64)  # (L+1,)
    return np.maximum(np.asarray(kept, dtype=np.int64)[:, None] - offsets[None], 0)


def shift_into_range(sample, num_frames: int, lookback: int) -> np.ndarray:
    """Kept frames drawn so that ``lookback`` earlier frames exist: ``sample(n)`` draws from ``n`` frames.

    The sampler sees ``num_frames - lookback`` frames and its indices move up by
    ``lookback``; a video too short for that is sampled whole (its first fields then
    compare a frame with itself: zero motion).
    """
    if num_frames > lookback:
        return np.asarray(sample(num_frames - lookback)) + lookback
    return np.asarray(sample(num_frames))


@dataclass
class MotionInput:
    """Turns decoded RGB frames into the modality's frames: flow or RGB-difference images.

    ``rgb+flow`` (a fused model's input) stacks the kept frames themselves and their flow
    on the channel axis, all at ``short_side``.

    ``short_side``: frames are first resized to this short side (flow vectors are in
    its pixels); ``bound``: flow clipping in px; ``stack``: fields per time step (L);
    ``step``: frames between the two frames of a field.
    """

    modality: str
    step: int = 1
    stack: int = 1
    short_side: int = 128
    bound: float = 20.0
    method: str = "dis_fast"

    def __post_init__(self) -> None:
        if self.modality == "rgb" or modality_parts(self.modality) == ["rgb"]:
            raise ValueError("MotionInput is for flow, rgbdiff or parts joined by '+' (rgb+flow), not rgb alone")
        if min(self.step, self.stack, self.short_side) < 1 or self.bound <= 0:
            raise ValueError(f"MotionInput needs step, stack, short_side >= 1 and bound > 0, got {self}")
        self.estimator = FlowEstimator(self.method)

    @property
    def channels(self) -> int:
        return modality_channels(self.modality, self.stack)

    @property
    def lookback(self) -> int:
        """Frames before the first kept frame that a clip reads."""
        return self.step * self.stack

    def frame_table(self, kept: np.ndarray) -> np.ndarray:
        return motion_frame_table(kept, self.step, self.stack)

    def read_clip(self, read, kept: np.ndarray) -> np.ndarray:
        """The images of kept frames ``(T,)`` through ``read(indices)`` (each frame read once): ``(T, h, w, C)``."""
        table = self.frame_table(kept)  # (T, L+1) frame indices
        unique, rows = np.unique(table, return_inverse=True)
        return self(read(unique), rows.reshape(table.shape))

    def __call__(self, frames: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Frames ``(N, H, W, 3)`` and a table ``(T, L+1)`` of rows into them -> uint8 ``(T, h, w, C)``."""
        frames = resize_short_side(frames, self.short_side, area=True)
        parts = [self.part_images(part, frames, table) for part in modality_parts(self.modality)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)  # (T, h, w, C)

    def part_images(self, part: str, frames: np.ndarray, table: np.ndarray) -> np.ndarray:
        """One part's images ``(T, h, w, C_part)``: the kept frames (rgb), their RGB differences or their flow."""
        if part == "rgb":
            return frames[table[:, -1]]
        sources = {int(i): self.source(part, frames[i]) for i in np.unique(table)}
        fields = {(a, b): self.field(part, sources[a], sources[b]) for a, b in _pairs(table)}
        steps = [np.concatenate([fields[(a, b)] for a, b in zip(row[:-1], row[1:])], axis=-1) for row in table]
        return np.stack(steps)  # (T, h, w, C_part)

    def source(self, part: str, frame: np.ndarray) -> np.ndarray:
        """What a field is computed from, one resized frame ``(h, w, 3)``: grey (flow) or int16 RGB (rgbdiff)."""
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if part == "flow" else frame.astype(np.int16)

    def field(self, part: str, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
        """One quantised field between two sources: uint8 ``(h, w, 2)`` flow or ``(h, w, 3)`` RGB difference.

        Clips (``part_images``), streams (``stream.MotionStream``) and the frame cache all
        compute their fields here.
        """
        if part == "flow":
            return quantize_flow(self.estimator(earlier, later), self.bound)
        return quantize_difference(later - earlier)


def video_fields(motion: MotionInput, frames: list[np.ndarray]) -> np.ndarray:
    """Every frame's field against the frame ``motion.step`` before it (frame 0 and the first ones: against
    frame 0), from resized frames ``[(h, w, 3), ...]`` -> uint8 ``(N, h, w, c)``: what the frame cache stores.

    Field ``j`` is the pair ``(max(j - step, 0), j)``, so time step ``t`` of a clip is
    ``fields[table[t, 1:]]`` side by side (``gather_fields``): the frame table's own pairs.
    """
    return fields_after(motion, [], frames)[0]


def fields_after(motion: MotionInput, before: list[np.ndarray], frames: list[np.ndarray] | np.ndarray
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """``video_fields`` of ``frames`` that follow the sources ``before`` (the last ``motion.step`` sources of the
    video's earlier frames, or all of them; [] at its start) -> (fields ``(n, h, w, c)``, the sources to pass on)."""
    (part,) = modality_parts(motion.modality)
    sources = list(before) + [motion.source(part, f) for f in frames]
    pairs = [(max(j - motion.step, 0), j) for j in range(len(before), len(sources))]
    fields = [motion.field(part, sources[a], sources[b]) for a, b in pairs]
    return np.stack(fields), sources[-motion.step:]


def gather_fields(fields: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Stored fields ``(N, h, w, c)`` and a frame table ``(T, L+1)`` -> the clip's images ``(T, h, w, L c)``."""
    return np.concatenate([fields[table[:, column]] for column in range(1, table.shape[1])], axis=-1)


def _pairs(table: np.ndarray) -> set[tuple[int, int]]:
    """The distinct (earlier, later) frame pairs a table reads: fields shared by steps are computed once."""
    return {(int(a), int(b)) for row in table for a, b in zip(row[:-1], row[1:])}
