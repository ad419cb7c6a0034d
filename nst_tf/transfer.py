"""The run: load images, build the feature model, compute targets once, step, report.

`StyleTransfer` gives step-level control with callbacks; `optimise` runs a plan's schedule;
`OptimisationPainter` is the optimisation (and the warm start) as a painter (`nst_tf.painting`).
"""

from __future__ import annotations

import threading
from typing import Iterable, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from nst_tf import color, driver, features, image_io, losses, optimize, painting, planner, tensor_image, tiling
from nst_tf import plan as plan_lib
from nst_tf.callbacks import Callback, tile_reporter
from nst_tf import config as config_lib
from nst_tf.config import INITS, Config
from nst_tf.errors import Interrupted, NstError, TimeUp
from nst_tf.vgg import MIN_SIDE
from nst_tf import checkpoint
from nst_tf import distribute


def _batch(rgb: np.ndarray) -> tf.Tensor:
    return tf.constant(rgb[None], dtype=tf.float32)


class Sizes(NamedTuple):
    """The sizes of one run (one scale of a schedule): the output's longest side, the paintings'
    longest side, the steps, and the tile side in pixels (0: untiled; None: chosen for the images
    by `planner.choose_tile`)."""

    size: int
    style_size: int
    steps: int
    tile: Optional[int] = None

    @classmethod
    def of(cls, cfg: Config) -> "Sizes":
        """A one-scale run of `cfg`: its size, its paintings' size and its steps."""
        return cls(cfg.size, cfg.effective_style_size, cfg.steps)


def prepare_images(cfg: Config, content, style, masks=None, sizes: Optional[Sizes] = None):
    """A run's images as it sees them, `(contents_rgb, content, styles, masks)`: each content at
    `sizes.size` (a list: a batch of one size), the first as it is optimised (grey in luminance
    mode), the styles at `sizes.style_size` (their colours moved to the content's in a colour
    mode), and one mask per style at the content's size (None: `cfg.style_mask`). sizes: default
    `Sizes.of(cfg)`."""
    sizes = sizes or Sizes.of(cfg)
    styles = painting.as_images(style)
    masks = cfg.style_mask if masks is None else painting.as_images(masks)
    cfg.check_styles(len(styles))
    if masks is not None:
        painting.check_mask_count(masks, len(styles))
    contents_rgb = [image_io.load_photo(c, sizes.size, cfg.square) for c in painting.as_images(content)]
    if not contents_rgb:
        raise NstError("no content image given")
    styles = [image_io.load_image(s, sizes.style_size, cfg.square) for s in styles]
    for name, image in [("content", contents_rgb[0])] + [("style", s) for s in styles]:
        if min(image.shape[:2]) < MIN_SIDE:
            raise NstError(
                f"the {name} image is {image.shape[1]}x{image.shape[0]} at this size; VGG needs at "
                f"least {MIN_SIDE} px on each side: choose a larger size"
            )
    shapes = sorted({f"{c.shape[1]}x{c.shape[0]}" for c in contents_rgb})
    if len(shapes) > 1:
        raise NstError(
            f"a batch's content images must have the same size at --size={cfg.size}; got {', '.join(shapes)}"
        )
    if len(contents_rgb) > 1 and cfg.preserve_colors != "none":
        raise NstError(
            "preserve_colors needs one content image per run (the style is matched to the content): "
            "stylise these one at a time"
        )
    content = contents_rgb[0]
    if cfg.preserve_colors == "histogram":
        styles = [color.match_color(s, contents_rgb[0]) for s in styles]
    elif cfg.preserve_colors == "luminance":
        styles = [color.match_luminance(s, contents_rgb[0]) for s in styles]
        content = color.luminance_rgb(contents_rgb[0])
    masks = None if masks is None else [image_io.load_mask(m, content.shape[:2]) for m in masks]
    return contents_rgb, content, styles, masks


