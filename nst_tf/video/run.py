"""A clip painted frame by frame, each frame held to the previous paintings by the optical flow.

`stylize_video` is the door: one resolved plan (`nst_tf.plan`) for the whole clip, then per frame
- with a network: its one-pass painting, and where the flow from the previous frame is reliable,
  `blend` of each pixel taken from the previous painting warped into this frame;
- by optimisation: the first frame with the full coarse-to-fine schedule; each later frame at the
  final size for `later_steps` steps, started from the previous painting warped into it, with Ruder
  et al.'s temporal loss (`video.temporal.TemporalTerm`) composed into the objective, all through the one
  road (`painters.paint(terms=, starts=)`).
Each finished frame is written (atomically, as a PNG) into a work folder beside the output, and the
next frame is painted from that PNG, not from memory: so a run stopped anywhere and resumed gives
the frames an uninterrupted run gives. When every frame is painted the clip is encoded (the input's
timestamps, rotation and audio kept) and the work folder removed. Memory holds only the few frames
the temporal loss looks back at, whatever the clip's length.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import List, NamedTuple, Optional

import numpy as np

from nst_tf import config as config_lib
from nst_tf import files, image_io
from nst_tf import plan as plan_lib
from nst_tf.errors import NstError
from nst_tf import flow
from nst_tf.video import io
from nst_tf.video.options import VideoConfig
from nst_tf import planner
from nst_tf.networks import options

WORK_SUFFIX = ".frames"


class Painted(NamedTuple):
    """A finished frame, as the next frames see it: its input and its painting (float32, the
    painting read back from its uint8 PNG)."""

    source: np.ndarray
    painting: np.ndarray


def work_folder(output: str) -> str:
    return output.rstrip("/") + WORK_SUFFIX


def _settings(plan, video: VideoConfig, clip: str, style: str, size: int) -> str:
    """What a work folder's frames were made with: a resumed run must match it."""
    # Resuming, or replacing bad frames from here on, does not change the frames already painted.
    kept = {k: v for k, v in vars(video).items() if k not in ("resume", "skip_bad_frames")}
    fields = dict(config_lib.result_settings(plan.config), video=kept, clip=os.path.abspath(clip))
    if isinstance(style, str):
        with open(style, "rb") as f:
            painting = f.read()
    else:
        painting = np.asarray(style).tobytes()
    return config_lib.settings_hash(fields, [painting, str(size).encode()])


class _NetworkFrames:
    """A network's painting per frame (the painting prepared once, for every frame), blended with the
    previous painting where the flow is reliable."""

    def __init__(self, plan, style, video: VideoConfig):
        from nst_tf import painters, painting  # loads TensorFlow: not at import

        self.video, self.plan = video, plan
        self.options = painting.Options.of(plan.config, size=None)  # the frames come at their size
        self.style = [style] if painters.kind(plan).takes_paintings else None
        painters.check(plan, self.options)  # before the first frame

    def paint(self, frame: np.ndarray, history: List[Painted]) -> np.ndarray:
        from nst_tf import painters  # loads TensorFlow: not at import

        # the painter and its prepared painting are kept between frames (the registry's caches)
        painted = painters.paint(self.plan, frame, self.style, self.options)[0]
        if history and self.video.blend:
            backward, mask = flow.between(frame, history[-1].source, self.video.flow)
            warped = flow.warp(history[-1].painting, backward)
            painted = painted + self.video.blend * mask[..., None] * (warped - painted)
        return painted


def later_options(video: VideoConfig) -> dict:
    """The run of every frame after the first: `video.later_steps` steps at the final size."""
    return dict(steps=video.later_steps, scales=1, start_size=None, scale_steps=None)


