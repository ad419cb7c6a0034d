"""The painter registry: the one place that says which painter a run needs, and `stylize`, the
one-call API every door's painting goes through.

Painters (each a `nst_tf.painting.Painter`; `supports` lists the options each honours):
- "optimisation" (`transfer.OptimisationPainter`): Gatys et al.'s optimisation, the plan's schedule;
- "warm": the optimisation started from a network's painting (`init="network"`);
- "arbitrary" (`networks.arbitrary.ArbitraryPainter`): any painting, one pass (Magenta's network);
- "universal" (`networks.universal.UniversalPainter`): any painting, one pass (WCT + decoders);
- "network" (`networks.use.Painter`): a trained `StyleNetwork` (fixed styles and/or a predict head).
"""

from __future__ import annotations

import os

from nst_tf import callbacks as callbacks_lib
from nst_tf import image_io, painting, transfer
from nst_tf import plan as plan_lib
from nst_tf.errors import NstError
from nst_tf.networks import arbitrary, models, universal, use


def load_network(src):
    """A network from a `.keras` file that `nst-tf-train` wrote, or a bundled one by name
    ("arbitrary", "universal", "demo", "three_styles"), or the model itself: a `StyleNetwork`
    (`--mode=table` or `predict`), a `universal.UniversalNetwork` (`--mode=decoder`) or an
    `arbitrary.ArbitraryNetwork`."""
    return models.load_model(src, (models.StyleNetwork, universal.UniversalNetwork, arbitrary.ArbitraryNetwork))


def make_painter(network, weights: str = "auto", precision: str = "float32", objective=None) -> painting.Painter:
    """The painter of a network (see `load_network`): an `arbitrary.ArbitraryPainter` for Magenta's
    network (adapting to `objective`, a `config.Objective`, when asked), a
    `universal.UniversalPainter` for decoders, each with its VGG19 in `precision` ("auto": this
    machine's measured choice for a network, as a door's plan makes it; bfloat16 halves the
    encoders' time on an AVX-512 BF16 CPU), else a `networks.use.Painter`."""
    network = load_network(network)
    with_vgg = isinstance(network, (arbitrary.ArbitraryNetwork, universal.UniversalNetwork))
    if with_vgg and precision == "auto":
        precision = plan_lib.resolve(network="universal", weights=weights).config.precision
    if isinstance(network, arbitrary.ArbitraryNetwork):
        return arbitrary.ArbitraryPainter(network, weights, precision, objective)
    if isinstance(network, universal.UniversalNetwork):
        return universal.UniversalPainter(network, weights, precision)
    return use.Painter(network, weights=weights)


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


def stylize(
    content,
    style,
    config=None,
    callbacks=None,
    progress: bool = False,
    model=None,
    masks=None,
    strategy=None,
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
    """
    network = options.get("network")
    if network is not None and not isinstance(network, (str, os.PathLike)):  # a loaded network
        if options.get("init") == "network" or getattr(config, "init", None) == "network":
            raise NstError("init=network takes the network's file (a path or a bundled name), not a loaded network")
        options = {**options, "network": "(model)"}
    plan = plan_lib.resolve(config, **options)  # once: every scale agrees
    cfg = plan.config
    painter = for_plan(plan, network if cfg.network == "(model)" else None, model, strategy)
    opts = painting.Options.of(cfg, style_mask=cfg.style_mask if masks is None else painting.as_images(masks))
    painter.check(opts)
    extra = list(callbacks or ())
    if painter.optimises:
        total = sum(steps for _, _, steps in cfg.scale_plan())
        extra = callbacks_lib.default_callbacks(cfg.outputs, total, progress) + extra
    elif progress:
        extra = [callbacks_lib.ProgressBar()] + extra
    batched = isinstance(content, (list, tuple))
    prepared = painter.prepare(style)
    images = painter.render_many(painting.as_images(content), prepared, opts, extra)
    images = [image_io.to_uint8(image) for image in images]
    return images if batched else images[0]
