"""Every knob of a style-transfer run, with its default, in one frozen dataclass.

The command line turns its flags into a `Config` at the door; everything below takes a `Config`.
The defaults here are the `configs/default.cfg` preset (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
from typing import NamedTuple, Optional, Tuple

import numpy as np

from nst_tf import schedule
from nst_tf.image_io import INITS  # noqa: F401  (re-exported: the init option's names)
from nst_tf.errors import NstError
from nst_tf.schedule import MIN_SCALE_SIZE  # noqa: F401  (re-exported)
from nst_tf.vgg import BACKBONES, layer_names  # noqa: F401  (BACKBONES: the backbone option's choices)

OPTIMIZERS = ("adam", "lbfgs")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
JIT_MODES = ("auto", "on", "off")
TV_LOSSES = ("abs", "squared")
LOSS_NORMS = ("mean", "relative")
GRAM_NORMS = ("hw", "chw")
STYLE_LOSSES = ("gram", "poly", "gaussian", "meanstd", "w2")  # see nst_tf.losses
PRESERVE_COLORS = ("none", "luminance", "histogram")
POOLINGS = ("max", "avg")
DEFAULT_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
DEFAULT_CONTENT_LAYERS = ("block4_conv2",)
# Stylising more pixels than this (about 8K x 8K) is refused before any work starts.
MAX_SIZE = 8192
# The smallest tile side `tile` takes (VGG19's deepest layers pool by 16; smaller tiles are mostly halo).
MIN_TILE = 32
# The most coarse-to-fine scales (the default start halves per scale: 16 reach below 1 px at MAX_SIZE).
MAX_SCALES = 16


KINDS = ("shapes", "output", "runtime")


class Control(NamedTuple):
    """How the web page shows an option (`nst_tf.app.studio` makes the page's settings from these:
    the page's controls, defaults and checks are the flags'). `label`; `group`: "paint" (the one
    pass: a change paints again) or "refine" (the steps from it); a number's `low`, `high` and `step`
    (`limit`: the server's `Limits` field that lowers `high`), or `values` to pick from (an option's
    `choices` are picked from, shown as `labels`); `slider` for a range control; `help`: the tooltip
    where the flag's help does not fit the page."""

    label: str
    group: str = "paint"
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    values: Optional[tuple] = None
    labels: Optional[tuple] = None
    limit: Optional[str] = None
    slider: bool = False
    help: Optional[str] = None  # the control's tooltip where the flag's help does not fit the page