class StyleTransfer:
    """One content image (or a batch of them), one or more style images, one optimised
    `tf.Variable` image `[B, H, W, 3]`, at one size.

    content: a path, a PIL image or an array (see `image_io.load_image`); or a list of them, a
        batch optimised together as independent images (per-image losses, and per-image L-BFGS
        histories and line searches): each comes out as it would alone, up to rounding. A
        batch's images must have the same size once resized, and share the style(s); colour
        preservation needs one content image. `image` and the callbacks see the first image;
        `images` holds them all.
    style: one such image, or a list of them (see `config.style_blend`, `config.style_mask`).
    config: a `Config` or a resolved `nst_tf.plan.Plan`; `options` override its fields by name (the
        flag names); "auto" precision and jit are resolved here (`nst_tf.plan.resolve`) unless a plan
        is given. Its coarse-to-fine fields are not used here: `stylize` runs the scales, one
        `StyleTransfer` each, each given its `sizes`.
    sizes: this run's `Sizes` (one scale of the plan's schedule; default: `Sizes.of(config)`, the
        config's size, style size, steps, and the tile chosen for the images).
    model: a feature model from `build_feature_model` to share between runs (it must return the
        configured layers); by default one is built from `config.weights` at `config.precision`.
    init_image: a starting image (any size; resized to the content's), overriding `config.init`.
    scale: which scale of a coarse-to-fine run this is (`stylize` counts them; checkpoints record it).
    extra_loss: a term added to the objective, `image [B, H, W, 3] -> (loss [B], {name: [B]})`, pure
        and traceable (the video's temporal loss); untiled runs only.
    start: with `config.init="network"`, the painting to start from: a function of a content image
        (float32 `[H, W, 3]` at the run's size) to an image (`WarmPainter` gives its network's).
    retargetable: hold the targets in variables, so that `retarget` can start the run over on
        another content image of the same size with the same compiled step (a clip's frames);
        untiled runs on one device.
    `config.tile` says whether the loss and gradient are computed tile by tile (`nst_tf.tiling`,
    through `planner.choose_tile`); `tile` (pixels, 0 for untiled) and `tiled` tell which.
    masks: one region mask per style (paths, PIL images or arrays), overriding `config.style_mask`.
    The content image is resized to `config.size` (longest side) and sets the output's shape; the
    style images to `config.effective_style_size`. With `preserve_colors="luminance"` the run sees
    grey images (`content`, `styles`, `image`) and `output_image()` restores the content's chroma.
    Targets are computed once, here.
    """

    def __init__(
        self,
        content,
        style,
        config=None,
        model=None,
        init_image=None,
        masks=None,
        scale: int = 0,
        extra_loss=None,
        retargetable: bool = False,
        start=None,
        sizes: Optional[Sizes] = None,
        **options,
    ):
        plan = plan_lib.resolve(config, **options)
        self.sizes = sizes or Sizes.of(plan.config)
        self.start = start
        self.extra_loss, self.retargetable = extra_loss, retargetable
        self._sources = (style, masks)  # what `retarget` prepares again for a new content image
        self.config = cfg = plan.config
        self.choice = plan.choice
        self.batched = isinstance(content, (list, tuple))
        self.contents_rgb, self.content, self.styles, self.masks = prepare_images(
            cfg, content, style, masks, self.sizes
        )
        self.content_rgb = self.contents_rgb[0]
        self.model = model or features.model_for(cfg.objective, cfg.precision)
        missing = [name for name in cfg.content_layers + cfg.style_layers if name not in self.model.output]
        if missing:
            raise NstError(f"the given feature model lacks layer(s) {', '.join(missing)}")
        self.optimizer = optimize.make_optimizer(cfg.optimisation, variable_rate=True)
        contents = np.stack([self.content, *self.contents_rgb[1:]])  # a batch is never grey
        self.tile = self.sizes.tile
        if self.tile is None:
            self.tile = planner.choose_tile(
                cfg, self.content.shape[:2], [s.shape[:2] for s in self.styles], len(contents)
            )
        self._build_objective(contents)
        init = tf.constant(self.initial_images(init_image), tf.float32)
        self.state = driver.RunState(init, self.optimizer.init(init), step=0, scale=scale)
        self._stepper = None  # the stepper of the run under way (its state may live on several devices)
        self.recoveries = []  # (step, what was done) per non-finite step survived

    def _build_objective(self, contents: np.ndarray) -> None:
        """The targets, the loss and the compiled step: tiled (the exact tiled objective, and the
        same update of the whole image) when `self.tile`, else whole."""
        cfg, optimizer = self.config, self.optimizer
        if self.tile:
            if self.extra_loss is not None or self.retargetable:
                raise NstError("an extra loss term (a video's temporal loss) takes an untiled run: pass --tile=off")
            self.tiled = tiling.TiledObjective(self.model, cfg.objective, self.tile, cfg.seed)
            self.targets = self.tiled.targets(contents, self.styles, cfg.style_blend, self.masks)
            self.loss_fn = self.tiled.loss
            self.compiled = optimize.CompiledStep(optimize.make_update(optimizer))
            return
        self.tiled = None
        self.targets = self._targets(contents)
        if self.retargetable:  # the step reads variables that `retarget` assigns: one trace for every frame
            self.targets = tf.nest.map_structure(_variable, self.targets)
        # Per image: each image's gradient is its own loss's, and L-BFGS keeps one history each.
        spec = cfg.objective
        self.loss_fn = lambda image: losses.objective(self.model, self.targets, spec, image, per_image=True)
        if self.extra_loss is not None:
            self.loss_fn = objective_terms([self.loss_fn, self.extra_loss])
        self.compiled = optimize.CompiledStep(optimize.make_step(self.loss_fn, optimizer), jit_compile=cfg.jit == "on")

    def _targets(self, contents: np.ndarray) -> losses.Targets:
        return losses.compute_targets(
            self.model,
            tf.constant(contents),
            [_batch(s) for s in self.styles],
            self.config.objective,
            self.config.style_blend,
            self.masks,
            seed=self.config.seed,
        )

    def retarget(self, content, init_image=None, style=None, masks=None, scale=None) -> None:
        """Starts this run over on another content image of the run's size (a clip's next frame),
        from `init_image` (else `config.init`), keeping the compiled step: the targets (content, and
        styles matched to the content's colours) are computed again and assigned, the optimiser's
        state and step count reset. style, masks: other paintings and masks, as many as before
        (None: the run's own); scale: the scale index to record (None: the run's). Needs
        `retargetable=True`."""
        if not self.retargetable:
            raise ValueError("retarget needs a StyleTransfer made with retargetable=True")
        if style is not None:
            self._sources = (style, masks)
        style, masks = self._sources
        contents_rgb, content_image, styles, masks = prepare_images(self.config, content, style, masks, self.sizes)
        if content_image.shape != self.content.shape or len(contents_rgb) != len(self.contents_rgb):
            raise NstError(
                f"retarget takes content of the run's size {self.content.shape[:2]}, got {content_image.shape[:2]}"
            )
        self.contents_rgb, self.content, self.styles, self.masks = contents_rgb, content_image, styles, masks
        new = self._targets(np.stack([content_image, *contents_rgb[1:]]))
        tf.nest.map_structure(
            lambda held, value: held.assign(value) if isinstance(held, tf.Variable) else None, self.targets, new
        )
        if isinstance(getattr(self.optimizer, "learning_rate", None), tf.Variable):  # a recovery may have halved it
            self.optimizer.learning_rate.assign(self.config.learning_rate)
        init = tf.constant(self.initial_images(init_image), tf.float32)
        scale = self.state.scale if scale is None else scale
        self.state = driver.RunState(init, self.optimizer.init(init), step=0, scale=scale)
        self.recoveries = []

    @property
    def step_count(self) -> int:
        """Steps taken at this scale."""
        return self.state.step

    @property
    def scale_index(self) -> int:
        """Which scale of a coarse-to-fine run this is."""
        return self.state.scale

    @property
    def style(self) -> np.ndarray:
        """The (first) style image as the run sees it, float32 `[h, w, 3]`."""
        return self.styles[0]

    def initial_images(self, init_image=None) -> np.ndarray:
        """The starting images, `[B, H, W, 3]`: `init_image` (one image, or one per content
        image: a list or a `[B, h, w, 3]` array) resized, or `initial_image` for each content."""
        batch = len(self.contents_rgb)
        if init_image is None:
            return np.stack([self.initial_image(content=c) for c in self.contents_rgb])
        if getattr(init_image, "ndim", 0) == 4 or isinstance(init_image, (list, tuple)):
            if len(init_image) != batch:
                raise NstError(f"{len(init_image)} initial image(s) for {batch} content image(s)")
            return np.stack([self.initial_image(i) for i in init_image])
        return np.stack([self.initial_image(init_image)] * batch)

    def initial_image(self, init_image=None, content=None) -> np.ndarray:
        """The starting image, `[H, W, 3]` at the content's size: `init_image` resized if given,
        else what `config.init` names for `content` (default the first; grey in luminance mode)."""
        cfg, hw = self.config, self.content.shape[:2]
        if init_image is not None:
            image = image_io.resize(image_io.load_image(init_image), hw)
        elif cfg.init == "network":  # the warm start: the network's painting
            if self.start is None:
                raise NstError(
                    "init=network starts from a network's painting: call nst_tf.stylize, or give StyleTransfer "
                    "start= (nst_tf.painters.for_plan(plan).start does)"
                )
            image = image_io.resize(
                image_io.load_image(self.start(self.content_rgb if content is None else content)), hw
            )
        elif cfg.init in INITS:  # as the export starts
            base = self.content if content is None else content
            image = tensor_image.start_image(cfg.init, base[None], self.style[None], cfg.seed).numpy()[0]
        else:
            image = image_io.resize(image_io.load_init_image(cfg.init), hw)
        return color.luminance_rgb(image) if cfg.preserve_colors == "luminance" else image

    @property
    def images(self) -> np.ndarray:
        """The current images, float32 `[B, H, W, 3]` in [0, 1] (B = 1 for one content image): the
        optimiser's result so far (`result`: for L-BFGS its last accepted point, never a trial of its
        line search); while a run is split across devices, the images as they stand."""
        if self._stepper is not None and self._stepper.to_host is not _numpy:  # per-replica values
            return self._stepper.to_host(self.state.image)
        return _numpy(self.optimizer.result(self.state.image, self.state.opt_state))

    @property
    def image(self) -> np.ndarray:
        """The current (first) image, float32 `[H, W, 3]` in [0, 1]."""
        return self.images[0]

    def output_image(self) -> np.ndarray:
        """The result as the user sees it, float32 `[H, W, 3]`: the current image, with the
        content's chroma restored in luminance mode."""
        if self.config.preserve_colors == "luminance":
            return color.with_chroma(self.image, self.content_rgb)
        return self.image

    def image_uint8(self) -> np.ndarray:
        """`output_image()` as uint8 `[H, W, 3]`."""
        return image_io.to_uint8(self.output_image())

    def images_uint8(self) -> list:
        """Each image of the batch as the user sees it, uint8 `[H, W, 3]` (a batch of one may be
        in a colour mode: `image_uint8` restores its chroma)."""
        if len(self.contents_rgb) == 1:
            return [self.image_uint8()]
        return [image_io.to_uint8(image) for image in self.images]

    def evaluate(self, per_image: bool = False):
        """`(loss, terms)` of the current image, as Python floats (averaged over a batch), or
        with `per_image` as lists of floats, one per image."""
        loss, terms = self.loss_fn(tf.constant(self.images))
        if per_image:
            return loss.numpy().tolist(), {k: v.numpy().tolist() for k, v in terms.items()}
        return float(tf.reduce_mean(loss)), {k: float(tf.reduce_mean(v)) for k, v in terms.items()}

    def run(self, steps: Optional[int] = None, callbacks: Iterable[Callback] = (), strategy=None):
        """Takes `steps` (default `sizes.steps`) optimiser steps; returns the uint8 image `[H, W, 3]`
        (for a batch, the list of them). Callbacks get the loss and terms averaged over a batch.
        strategy: a `tf.distribute` strategy (see `nst_tf.distribute`) to split the batch across
            its devices."""
        steps = self.sizes.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise NstError(f"steps must be a positive integer, got {steps!r}")
        callbacks, join = list(callbacks), None
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            if self.tiled is not None:
                raise NstError("a tiled run takes one device: pass --tile=off, or leave out --devices")
            stepper, self.state, join = distribute.split(
                self.state,
                strategy,
                self.model,
                self.targets,
                self.config.objective,
                self.config.optimisation,
                self.config.jit == "on",
            )
        else:
            step = self.compiled
            if self.tiled is not None:  # a tiled step tells the callbacks of each tile it finishes
                step = self.tiled.step(self.compiled, tile_reporter(self, callbacks))
            stepper = driver.Stepper(step, _numpy, self.optimizer.recover)
        self._stepper = stepper
        try:
            driver.drive(self, steps, stepper, callbacks)
        finally:
            if join is not None:
                self.state = join(self.state)
            self._stepper = None
        return self.images_uint8() if self.batched else self.image_uint8()