class _OptimisationFrames:
    """The optimisation per frame, through the one road: the full schedule for the first, then warm
    starts from the previous painting warped in, with the temporal loss as a term of the objective
    (`temporal.TemporalTerm`). The road keeps the later frames' run for the term (its targets and
    the term's warped paintings and weights are variables assigned per frame), so the step is traced
    (and compiled) once for the clip."""

    def __init__(self, plan, style, video: VideoConfig, callbacks):
        from nst_tf import features, painting  # loads TensorFlow: not at import

        self.plan, self.style, self.video, self.callbacks = plan, style, video, list(callbacks)
        self.model = features.model_for(plan.config.objective, plan.config.precision)  # one for every frame
        self.later = plan_lib.resolve(plan, **later_options(video))  # every frame after the first
        self.options = painting.Options.of(plan.config)
        self.term = None  # the temporal term, made at the second frame

    def paint(self, frame: np.ndarray, history: List[Painted]) -> np.ndarray:
        from nst_tf import painters  # loads TensorFlow: not at import
        from nst_tf.video import temporal  # loads TensorFlow: not at import

        road = dict(options=self.options, callbacks=self.callbacks, model=self.model)
        if not history:
            return painters.paint(self.plan, frame, [self.style], **road)[0]
        warped, masks = [], []
        for j in self.video.long_term:
            if j > len(history):
                break
            backward, mask = flow.between(frame, history[-j].source, self.video.flow)
            warped.append(flow.warp(history[-j].painting, backward))
            masks.append(mask)
        weights = temporal.long_term_weights(masks)
        missing = len(self.video.long_term) - len(warped)  # too early in the clip: those slots weigh 0
        warped += [np.zeros_like(warped[0])] * missing
        weights += [np.zeros_like(weights[0])] * missing
        if self.term is None:
            self.term = temporal.TemporalTerm(self.video.temporal_weight, warped, weights)
        else:
            self.term.update(warped, weights)
        return painters.paint(self.later, frame, [self.style], terms=[self.term], starts=[warped[0]], **road)[0]