def option(
    default,
    help: str,
    choices: Optional[Tuple[str, ...]] = None,
    kind: str = "shapes",
    page: Optional[Control] = None,
    painter: bool = False,
):
    """A `Config` field with what is known about it, in one place: its flag's `help`, its allowed
    values (`choices`), its `kind`: "shapes" (changes the result: part of the checkpoint hash
    and of a batch manifest's settings), "output" (writes files of one run: not hashed, refused by
    the batch command) or "runtime" (neither: how a run is carried out or reported), and `page`:
    the web page's control for it (a `Control`; None: the page does not take it). `painter`: a painting
    option, one every painter honours or refuses with one line (a field of `painting.Options`)."""
    assert kind in KINDS
    metadata = {"help": help, "choices": choices, "kind": kind, "page": page, "painter": painter}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Objective:
    """What the loss is: its terms, their weights and layers, the style statistic, the feature network
    (the trainer shares this group)."""

    def __post_init__(self):
        _finish(self)
        _validate_objective(self)

    @property
    def layer_weights(self) -> Tuple[float, ...]:
        """Per style layer weights, normalised to sum to one."""
        weights = self.style_layer_weights or (1.0,) * len(self.style_layers)
        total = float(sum(weights))
        return tuple(float(w) / total for w in weights)

    content_weight: float = option(1.0, "Weight of the content term.")
    style_weight: float = option(
        5.0, "Weight of the style term.", page=Control("Style weight", "refine", low=1e-6, high=1e6)
    )
    tv_weight: float = option(0.0, "Weight of the total-variation (smoothness) term.")
    tv_loss: str = option(
        "abs",
        "Total variation: abs (sum of |differences|) or squared (half the sum of squares, as Lua neural-style).",
        choices=TV_LOSSES,
    )
    content_layers: Tuple[str, ...] = option(DEFAULT_CONTENT_LAYERS, "Comma-separated VGG layers for the content term.")
    style_layers: Tuple[str, ...] = option(DEFAULT_STYLE_LAYERS, "Comma-separated VGG layers for the style term.")
    style_layer_weights: Optional[Tuple[float, ...]] = option(
        None, "Comma-separated relative weight per style layer (default: equal)."
    )
    style_loss: str = option(
        "gram",
        "Style statistic: gram, poly / gaussian (MMD kernels), meanstd (batch-norm statistics), w2 (Wasserstein).",
        choices=STYLE_LOSSES,
        page=Control(
            "Style statistic",
            "refine",
            labels=("Gram (Gatys)", "polynomial kernel", "Gaussian kernel", "mean and deviation", "Wasserstein"),
        ),
    )
    gram_norm: str = option("hw", "Gram normaliser: h*w or c*h*w.", choices=GRAM_NORMS)
    loss_norm: str = option(
        "relative",
        "Each layer's error: mean (mean squared error) or relative (divided by the target's squared norm: scale-free).",
        choices=LOSS_NORMS,
    )
    pooling: str = option("max", "Feature network pooling: max (VGG's) or avg (Gatys et al.).", choices=POOLINGS)
    weights: str = option(
        "auto", "VGG weights: auto, imagenet (official Keras file), embedded (8-bit table), random, or a .h5 path."
    )
    backbone: str = option("vgg19", "Feature network.", choices=BACKBONES)


@dataclasses.dataclass(frozen=True)
class Picture:
    """What is painted: sizes, how several paintings share the picture, colours, and the network
    that paints in one pass."""

    size: int = option(
        512,
        "Output size: longest side in pixels.",
        page=Control("Size", low=64, values=(256, 384, 512, 768, 1024), limit="max_size"),
        painter=True,
    )
    style_size: Optional[int] = option(
        None, "Style images' longest side in pixels (default: --size x --style_scale).", painter=True
    )
    style_scale: float = option(
        1.0,
        "Style images' size relative to the output (when --style_size is not given): above 1, larger strokes; below 1, smaller.",
    )
    square: bool = option(
        False, "Resize content and style to squares, ignoring aspect (as some published pipelines do)."
    )
    style_blend: Optional[Tuple[float, ...]] = option(
        None,
        "Comma-separated share of each style image in the style term (default: equal).",
        painter=True,
    )
    style_mask: Optional[Tuple[str, ...]] = option(
        None,
        "Comma-separated mask images, one per style: each style paints only where its mask is bright.",
        painter=True,
    )
    preserve_colors: str = option(
        "none",
        "Keep the content's colours: none, luminance (luminance-only transfer), histogram (match the style's colours first).",
        choices=PRESERVE_COLORS,
        page=Control("Colours", labels=("the painting's", "the photo's (luminance)", "the photo's (histogram)")),
        painter=True,
    )
    network: Optional[str] = option(
        None,
        "A network that paints in one forward pass: demo (the default one-pass painter: Magenta's arbitrary "
        "network), arbitrary, universal, three_styles, or a file from nst-tf-train; with "
        "--init=network, start the optimisation from its painting.",
    )
    strength: float = option(
        1.0,
        "With --network: how much of the style, in [0, 1] (a network that takes paintings).",
        page=Control("Strength", low=0.0, high=1.0, step=0.05, slider=True, help="How much of the painting's style."),
        painter=True,
    )
    style_index: Optional[int] = option(
        None, "With --network and no --style: which of its fixed styles (from 0).", painter=True
    )
    adapt_steps: int = option(
        0,
        "With --network=arbitrary (or demo): gradient steps adapting the network to this painting and photo "
        "against the objective (0: one pass; 20 at 512 px on 2 cores: about 5 s of steps, 18 s for the whole command).",
        page=Control(
            "Adapt",
            low=0,
            high=100,
            limit="max_adapt_steps",
            help="Gradient steps adapting the network to this painting and photo (a few seconds).",
        ),
        painter=True,
    )