def _variable(value):
    """A target tensor as a variable (`retargetable` runs); other leaves (shares, None) as they are."""
    return tf.Variable(value, trainable=False) if isinstance(value, tf.Tensor) else value


def _numpy(value) -> np.ndarray:
    return value.numpy()


def optimise(
    content, style, plan, callbacks=(), model=None, masks=None, strategy=None, start=None, starts=None, terms=()
):
    """The optimisation of a resolved `nst_tf.plan.Plan` (`nst_tf.stylize` is its door): `content`
    (one image, or a list: a batch of one size optimised together) in the manner of `style` (one
    image or a list), coarse to fine (`scales` > 1: one `StyleTransfer` per size of
    `config.scale_plan()`, each starting from the previous result upsampled, sharing the feature
    model). Returns the last scale's `StyleTransfer` (its `output_image`, `images`).

    callbacks: every `Callback` (the door adds the config's and a progress bar); masks: one region
    mask per style (None: `config.style_mask`); model: a feature model to reuse; strategy: a
    `tf.distribute` strategy to split a batch across devices (the feature model is then built in its
    scope); start: the warm start's painter (`StyleTransfer`'s `start`); starts: the first scale's
    starting images (one per content, any size), instead of `config.init`'s; terms: extra terms of
    the objective (`objective_terms`; untiled runs)."""
    cfg = plan.config
    # Decoded once here: each scale resizes these, the planner and the checkpoint hash read them.
    masks = masks if masks is not None else cfg.style_mask
    batched = isinstance(content, (list, tuple))
    contents, style = (
        [image_io.load_image(c) for c in painting.as_images(content)],
        [image_io.load_image(s) for s in painting.as_images(style)],
    )
    masks = None if masks is None else [image_io.load_image(m) for m in painting.as_images(masks)]
    if not contents:
        raise NstError("no content image given")
    # The plan fixes each scale's tile once, for these images, from the memory available before the run.
    plan = plan.with_scales(contents[0].shape[:2], [s.shape[:2] for s in style], len(contents))
    scale_plans = plan.scales
    if cfg.memory_check:
        planner.check(scale_plans, cfg)
    callbacks = list(callbacks)
    if strategy is not None and model is None:
        with strategy.scope():
            model = features.model_for(cfg.objective, cfg.precision)
    model = model or features.model_for(cfg.objective, cfg.precision)
    saver = resume = None
    if cfg.checkpoint_dir:
        if strategy is not None:
            raise NstError("checkpoints are not kept for a run across devices: leave out --checkpoint_dir")

        saver, resume = checkpoint.for_run(
            cfg.outputs, config_lib.result_settings(cfg), [*contents, *style, *(masks or [])]
        )
        callbacks = [saver] + callbacks
    image, transfer = starts, None
    for index, (size, style_size, steps) in enumerate(cfg.scale_plan()):
        if resume is not None and index < resume.scale:
            continue
        sizes = Sizes(size, style_size or size, steps, scale_plans[index].tile)  # (the schedule's style_scale is in)
        run_of = dict(model=model, init_image=image, masks=masks, scale=index, start=start, sizes=sizes)
        if sizes.tile or strategy is not None or saver is not None:  # a run of its own
            extra = objective_terms(terms) if terms else None
            transfer = StyleTransfer(contents if batched else contents[0], style, plan, extra_loss=extra, **run_of)
        else:  # a repeat (a clip's next frame, the page's next refine, the API's next call) reuses the traced step
            transfer = _kept_run(contents if batched else contents[0], style, contents, plan, terms=terms, **run_of)
        model = transfer.model
        if resume is not None and index == resume.scale:
            resume.restore(transfer)
        try:
            if steps > transfer.step_count:
                transfer.run(steps - transfer.step_count, callbacks=callbacks, strategy=strategy)
        except Interrupted:
            if saver is not None:
                saver.save(transfer)
            raise
        except TimeUp:  # the budget is spent (`nst_tf.budget.Deadline`): this picture is the result
            return transfer
        image = transfer.images
    return transfer


