"""The painter registry: the one place that says which painter a run needs, and the one road every
door paints through: `paint(plan, photos, paintings, options, callbacks)` (`stylize` is the Python
API's door onto it). What the road builds is kept for the process, so a repeat costs compute only:
the painters (their networks and traced functions) and the paintings they prepared, each in a small
bounded cache (`PAINTERS`, `PAINTINGS_PER_PAINTER`); the VGG feature models in `features.model_for`'s.

Painters (each a `nst_tf.painting.Painter`; `supports` lists the options each honours):
- "optimisation" (`transfer.OptimisationPainter`): Gatys et al.'s optimisation, the plan's schedule;
- "warm": the optimisation started from a network's painting (`init="network"`);
- "arbitrary" (`networks.arbitrary.ArbitraryPainter`): any painting, one pass (Magenta's network);
- "universal" (`networks.universal.UniversalPainter`): any painting, one pass (WCT + decoders);
- "network" (`networks.use.NetworkPainter`): a trained `StyleNetwork` (fixed styles and/or a predict head).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import NamedTuple, Optional

import numpy as np

from nst_tf import budget as budget_lib
from nst_tf import callbacks as callbacks_lib
from nst_tf import image_io, painting, transfer
from nst_tf import plan as plan_lib
from nst_tf.config import make_config
from nst_tf.errors import NstError
from nst_tf.networks import arbitrary, models, universal, use
from nst_tf.networks import options as network_options


def load_network(src):
    """A network from a `.keras` file that `nst-tf-train` wrote, or a bundled one by name
    ("arbitrary", "universal", "demo", "three_styles"), or the model itself: a `StyleNetwork`
    (`--mode=table` or `predict`), a `universal.UniversalNetwork` (`--mode=decoder`) or an
    `arbitrary.ArbitraryNetwork`."""
    return models.load_model(src, (models.StyleNetwork, universal.UniversalNetwork, arbitrary.ArbitraryNetwork))


PAINTERS = painting.Kept(4)  # built network painters, by (network file and its stamp, weights, precision, objective)
PAINTINGS_PER_PAINTER = 8  # prepared paintings a network painter keeps, by the paintings' contents


def _file_key(spec):
    """A network or image file as a cache key: its path with its size and modification time (a file
    written again is read again); None for what is not a file name."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    path = network_options.network_path(os.fspath(spec))
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def _images_key(images) -> Optional[tuple]:
    """The paintings as a cache key: files by `_file_key`, arrays by a hash of their bytes; None
    (not kept) for anything else."""
    key = []
    for image in painting.as_images(images):
        if isinstance(image, np.ndarray):
            key.append((image.shape, str(image.dtype), hashlib.blake2b(image.tobytes(), digest_size=16).digest()))
        else:
            found = _file_key(image)
            if found is None:
                return None
            key.append(found)
    return tuple(key)


def make_painter(network, weights: str = "auto", precision: str = "float32", objective=None) -> painting.Painter:
    """The painter of a network (see `load_network`): an `arbitrary.ArbitraryPainter` for Magenta's
    network (adapting to `objective`, a `config.Objective`, when asked), a
    `universal.UniversalPainter` for decoders, each with its VGG19 in `precision` ("auto": this
    machine's measured choice for a network, as a door's plan makes it; bfloat16 halves the
    encoders' time on an AVX-512 BF16 CPU), else a `networks.use.NetworkPainter`. A network named by a
    file or a bundled name is built once per process (`PAINTERS`)."""
    stamp = _file_key(network)
    key = None if stamp is None else (stamp, weights, precision, objective)
    return PAINTERS.get(key, lambda: _make_painter(network, weights, precision, objective))


def _make_painter(network, weights, precision, objective) -> painting.Painter:
    network = load_network(network)
    if isinstance(network, (arbitrary.ArbitraryNetwork, universal.UniversalNetwork)):  # VGG: its precision
        precision = plan_lib.network_precision(precision, weights)
    if isinstance(network, arbitrary.ArbitraryNetwork):
        return arbitrary.ArbitraryPainter(network, weights, precision, objective)
    if isinstance(network, universal.UniversalNetwork):
        return universal.UniversalPainter(network, weights, precision)
    return use.NetworkPainter(network, weights=weights)


def for_plan(plan: plan_lib.Plan, network=None, model=None, strategy=None) -> painting.Painter:
    """The painter of a resolved plan: the optimisation, a network's one pass, or the optimisation
    warm-started from the network's painting. network: a loaded network instead of the plan's
    `network` file; model: a feature model for the optimisation to share; strategy: devices."""
    cfg = plan.config
    if plan.painter == "optimisation":
        return transfer.OptimisationPainter(plan, model, strategy)
    net = make_painter(cfg.network if network is None else network, cfg.weights, cfg.precision, cfg.objective)
    if plan.painter == "network":
        return net
    return transfer.OptimisationPainter(plan, model, strategy, start=net)


class Kind(NamedTuple):
    """What a door may ask of the painter a plan paints with, before painting: its name, the options
    it honours, whether it takes paintings and whether it takes steps."""

    name: str
    supports: frozenset
    takes_paintings: bool
    optimises: bool


def kind(plan: plan_lib.Plan) -> Kind:
    """The painter of `plan`, described (`Kind`)."""
    painter = for_plan(plan)
    return Kind(painter.name, painter.supports, painter.takes_paintings, painter.optimises)


def check(plan: plan_lib.Plan, options: painting.Options) -> None:
    """Refuses, with one line, an option the painter of `plan` cannot honour (before any work)."""
    for_plan(plan).check(options)