@dataclasses.dataclass(frozen=True)
class Optimisation:
    """How the image is optimised: the optimiser, its steps and start, coarse to fine."""

    steps: int = option(
        60,
        "Optimiser steps per scale: with --scales=3 (the default) 3 x 60 = 180 steps in all (--scale_steps sets each).",
        page=Control("Steps", "refine", low=1, high=500, limit="max_steps"),
    )
    optimizer: str = option(
        "lbfgs",
        "Optimiser: adam, or lbfgs (L-BFGS with a line search; a step is one loss evaluation).",
        choices=OPTIMIZERS,
    )
    learning_rate: float = option(0.06, "Optimiser step size, in [0, 1] image units.")
    beta_1: float = option(0.9, "Adam beta_1.")
    beta_2: float = option(0.999, "Adam beta_2.")
    epsilon: float = option(0.1, "Adam epsilon.")
    lbfgs_memory: int = option(10, "How many past steps L-BFGS remembers.")
    seed: int = option(0, "Seed of the noise init.")
    init: str = option(
        "content", "Starting image: content, noise, style, network (the --network's painting), or an image path."
    )
    scales: int = option(3, "Coarse to fine: optimise at this many sizes, growing geometrically up to --size.")
    start_size: Optional[int] = option(None, "Coarse to fine: the first scale's size (default: size / 2**(scales-1)).")
    scale_steps: Optional[Tuple[int, ...]] = option(
        None, "Coarse to fine: comma-separated steps per scale (default: --steps at each)."
    )


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What a run writes along the way: snapshots, TensorBoard, a contact sheet, a loss plot, checkpoints."""

    save_every: int = option(0, "Write a snapshot every N steps into --snapshot_dir (0: never).", kind="output")
    snapshot_dir: Optional[str] = option(None, "Folder for snapshots.", kind="runtime")
    logdir: Optional[str] = option(
        None, "Write TensorBoard summaries (losses each step, the image every --log_every steps) here.", kind="output"
    )
    log_every: int = option(50, "TensorBoard image interval in steps.", kind="runtime")
    contact_sheet: Optional[str] = option(None, "Write a PNG grid of snapshots through the run here.", kind="output")
    contact_sheet_frames: int = option(8, "Snapshots in the contact sheet (first and last included).", kind="runtime")
    loss_plot: Optional[str] = option(
        None, "Write a PNG plot of the loss curves here (needs matplotlib).", kind="output"
    )
    checkpoint_dir: Optional[str] = option(
        None, "Save checkpoints (image, optimiser state, step, settings hash) into this folder.", kind="output"
    )
    checkpoint_every: int = option(
        50, "Checkpoint interval in steps (also at the end of each scale and on interruption).", kind="runtime"
    )
    resume: bool = option(False, "Continue from the latest checkpoint in --checkpoint_dir.", kind="output")
    force: bool = option(False, "Resume even from a checkpoint made with other settings or images.", kind="runtime")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a run is carried out: precision, XLA, tiling, the memory check (resolved by `nst_tf.plan`)."""

    precision: str = option(
        "auto",
        "Convolution precision: auto (the fastest on this machine, measured once: see --autotune), float32, bfloat16, float16.",
        choices=PRECISIONS,
    )
    jit: str = option(
        "auto",
        "Compile the step with XLA: auto (the fastest on this machine, measured once: see --autotune), on, off.",
        choices=JIT_MODES,
    )
    tile: str = option(
        "auto",
        "Tile the objective for images beyond memory (exact: the same gradient, no seams): auto (only scales "
        "that would not fit), off, or a tile side in pixels.",
        kind="runtime",
        painter=True,
    )
    memory_check: bool = option(
        True, "Stop before the run if its estimated peak memory exceeds what is available.", kind="runtime"
    )
    budget: Optional[float] = option(
        None,
        "Seconds, whole process: the best picture this machine can make in that time (the one pass, then as "
        "many refine steps from it as fit), said and kept; overrides --network, --init, --scales and --steps.",
        kind="runtime",
        page=Control(
            "Time (s)",
            "refine",
            low=1,
            high=600,
            limit="max_refine_seconds",
            help="Refine for this many seconds from pressing Refine to the picture, instead of a number of steps.",
        ),
    )