KEPT_RUNS = painting.Kept(2)  # retargetable runs (their traced steps), by what the step depends on
_NOT_KEYS = ("steps", "scale_steps")  # what a kept run takes per call (the steps to take)


def _kept_run(content, style, contents, plan, model, init_image, masks, scale, start, sizes, terms) -> StyleTransfer:
    """A run of `plan` at `sizes` for `content`: the run kept from an earlier call of the same
    settings, shapes, feature model, extra terms and thread, started over on these images
    (`retarget`: the traced step kept, the targets assigned), else a new retargetable run that is
    kept."""
    cfg = plan.config
    settings = config_lib.result_settings(cfg)
    key = (
        tuple(sorted((k, _hashable(v)) for k, v in settings.items() if k not in _NOT_KEYS)),
        cfg.precision,
        cfg.jit,
        id(model),
        threading.get_ident(),  # a run is used by one thread at a time
        tuple(np.shape(c) for c in contents),
        isinstance(content, (list, tuple)),
        len(painting.as_images(style)),
        None if masks is None else len(masks),
        sizes,
        tuple(terms),  # the terms themselves (kept alive while their run is): their variables are in the step
    )
    made = []

    def make() -> StyleTransfer:
        made.append(True)
        extra = objective_terms(terms) if terms else None
        return StyleTransfer(
            content, style, plan, model, init_image, masks, scale, extra, retargetable=True, start=start, sizes=sizes
        )

    run = KEPT_RUNS.get(key, make)
    if not made:
        run.config, run.start = cfg, start
        try:
            run.retarget(content, init_image, style, masks, scale)
        except (ValueError, tf.errors.InvalidArgumentError, NstError):  # targets of another shape: a new run
            KEPT_RUNS.clear()
            run = KEPT_RUNS.get(key, make)
    return run


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


