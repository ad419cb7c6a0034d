"""Using a trained network: load it, choose its embedding (fixed styles, style images, blends,
strength), paint in one forward pass."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from nst_tf import callbacks as callbacks_lib
from nst_tf import image_io, planner
from nst_tf.errors import NstError
from nst_tf.networks import models, options, tiled

STYLE_SIZE = 256  # the predict network sees the style image at 256 x 256 (as the TF Lite model does)


def load_network(src):
    """A network from a `.keras` file that `nst-tf-train` wrote, or a bundled one by name
    ("universal", "demo", "three_styles"), or the model itself: a `StyleNetwork` (`--mode=table`
    or `predict`) or a `universal.UniversalNetwork` (`--mode=decoder`)."""
    from nst_tf.networks import universal

    if isinstance(src, (models.StyleNetwork, universal.UniversalNetwork)):
        return src
    path = options.check_network_file(src)
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many kinds for a damaged or foreign file
        raise NstError(f"network {path}: cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    if not isinstance(model, (models.StyleNetwork, universal.UniversalNetwork)):
        raise NstError(f"network {path}: a Keras model, but not an nst_tf style network")
    return model


def is_universal(network) -> bool:
    from nst_tf.networks import universal

    return isinstance(network, universal.UniversalNetwork)


def make_painter(network, weights: str = "auto", precision: str = "float32"):
    """A ready painter for `network` (see `load_network`): a `universal.UniversalPainter` for
    decoders, its VGG19 in `precision` ("auto": this machine's measured choice for a network, as
    `nst_tf.plan.resolve` makes it at a door; float32 when autotune is off; bfloat16 halves the
    encoders' time on an AVX-512 BF16 CPU), else a `Painter`."""
    from nst_tf.networks import universal

    network = load_network(network)
    if is_universal(network):
        if precision == "auto":
            from nst_tf import plan

            precision = plan.resolve(network="universal", weights=weights).config.precision
        return universal.UniversalPainter(network, weights, precision)
    return Painter(network, weights=weights)


class Painter:
    """A network ready to paint: its embedding sources and a compiled forward pass.

    statistics: the frozen VGG19 statistics model for the predict head (built from `weights` when
    the network has the head and none is given)."""

    def __init__(self, network, statistics=None, weights: str = "auto"):
        self.network = load_network(network)
        if is_universal(self.network):
            raise NstError("a universal painter's decoders: paint with nst_tf.UniversalPainter (or make_painter)")
        if self.network.predict and statistics is None:
            statistics = models.style_statistics(weights, self.network.predict_layers)
        self.statistics = statistics
        self._forward = tf.function(lambda content, embedding: self.network([content, embedding]))

    def describe(self) -> str:
        net = self.network
        parts = []
        if net.table is not None:
            parts.append(
                f"{net.num_styles} fixed style(s): " + ", ".join(net.style_names or map(str, range(net.num_styles)))
            )
        if net.predict:
            parts.append("any style image (predict head)")
        return "; ".join(parts)

    def _predicted(self, images) -> tf.Tensor:
        """`[K, D]`: each image's embedding, one at a time (a batch's kernels round differently, and
        a blend of (1, 0) must give the single style exactly)."""
        rows = [
            self.network.head(self.statistics(tf.constant(image_io.load_image(s, STYLE_SIZE, square=True)[None])))
            for s in images
        ]
        return tf.concat(rows, axis=0)

    def embedding(self, styles=None, style_blend=None, style_index=None, strength: float = 1.0, content=None):
        """The `[1, D]` embedding to paint with.

        styles: style images (the predict head), blended by `style_blend`; or none, and then the
            table's row `style_index` (default 0), or its rows blended by `style_blend`.
        strength: in [0, 1]; below 1 mixes in `content`'s own embedding (the predict head).
        """
        net = self.network
        if not 0.0 <= strength <= 1.0:
            raise NstError(f"strength must be in [0, 1], got {strength}")
        styles = list(styles or [])
        if styles:
            if not net.predict:
                raise NstError(
                    f"this network paints {net.num_styles} fixed style(s) ({self.describe()}) and cannot take a "
                    "style image: choose one with style_index, or leave the style out"
                )
            if style_index is not None:
                raise NstError("style_index picks a fixed style; it does not go with style images")
            rows, count = self._predicted(styles), len(styles)
        else:
            if net.table is None:
                raise NstError("this network predicts the style from a style image: give one")
            if style_index is not None and not (isinstance(style_index, int) and 0 <= style_index < net.num_styles):
                raise NstError(f"style_index {style_index} is out of range: this network has {net.num_styles} style(s)")
            rows, count = tf.convert_to_tensor(net.table), net.num_styles
            if style_blend is None:
                style_blend = np.eye(count)[style_index or 0]
        blend = np.ones(count) if style_blend is None else np.asarray(style_blend, np.float64)
        if blend.shape != (count,) or np.any(blend < 0) or not blend.sum() > 0:
            raise NstError(f"style_blend needs {count} non-negative weights, not all zero")
        embedding = tf.constant((blend / blend.sum())[None], tf.float32) @ rows
        if strength < 1.0:
            if not net.predict:
                raise NstError("strength below 1 mixes in the content's own style: this network has no predict head")
            embedding = strength * embedding + (1.0 - strength) * self._predicted([content])
        return embedding

    def paint(
        self,
        content,
        styles=None,
        size: Optional[int] = 512,
        style_blend=None,
        style_index=None,
        strength=1.0,
        tile="auto",
        callbacks=(),
    ):
        """`content` painted in one forward pass: uint8 `[H, W, 3]`, the longest side `size` (None:
        as given). See `embedding` for the style arguments. tile: "auto" (tiled only when the
        untiled pass would not fit in the memory available), "off", or a tile side in pixels: the
        exact tiled pass (`nst_tf.networks.tiled`); callbacks: told of each tile
        (`callbacks.painting`: the one progress protocol, `Callback.on_tile`)."""
        image = image_io.load_image(content, size)
        if min(image.shape[:2]) < models.MIN_SIDE:
            raise NstError(
                f"the content is {image.shape[1]}x{image.shape[0]}: the network needs {models.MIN_SIDE} px or more"
            )
        if isinstance(styles, (str, os.PathLike, np.ndarray)) or hasattr(styles, "mode"):
            styles = [styles]
        embedding = self.embedding(styles, style_blend, style_index, strength, content=image)
        tile = planner.choose_network_tile(image.shape[:2], tile, self.network.alpha)
        if tile:
            with callbacks_lib.painting(image, callbacks) as report:
                return image_io.to_uint8(tiled.paint_tiled(self.network.transform, image, embedding, tile, report))
        out = self._forward(tf.constant(image[None]), embedding)
        return image_io.to_uint8(out.numpy()[0])


def paint_with_config(cfg, content, styles=(), network=None, default_styles=False, callbacks=()) -> np.ndarray:
    """`cfg.network`'s (or `network`'s: a loaded network) painting of `content` at `cfg.size` with
    `styles` (for a predict network or the universal painter) and `cfg.style_blend`,
    `cfg.style_index`, `cfg.strength`, `cfg.tile` (and for the universal painter `cfg.style_size`,
    `cfg.style_mask`, `cfg.preserve_colors`): uint8 `[H, W, 3]`. `default_styles`: the styles are
    a default the user did not choose (the command line's bundled painting, the optimisation's
    styles for the warm start), which a fixed-style network ignores; styles a user gave it are an
    error."""
    painter = make_painter(cfg.network if network is None else network, cfg.weights, cfg.precision)
    styles = list(styles)
    if is_universal(painter.network):
        extra = dict(style_size=cfg.style_size, masks=cfg.style_mask, preserve_colors=cfg.preserve_colors)
    else:
        extra, styles = {}, ([] if default_styles and not painter.network.predict else styles)
    return painter.paint(
        content, styles or None, cfg.size, cfg.style_blend, cfg.style_index, cfg.strength, cfg.tile, callbacks, **extra
    )