GROUPS = {
    "objective": Objective,
    "picture": Picture,
    "optimisation": Optimisation,
    "outputs": Outputs,
    "runtime": Runtime,
}


@dataclasses.dataclass(frozen=True)
class Config(Runtime, Outputs, Optimisation, Picture, Objective):
    """Settings of one run. Sizes are pixels; weights are unitless multipliers of the loss terms.

    size: the output's longest side; the content image is resized (Lanczos) to it.
    style_size: the style images' longest side (None: `size * style_scale`).
    style_scale: the style images' size relative to the output (used when style_size is None):
        above 1 the style's strokes and patterns come out larger, below 1 smaller (VGG's
        receptive fields are a fixed number of pixels).
    style_blend: with several style images, each one's share of the style term (normalised to
        sum to one; None: equal shares).
    style_mask: with style images, one mask image per style (grey, [0, 1]; soft edges allowed),
        resized to the output: each style paints only where its mask is bright.
    style_loss: the style statistic: "gram" (Gatys), "poly" or "gaussian" (MMD with those
        kernels, Li et al. 2017), "meanstd" (per-channel mean and standard deviation, Li et al.'s
        batch-norm statistics), "w2" (2-Wasserstein distance between Gaussian fits).
    preserve_colors: "none"; "luminance": optimise the luminance only (style matched to the
        content's luminance mean and spread) and keep the content's chroma (YIQ); "histogram":
        move the style images' colour mean and covariance to the content's before the run
        (Gatys et al., "Preserving Color in Neural Artistic Style Transfer", 2016).
    pooling: the feature network's pooling, "max" (VGG's own) or "avg" (Gatys et al.'s choice).
    square: resize content to size x size and style to style_size x style_size, ignoring aspect
        (as some published pipelines do).
    steps: optimiser steps (per scale; see `scale_steps`). An L-BFGS step is one loss evaluation.
    optimizer: "adam" or "lbfgs" (quasi-Newton with a backtracking line search).
    learning_rate, beta_1, beta_2, epsilon: Adam's settings; the image is in [0, 1], so the
        learning rate is in those units per step.
    lbfgs_memory: how many past steps L-BFGS remembers.
    content_weight, style_weight, tv_weight: multipliers of the content, style and
        total-variation terms of the loss.
    content_layers, style_layers: VGG layer names whose activations the terms compare.
    style_layer_weights: relative weight of each style layer (None: equal); the style term is the
        weighted mean over layers.
    gram_norm: Gram matrix normaliser: "hw" divides by height*width (the TensorFlow tutorial),
        "chw" by channels*height*width (Gatys' Lua and PyTorch tutorials).
    loss_norm: each layer's error: "mean", the mean squared error (the tutorials); "relative",
        ||x - t||^2 / ||t||^2 for activations and Gram matrices alike (scale-free, as
        `nst_tf.evaluate` reports), so every layer counts alike whatever its magnitude, and
        gram_norm no longer matters.
    init: the starting image: "content", "noise" (uniform, seeded), "style", or an image path.
    seed: seed of the noise init.
    weights: "auto", "imagenet", "embedded", "random" or a path to a Keras .h5 / .weights.h5 file.
    backbone: "vgg19" or "vgg16".
    save_every, snapshot_dir: write the image every N steps into the folder (0: never).
    precision: compute dtype of the VGG convolutions: "float32", "bfloat16", "float16", or
        "auto" (the fastest on this machine, measured once: `nst_tf.autotune`). Gram matrices,
        losses and the image stay float32.
    jit: compile the step with XLA: "on", "off", or "auto" (measured with precision).
    logdir: a folder for TensorBoard summaries: every term of the loss each step, the image
        every `log_every` steps.
    contact_sheet: write a PNG grid of `contact_sheet_frames` snapshots through the run here.
    loss_plot: write a PNG plot of the loss curves here (needs matplotlib).
    memory_check: before the run, estimate its peak memory (`nst_tf.planner`) and stop with an
        `NstError` if that exceeds the memory available.
    checkpoint_dir, checkpoint_every: save the image, the optimiser state, the step and a hash
        of the settings and images into this folder every N steps, at the end of each scale and
        on an interruption (see `nst_tf.checkpoint`).
    resume: continue from the latest checkpoint in checkpoint_dir (from the start if there is
        none); one made with other settings or images is an error unless `force`.
    tile: "auto", "off" or a tile side in pixels (a number or its text): compute each step's loss
        and gradient tile by tile (`nst_tf.tiling`; exact, so the result is the untiled run's up
        to rounding). "auto" tiles only the scales whose untiled run would not fit in the memory
        available (`nst_tf.planner`), with the largest tile that fits.
    scales, start_size, scale_steps: coarse-to-fine. With scales=N > 1 the image is optimised
        at N sizes growing geometrically from `start_size` (default: size / 2**(N-1)) to `size`,
        each scale starting from the previous result upsampled, with style targets recomputed
        at each size (the style image scaled in proportion); without start_size, scales under
        64 px are skipped. `scale_steps` gives the steps of each scale (default: `steps` at
        every scale).
    """

    def __post_init__(self):
        _finish(self)
        _validate_objective(self)
        _validate(self)

    def group(self, name: str):
        """One group of the options (`GROUPS`: objective, picture, optimisation, outputs, runtime)
        as its own frozen dataclass, as the code that uses only that group takes it."""
        kind = GROUPS[name]
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

    # Each group as the code below the doors takes it (made once per Config).
    @functools.cached_property
    def objective(self) -> Objective:
        return self.group("objective")

    @functools.cached_property
    def picture(self) -> Picture:
        return self.group("picture")

    @functools.cached_property
    def optimisation(self) -> Optimisation:
        return self.group("optimisation")

    @functools.cached_property
    def outputs(self) -> Outputs:
        return self.group("outputs")

    @functools.cached_property
    def runtime(self) -> Runtime:
        return self.group("runtime")

    @property
    def effective_style_size(self) -> int:
        return self.style_size or max(1, round(self.size * self.style_scale))

    def check_styles(self, count: int) -> None:
        """Raises `NstError` unless style_blend and style_mask fit `count` style images."""
        for name in ("style_blend", "style_mask"):
            value = getattr(self, name)
            if value is not None and len(value) != count:
                raise NstError(f"{name} has {len(value)} values for {count} style image(s); give one per style")

    @property
    def tile_pixels(self) -> Optional[int]:
        """`tile` as a number: None for "auto", 0 for "off", else the tile side in pixels."""
        return tile_pixels(self.tile)

    def scale_plan(self) -> Tuple[Tuple[int, Optional[int], int], ...]:
        """Coarse to fine: `(size, style_size, steps)` per scale that runs, the last at `size`
        (`nst_tf.schedule`, which the export runs on tensors)."""
        scales = schedule.scale_plan(self.picture, self.optimisation, self.size)
        return tuple((s.size, s.style_size, s.steps) for s in scales if s.runs)

    def replace(self, **changes) -> "Config":
        return make_config(self, **changes)

    def options(self) -> dict:
        """Every option by name (the fields only, not the groups cached on the instance)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def field_names():
    return tuple(f.name for f in dataclasses.fields(Config))


def painting_options() -> dict:
    """The painting options (`option(painter=True)`), by name in declaration order: each one's default."""
    return {f.name: f.default for f in dataclasses.fields(Config) if f.metadata["painter"]}