class OptimisationPainter(painting.Painter):
    """The optimisation as a painter (`nst_tf.painting`): the plan's objective and schedule, each
    content optimised (a list: one batch), with the painting options of the call.

    plan: a resolved `nst_tf.plan.Plan`; model: a feature model to share; strategy: devices for a
    batch; start: a network painter (`nst_tf.painting.Painter`) whose painting each run starts from
    (the warm start, `init="network"`): strength and a fixed style then shape that painting."""

    name = "optimisation"
    optimises = True

    def __init__(self, plan, model=None, strategy=None, start=None):
        self.plan, self.model, self.strategy, self.start = plan, model, strategy, start
        supports = {"style_blend", "style_mask", "preserve_colors", "style_size", "tile"}
        if start is not None:
            self.name = f"warm start ({start.name})"
            supports |= {"strength", "style_index", "adapt_steps"} & set(start.supports)
        self.supports = frozenset(supports)

    def check(self, options: painting.Options) -> None:
        super().check(options)
        if self.start is not None:
            self.start.check(options._replace(style_mask=None, style_size=None, tile="auto"))

    def prepare(self, styles) -> painting.Prepared:
        prepared = super().prepare(styles)
        if self.start is not None:  # the network's own representation, once for every content and scale
            paintings = prepared.images if self.start.takes_paintings else None
            prepared.cache["start"] = self.start.prepare(paintings)
        return prepared

    def render_many(self, contents, prepared, options, callbacks=(), terms=(), starts=None) -> list:
        """`contents` optimised (one batch), each from `starts` (one image each; None: the plan's
        init), with `terms` added to the objective (see `nst_tf.painters.paint`)."""
        # On the road the options are the plan's (made from it at the door) and only the regions' masks
        # come with the call; a painter used as a door (`painter.paint(content, styles, size=256)`)
        # resolves its other options into its plan as every door does (tiles, memory, schedule).
        changed = {
            name: getattr(options, name)
            for name in painting.Options._fields
            if name != "style_mask" and not painting.same(getattr(options, name), getattr(self.plan.config, name))
        }
        plan = plan_lib.resolve(self.plan, **changed)
        if terms and (len(plan.config.scale_plan()) != 1 or self.start is not None):
            raise NstError("extra objective terms take one scale, started from the given images")
        start = None
        if self.start is not None:
            # the start at the run's size, each painting in its region where the network takes regions;
            # style_size means the optimisation's painting size, not the network's
            masks = options.style_mask if "style_mask" in self.start.supports else None
            start_options = options._replace(size=None, style_mask=masks, style_size=None, tile="auto")
            start = lambda image: self.start.render(image, prepared.cache["start"], start_options)  # noqa: E731
        run = optimise(
            list(contents),
            prepared.images,
            plan,
            callbacks,
            self.model,
            options.style_mask,
            self.strategy,
            start,
            starts,
            terms,
        )
        self.model = run.model
        return [run.output_image()] if len(contents) == 1 else list(run.images)

    def render(self, content, prepared, options, callbacks=()) -> np.ndarray:
        return self.render_many([content], prepared, options, callbacks)[0]


def objective_terms(terms):
    """Terms of an objective as one (the objective with a run's `extra_loss`, or several extra terms):
    each `term(image) -> (loss [B], {name: [B]})`, pure and traceable; their losses summed, their named
    parts merged."""
    terms = list(terms)

    def total(image):
        loss, parts = terms[0](image)
        for term in terms[1:]:
            more, more_parts = term(image)
            loss, parts = loss + more, {**parts, **more_parts}
        return loss, parts

    return total
