"""What a video run adds to a picture's options (`VideoConfig`): no TensorFlow here, so the command
line defines and checks its flags before anything loads."""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from nst_tf.config import option
from nst_tf.errors import NstError

FLOW_PRESETS = ("ultrafast", "fast", "medium")


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """A clip's run: which part of it, and how each painted frame is held to the previous ones.

    start, duration, every: the slice of the clip painted (seconds; every k-th frame).
    blend: a network's painting: where the flow is reliable, this share of each pixel is the
        previous painted frame warped into this one (0: each frame painted alone).
    temporal_weight: the optimisation: the weight of Ruder et al.'s temporal loss (the painting
        against the earlier paintings warped into it, where reliable).
    long_term: the earlier frames the temporal loss looks at (1: the last only).
    later_steps: the optimisation: steps for each frame after the first (which gets the full
        coarse-to-fine schedule), started from the previous painting warped into it.
    flow: DIS optical flow's preset.
    skip_bad_frames: a frame that cannot be decoded is replaced by the previous one (else the run
        stops, the finished frames kept for `resume`).
    resume: continue in the work folder (`<output>.frames/`): finished frames are not painted again.
    """

    start: float = option(0.0, "Paint from this time in the clip (seconds).")
    duration: Optional[float] = option(None, "Paint this many seconds of the clip (default: to the end).")
    every: int = option(1, "Paint every k-th frame (a quick look at a long clip).")
    blend: float = option(
        0.5, "With --network: share of the previous painted frame, warped by the flow, where reliable."
    )
    temporal_weight: float = option(200.0, "Optimisation: weight of the temporal loss (Ruder et al.).")
    long_term: Tuple[int, ...] = option(
        (1, 2, 4), "Optimisation: the earlier frames the temporal loss holds each frame to."
    )
    later_steps: int = option(
        40, "Optimisation: steps for each frame after the first, from the previous painting warped."
    )
    flow: str = option("medium", "Optical flow preset (OpenCV's DIS): ultrafast, fast, medium.", FLOW_PRESETS)
    skip_bad_frames: bool = option(False, "Replace a frame that cannot be decoded by the previous one.")
    resume: bool = option(False, "Continue a stopped run from its work folder (<output>.frames/).")

    def __post_init__(self):
        if isinstance(self.long_term, (list, str)):
            items = self.long_term.split(",") if isinstance(self.long_term, str) else self.long_term
            object.__setattr__(self, "long_term", tuple(int(v) for v in items if str(v).strip()))
        if not self.start >= 0:
            raise NstError(f"start must be 0 or more seconds, got {self.start}")
        if self.duration is not None and not self.duration > 0:
            raise NstError(f"duration must be positive, got {self.duration}")
        for name in ("every", "later_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NstError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.blend < 1.0:
            raise NstError(f"blend must be in [0, 1), got {self.blend}")
        if not self.temporal_weight >= 0:
            raise NstError(f"temporal_weight must be 0 or more, got {self.temporal_weight}")
        if (
            not self.long_term
            or any(j < 1 for j in self.long_term)
            or list(self.long_term) != sorted(set(self.long_term))
        ):
            raise NstError(f"long_term must be increasing positive frame distances, got {self.long_term}")
        if self.flow not in FLOW_PRESETS:
            raise NstError(f"unknown flow {self.flow!r}; choose one of: {', '.join(FLOW_PRESETS)}")