def page_controls() -> dict:
    """The options the web page shows, by name in declaration order: each one's `Control`."""
    return {f.name: f.metadata["page"] for f in dataclasses.fields(Config) if f.metadata["page"] is not None}


def option_help(name: str) -> str:
    return {f.name: f.metadata["help"] for f in dataclasses.fields(Config)}[name]


def fields_of_kind(*kinds: str) -> Tuple[str, ...]:
    """The names of the options of these kinds (see `option`), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata["kind"] in kinds)


def result_settings(cfg: Config) -> dict:
    """The options that shape a result (every kind but "output" and "runtime"), JSON-ready: what a
    batch manifest records, and what every resume check (checkpoints, batches, clips) hashes."""
    shaping = fields_of_kind("shapes")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.options().items() if k in shaping}


def settings_hash(fields: dict, blobs=()) -> str:
    """The one resume check's hash: SHA-256 (16 hex digits) of `fields` as JSON (sorted keys) and of
    each of `blobs` (bytes: the input images, a file's contents)."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for blob in blobs:
        digest.update(blob)
    return digest.hexdigest()[:16]


def make_config(base: Optional[Config] = None, **options) -> Config:
    """`base` (default: `Config()`) with `options` applied; unknown names are an `NstError`."""
    unknown = sorted(set(options) - set(field_names()))
    if unknown:
        raise NstError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(field_names())}")
    base = base or Config()
    return dataclasses.replace(base, **options)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _type_ok(value, annotation: str) -> bool:
    """Whether `value` fits a field annotation such as "int", "Optional[float]", "Tuple[str, ...]"."""
    if annotation.startswith("Optional["):
        return value is None or _type_ok(value, annotation[len("Optional[") : -1])
    if annotation.startswith("Tuple["):
        item = annotation[len("Tuple[") : -len(", ...]")]
        return isinstance(value, tuple) and all(_type_ok(v, item) for v in value)
    kind = _TYPES[annotation]
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