def paint(
    plan: plan_lib.Plan,
    photos,
    paintings,
    options: Optional[painting.Options] = None,
    callbacks=(),
    *,
    terms=(),
    starts=None,
    network=None,
    model=None,
    strategy=None,
) -> list:
    """The one road: `photos` (one or a list: for the optimisation, one batch of one size) painted
    in the manner of `paintings` (one or a list; None for a network of fixed styles) by the painter
    of `plan` (resolved at the door), with `options` (`painting.Options`, made at the door; default:
    the plan's), told `callbacks`. Returns float32 `[H, W, 3]` in [0, 1], one per photo. An option
    the painter cannot honour is refused (`NstError`) before any work. The painter and the prepared
    paintings come from the process's caches when they were built before.

    terms: extra terms of the optimisation's objective, composed into it (each `term(image) ->
    (loss [B], {name: [B]})`, pure and traceable, its inputs held in variables it updates: a clip's
    temporal loss, `video.temporal.TemporalTerm`); one scale. The run is kept for these terms (as every
    untiled optimisation's is for its settings: `transfer.KEPT_RUNS`), so a next photo of the same
    size costs its steps only.
    starts: the optimisation's starting images, one per photo (None: the plan's `init`).
    network: a loaded network instead of the plan's file; model: a VGG feature model for the
    optimisation to use; strategy: a `tf.distribute` strategy to split a batch across devices.
    On the road the options are the plan's (a door makes both from one Config), with the regions'
    masks as arrays; the optimisation resolves any other into its plan, as a door would."""
    painter = for_plan(plan, network, model, strategy)
    if (terms or starts is not None) and not painter.optimises:
        raise NstError(
            f"the {painter.name} painter paints in one pass: objective terms and starts take the optimisation"
        )
    options = painting.Options.of(plan.config) if options is None else options
    painter.check(options)
    prepare = lambda: painter.prepare(paintings)  # noqa: E731
    if painter.optimises:  # its prepared paintings are the images: nothing worth keeping
        prepared = prepare()
    else:
        if not hasattr(painter, "prepared_paintings"):
            painter.prepared_paintings = painting.Kept(PAINTINGS_PER_PAINTER)
        prepared = painter.prepared_paintings.get(_images_key(paintings), prepare)
    if painter.optimises:
        return painter.render_many(painting.as_images(photos), prepared, options, list(callbacks), terms, starts)
    return painter.render_many(painting.as_images(photos), prepared, options, list(callbacks))


def stylize(
    content,
    style,
    config=None,
    callbacks=None,
    progress: bool = False,
    model=None,
    masks=None,
    strategy=None,
    starts=None,
    **options,
):
    """Paints `content` in the manner of `style`; returns the result as uint8 `[H, W, 3]`.

    content: a path, a PIL image or an array (uint8, uint16 or float in [0, 1]); or a list of
        them of one shape (for the optimisation, optimised together as a batch: see
        `StyleTransfer`): the result is then the list of images.
    style: one such image or a list of them (blended by `style_blend`, or each painting its own
        region with `style_mask` / `masks`); None for a network of fixed styles.
    config: a `Config`, or the `nst_tf.plan.Plan` a door resolved (then nothing is re-resolved).
    options: any `Config` field, named like the command-line flags (size=384, steps=300,
        style_weight=..., init="noise", optimizer="lbfgs", scales=3, weights="embedded", ...).
        A painting option the painter cannot honour is refused (`NstError`), never ignored.
    callbacks: extra `Callback`s; `progress=True` adds a progress bar on stderr; for the
        optimisation, the config's snapshot_dir, logdir, contact_sheet and loss_plot add theirs.
    model: a feature model to reuse (see `StyleTransfer`).
    network (an option): a trained network's path, a bundled one's name ("universal", "demo",
        "three_styles") or a loaded network: the result is its one forward pass (with `strength`,
        `style_index`, `style_blend`), unless `init="network"` makes it the optimisation's start.
    strategy: a `tf.distribute` strategy to split a batch across devices (`nst_tf.distribute`).
    starts: for the optimisation, the starting image of each content (float, any size), instead of
        `init`'s (a budget's one pass, as painted).
    budget (an option): seconds from this call for the best picture they buy (`nst_tf.budget`): the
        one pass, then refine steps from it until the time is spent.
    """
    network = options.get("network")
    if network is not None and not isinstance(network, (str, os.PathLike)):  # a loaded network
        if options.get("init") == "network" or getattr(config, "init", None) == "network":
            raise NstError("init=network takes the network's file (a path or a bundled name), not a loaded network")
        options = {**options, "network": "(model)"}
    timer = []
    if isinstance(config, plan_lib.Plan):  # resolved at a door
        plan = plan_lib.resolve(config, **options)
    else:  # once: every scale agrees
        wanted = make_config(config, **options)
        if wanted.budget:  # counted from this call
            choice = budget_lib.choose(wanted, 0.0)
            plan = plan_lib.resolve(choice.config, choice.autotune)
            timer = [budget_lib.Deadline(time.perf_counter() + wanted.budget)] if choice.refine else []
        else:
            plan = plan_lib.resolve(wanted)
    cfg = plan.config
    opts = painting.Options.of(cfg, style_mask=cfg.style_mask if masks is None else painting.as_images(masks))
    extra = list(callbacks or ()) + timer
    if plan.painter != "network":  # the optimisation (from the content or a network's painting)
        total = sum(steps for _, _, steps in cfg.scale_plan())
        extra = callbacks_lib.default_callbacks(cfg.outputs, total, progress) + extra
    elif progress:
        extra = [callbacks_lib.ProgressBar()] + extra
    network = network if cfg.network == "(model)" else None
    images = paint(plan, content, style, opts, extra, starts=starts, network=network, model=model, strategy=strategy)
    images = [image_io.to_uint8(image) for image in images]
    return images if isinstance(content, (list, tuple)) else images[0]