def _expected_frames(info, video: VideoConfig) -> int:
    """The frames of the slice, from the clip's rate (the progress line's total; a variable rate
    makes it an estimate)."""
    end = info.duration if video.duration is None else min(info.duration, video.start + video.duration)
    return max(1, -(-round((end - video.start) * float(info.fps)) // video.every))


def describe_plan(info, cfg, video: VideoConfig, size: int, style_hw, painter: str, rate=None) -> str:
    """What `--dry_run` prints for a clip: the clip, and the painter's estimated peak memory and time
    (`nst_tf.planner`'s models; `rate` as `planner.plan_scales` takes it): for the optimisation, the first
    frame's whole schedule and each later frame's `later_steps` at the final size. A network's time
    is not modelled: its memory alone."""

    frames = _expected_frames(info, video)
    hw = image_io.fit_size((info.height, info.width), size)
    lines = [
        f"{info.path}: {info.width}x{info.height}, {info.frames} frames at {float(info.fps):.3g} frames/s, "
        f"{info.duration:.2f} s{', with audio' if info.audio else ''}; {frames} frame(s) painted at {hw[1]}x{hw[0]}"
    ]
    if painter == "network":
        estimate = planner.universal_bytes if options.is_universal_file(cfg.network) else None
        lines.append(
            f"by the network {cfg.network}, each frame: " + planner.describe_network(hw, cfg.tile, estimate=estimate)
        )
        return "\n".join(lines)
    cfg = cfg.replace(size=size)
    first = planner.plan_scales(cfg, hw, [style_hw], rate=rate)
    later = planner.plan_scales(cfg.replace(**later_options(video)), hw, [style_hw], rate=rate)[0]
    total = sum(s.seconds for s in first) + (frames - 1) * later.seconds
    peak = max(s.peak_bytes for s in first + [later])
    lines += [
        "the first frame, by optimisation:",
        planner.describe(first, cfg, rate),
        f"each later frame: {later.steps} steps at {hw[1]}x{hw[0]}, {planner.duration(later.seconds)}, peak "
        f"{later.peak_bytes / planner.GIB:.2f} GiB (estimated)",
        f"the clip: peak {peak / planner.GIB:.2f} GiB, {planner.duration(total)} (estimated; the optical flow and "
        "the temporal loss not counted)",
    ]
    return "\n".join(lines)


class _FrameProgress:
    """One line on stderr: frames done, frames/s and ETA."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream, self.start, self.done = total, stream or sys.stderr, time.perf_counter(), 0

    def frame(self, index: int, painted: bool) -> None:
        self.done += 1
        self.total = max(self.total, self.done)  # the total was estimated from the rate
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else 0.0
        what = "painted" if painted else "kept (resumed)"
        self.stream.write(
            f"\rframe {self.done}/{self.total} ({what} #{index})  {rate:.2f} frames/s, ETA {eta:.0f}s ".ljust(72)
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def stylize_video(
    clip: str,
    style: str,
    output: str,
    config=None,
    video: Optional[VideoConfig] = None,
    size: Optional[int] = None,
    progress: bool = False,
    callbacks=(),
    **options,
) -> dict:
    """Paints the clip `clip` (a video file FFmpeg reads, or a folder of pictures) in the manner of
    `style` into `output` (a video file, `io.CONTAINERS`, or without an extension a folder of PNG
    frames); returns `{"frames", "painted", "seconds", "seconds_per_frame", "output"}`.

    config, options: the picture's options (`Config` fields, or a door's `Plan`): with `network`,
        one forward pass per frame; else the optimisation. video: a `VideoConfig` (slice, blending,
        temporal loss, steps of later frames, resume). size: the frames' longest side (default: the
        clip's own size).
    """
    video = video or VideoConfig()
    info = io.probe(clip)
    io.check_output(output, clip)
    if video.start >= info.duration and info.frames > 1:
        raise NstError(f"start {video.start} s is past the clip's end ({info.duration:.2f} s)")
    plan = plan_lib.resolve(config, **options)
    size = size or max(info.width, info.height)
    plan = plan._replace(config=plan.config.replace(size=size))
    if plan.painter == "warm":
        raise NstError("a clip is painted by a network or by optimisation: leave out --init=network")
    work = work_folder(output)
    settings = _settings(plan, video, clip, style, size)
    stamp = os.path.join(work, "settings.json")
    if os.path.isdir(work) and video.resume:
        saved = None
        if os.path.exists(stamp):
            with open(stamp) as f:
                saved = json.load(f).get("settings")
        if saved != settings:
            raise NstError(f"{work} holds frames made with other settings; run without --resume to start over")
    elif os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    with files.atomic_file(stamp, "w") as f:
        json.dump({"settings": settings}, f)
    painter = (
        _NetworkFrames(plan, style, video)
        if plan.painter == "network"
        else _OptimisationFrames(plan, style, video, callbacks)
    )
    slice_ = dict(start=video.start, duration=video.duration, every=video.every)
    bar = _FrameProgress(_expected_frames(info, video)) if progress else None
    history: List[Painted] = []
    timeline = []  # (index, time) of each frame painted: what the encoder writes, in order
    painted_count, out_hw, start = 0, None, time.perf_counter()
    try:
        for frame in io.read(clip, **slice_, skip_bad=video.skip_bad_frames):
            timeline.append((frame.index, frame.time))
            source = image_io.load_image(frame.rgb, size)
            path = os.path.join(work, f"frame_{frame.index:06d}.png")
            made = not os.path.exists(path)
            if made:
                image_io.save_image(path, painter.paint(source, history))
                painted_count += 1
            history = (history + [Painted(source, image_io.load_image(path))])[-max(video.long_term) :]
            out_hw = history[-1].painting.shape[:2]
            if bar:
                bar.frame(frame.index, made)
    finally:
        if bar:
            bar.close()
    seconds = time.perf_counter() - start
    if not timeline:
        raise NstError(f"no frame of {clip} lies in the slice asked for (start {video.start} s)")
    written = info._replace(height=out_hw[0], width=out_hw[1])
    painted = (
        io.Frame(index, time_, image_io.load_image(os.path.join(work, f"frame_{index:06d}.png")))
        for index, time_ in timeline
    )
    io.write(output, painted, written, video.start, video.duration)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "output": output,
        "frames": len(timeline),
        "painted": painted_count,
        "seconds": round(seconds, 2),
        "seconds_per_frame": round(seconds / max(painted_count, 1), 3),
    }