_WORDS = {"int": "a whole number", "float": "a finite number", "bool": "true or false", "str": "text"}


def _plain(value):
    """NumPy scalars as Python numbers (so configs compare, hash and serialise alike)."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int)):
        return float(value)
    return value


def _finish(options) -> None:
    """Comma lists ("1,2" from a caller, ["1", "2"] from a flag, or numbers) become tuples, parsed
    here only, so the options stay hashable and comparable; then every field's type is checked."""
    names = {f.name for f in dataclasses.fields(options)}
    for name, kind in _LISTS.items():
        if name in names:
            object.__setattr__(options, name, _parse_list(name, getattr(options, name), kind))
    tile = getattr(options, "tile", None)
    if isinstance(tile, numbers.Integral) and not isinstance(tile, bool):
        object.__setattr__(options, "tile", str(int(tile)))
    _check_types(options)


def _check_types(cfg) -> None:
    for field in dataclasses.fields(cfg):
        value = _plain(getattr(cfg, field.name))
        object.__setattr__(cfg, field.name, value)
        if not _type_ok(value, field.type):
            inner = field.type.replace("Optional[", "").replace("Tuple[", "").replace(", ...]", "").rstrip("]")
            what = _WORDS[inner] + (" values (comma-separated)" if "Tuple" in field.type else "")
            raise NstError(f"{field.name} must be {what}, got {value!r}"[:300])


# The list options and how their items are parsed (text items are converted, other values type-checked).
_LISTS = {
    "content_layers": str,
    "style_layers": str,
    "style_layer_weights": float,
    "scale_steps": int,
    "style_blend": float,
    "style_mask": str,
}
_LIST_WORDS = {float: "numbers", int: "whole numbers"}


def _parse_list(name, value, kind):
    if isinstance(value, (str, os.PathLike)):
        value = [v.strip() for v in os.fspath(value).split(",") if v.strip()]
    if not isinstance(value, list):
        return value  # a tuple, None or a wrong type (_check_types says which)
    if kind is not str and all(isinstance(v, str) for v in value):
        try:
            value = [kind(v) for v in value]
        except ValueError:
            raise NstError(f"{name} must be {_LIST_WORDS[kind]}, got {','.join(value)!r}") from None  # repr: one line
    return tuple(value)


def _positive(cfg, name, allow_none=False):
    value = getattr(cfg, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise NstError(f"{name} must be a positive integer, got {value!r}")


def _choices(options) -> None:
    for field in dataclasses.fields(options):
        if field.metadata["choices"]:
            _choice(options, field.name, field.metadata["choices"])


def _validate_objective(cfg) -> None:
    _choices(cfg)
    for name in ("content_weight", "style_weight", "tv_weight"):
        if not getattr(cfg, name) >= 0:
            raise NstError(f"{name} must be zero or positive, got {getattr(cfg, name)!r}")
    if not cfg.content_layers and not cfg.style_layers:
        raise NstError("give at least one content or style layer")
    for name in ("content_layers", "style_layers"):
        layers = getattr(cfg, name)
        if len(set(layers)) != len(layers):
            raise NstError(f"{name} lists a layer twice: {', '.join(layers)}")
    valid = layer_names(cfg.backbone)
    for name in cfg.content_layers + cfg.style_layers:
        if name not in valid:
            raise NstError(f"unknown {cfg.backbone} layer {name!r}; valid layers: {', '.join(valid)}")
    if cfg.style_layer_weights is not None:
        if len(cfg.style_layer_weights) != len(cfg.style_layers):
            raise NstError(
                f"style_layer_weights has {len(cfg.style_layer_weights)} values for "
                f"{len(cfg.style_layers)} style layers; give one weight per layer"
            )
        if any(not w >= 0 for w in cfg.style_layer_weights) or not sum(cfg.style_layer_weights) > 0:
            raise NstError("style_layer_weights must be non-negative and not all zero")


def _validate(cfg: Config) -> None:
    if cfg.budget is not None and not (math.isfinite(cfg.budget) and 0 < cfg.budget <= 86400):
        raise NstError(f"budget must be a number of seconds in (0, 86400], got {cfg.budget}")
    if not 0 <= cfg.seed < 2**31:
        raise NstError(f"seed must be in [0, 2**31), got {cfg.seed}")
    _positive(cfg, "size")
    _positive(cfg, "style_size", allow_none=True)
    _positive(cfg, "steps")
    _positive(cfg, "lbfgs_memory")
    _positive(cfg, "scales")
    if cfg.scales > MAX_SCALES:
        raise NstError(f"scales must be at most {MAX_SCALES}, got {cfg.scales}")
    _positive(cfg, "start_size", allow_none=True)
    _positive(cfg, "log_every")
    _positive(cfg, "checkpoint_every")
    if cfg.resume and not cfg.checkpoint_dir:
        raise NstError("resume needs checkpoint_dir, the folder the checkpoints are in")
    _positive(cfg, "contact_sheet_frames")
    if not (
        isinstance(cfg.style_scale, (int, float))
        and not isinstance(cfg.style_scale, bool)
        and 0 < cfg.style_scale <= 16
    ):
        raise NstError(f"style_scale must be a number in (0, 16], got {cfg.style_scale!r}")
    if cfg.style_size is None and cfg.size * cfg.style_scale > MAX_SIZE:
        raise NstError(f"size x style_scale = {cfg.size * cfg.style_scale:.0f} is larger than the maximum {MAX_SIZE}")
    if cfg.style_blend is not None:
        if any(not w >= 0 for w in cfg.style_blend) or not sum(cfg.style_blend) > 0:
            raise NstError("style_blend must be non-negative numbers, not all zero (one per style image)")
    if cfg.lbfgs_memory > 1000:
        raise NstError(f"lbfgs_memory={cfg.lbfgs_memory} is too large; 5 to 100 is usual")
    if cfg.start_size is not None and cfg.scales < 2:
        raise NstError("start_size needs scales of 2 or more (the number of sizes from start_size to size)")
    if cfg.start_size is not None and cfg.start_size >= cfg.size:
        raise NstError(f"start_size ({cfg.start_size}) must be smaller than size ({cfg.size})")
    if cfg.scale_steps is not None:
        if len(cfg.scale_steps) != cfg.scales:
            raise NstError(f"scale_steps has {len(cfg.scale_steps)} values for {cfg.scales} scales; give one per scale")
        if any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n in cfg.scale_steps):
            raise NstError(f"scale_steps must be positive integers, got {','.join(map(str, cfg.scale_steps))}")
    if cfg.start_size is not None and cfg.start_size < 16:
        raise NstError(f"start_size must be 16 or more (VGG halves the image four times), got {cfg.start_size}")
    for name in ("size", "style_size"):
        value = getattr(cfg, name)
        if value is not None and value > MAX_SIZE:
            raise NstError(f"{name}={value} is larger than the maximum {MAX_SIZE}; choose a smaller size")
    if isinstance(cfg.save_every, bool) or not isinstance(cfg.save_every, int) or cfg.save_every < 0:
        raise NstError(f"save_every must be a non-negative integer, got {cfg.save_every!r}")
    if cfg.save_every and not cfg.snapshot_dir:
        raise NstError("save_every needs snapshot_dir, the folder to write snapshots into")
    _choices(cfg)
    for name in ("learning_rate", "epsilon"):
        if not getattr(cfg, name) > 0:
            raise NstError(f"{name} must be positive, got {getattr(cfg, name)!r}")
    for name in ("beta_1", "beta_2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise NstError(f"{name} must be in [0, 1), got {getattr(cfg, name)!r}")
    if not cfg.init:
        raise NstError(f"init must be one of {', '.join(INITS)} or an image file")
    if cfg.init == "network" and not cfg.network:
        raise NstError("init=network needs network, the trained network to start from")
    checked_strength(cfg.strength)
    tile_pixels(cfg.tile)
    if cfg.style_index is not None and cfg.style_index < 0:
        raise NstError(f"style_index must be 0 or more, got {cfg.style_index}")
    if isinstance(cfg.adapt_steps, bool) or not isinstance(cfg.adapt_steps, int) or cfg.adapt_steps < 0:
        raise NstError(f"adapt_steps must be a non-negative integer, got {cfg.adapt_steps!r}")
    if cfg.adapt_steps and not cfg.network:
        raise NstError("adapt_steps adapts a network: give --network=arbitrary (or demo)")


def checked_strength(strength) -> float:
    """`strength` if it is in [0, 1] (how much of the style a one-pass painter puts in), else one line
    (the flag's check, and every painter's: `painting.checked_strength`)."""
    if not 0.0 <= strength <= 1.0:
        raise NstError(f"strength must be in [0, 1], got {strength!r}")
    return float(strength)


def tile_pixels(tile) -> Optional[int]:
    """A tile option ("auto", "off", or a tile side: a number or its text) as a number: None for
    "auto", 0 for "off", else the side in pixels; an `NstError` for anything else."""
    if tile in ("auto", "off"):
        return {"auto": None, "off": 0}[tile]
    text = str(tile)
    if isinstance(tile, bool) or not (text.isdigit() and int(text) >= MIN_TILE):
        raise NstError(f"tile must be auto, off or a tile side of {MIN_TILE} px or more, got {tile!r}")
    return int(text)


def _choice(cfg, name, choices):
    if getattr(cfg, name) not in choices:
        raise NstError(f"unknown {name} {getattr(cfg, name)!r}; choose one of: {', '.join(choices)}")
