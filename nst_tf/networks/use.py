"""A trained `StyleNetwork` as a painter (`nst_tf.painting.Painter`): its embedding from fixed styles
or style images (blends, strength), painted in one forward pass."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nst_tf import callbacks as callbacks_lib
from nst_tf import color, image_io, painting, planner
from nst_tf.errors import NstError
from nst_tf.networks import models, tiled

STYLE_SIZE = 256  # the predict network sees the style image at 256 x 256 (as the TF Lite model does)


def load_style_network(src) -> models.StyleNetwork:
    """A `StyleNetwork` from a `.keras` file that `nst-tf-train --mode=table/predict` wrote, a bundled
    one's name ("three_styles"), or the model itself."""
    return models.load_model(src, (models.StyleNetwork,), "a style network (nst-tf-train --mode=table or predict)")


class NetworkPainter(painting.Painter):
    """A `StyleNetwork` ready to paint: its embedding sources and a compiled forward pass.

    statistics: the frozen VGG19 statistics model for the predict head (built from `weights` when
    the network has the head and none is given). Honours strength (with the predict head), blends,
    a fixed style (with a table), colour preservation (histogram: with the predict head, each
    painting's colours moved to the content's before its embedding) and tiles."""

    name = "network"

    def __init__(self, network, statistics=None, weights: str = "auto"):
        self.network = load_style_network(network)
        if self.network.predict and statistics is None:
            statistics = models.style_statistics(weights, self.network.predict_layers)
        self.statistics = statistics
        self.takes_paintings = bool(self.network.predict)
        supports = {"style_blend", "preserve_colors", "tile"}
        supports |= {"strength"} if self.network.predict else set()
        supports |= {"style_index"} if self.network.table is not None else set()
        self.supports = frozenset(supports)
        self._forward = tf.function(lambda content, embedding: self.network([content, embedding]), autograph=False)

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

    def check(self, options: painting.Options) -> None:
        super().check(options)
        if options.preserve_colors == "histogram" and not self.network.predict:
            raise NstError("--preserve_colors=histogram moves a painting's colours: this network has fixed styles")

    def prepare(self, styles) -> painting.Prepared:
        images = [image_io.load_image(s) for s in painting.as_images(styles)]
        if images and not self.network.predict:
            raise NstError(
                f"this network paints {self.network.num_styles} fixed style(s) ({self.describe()}) and cannot take a "
                "style image: choose one with style_index, or leave the style out"
            )
        if not images and self.network.table is None:
            raise NstError("this network predicts the style from a style image: give one")
        return painting.Prepared(images)

    def _predicted(self, images) -> tf.Tensor:
        """`[K, D]`: each image's embedding, one at a time (a batch's kernels round differently, and
        a blend of (1, 0) must give the single style exactly)."""
        rows = [
            self.network.head(self.statistics(tf.constant(image_io.resize(image, (STYLE_SIZE, STYLE_SIZE))[None])))
            for image in images
        ]
        return tf.concat(rows, axis=0)

    def embedding(self, prepared: painting.Prepared, options=painting.Options(), content=None) -> tf.Tensor:
        """The `[1, D]` embedding to paint `content` (float32 `[H, W, 3]`) with: the paintings'
        (blended by `style_blend`), or the table's row `style_index` (default 0) or its rows blended;
        strength below 1 mixes in the content's own embedding."""
        net, strength = self.network, painting.checked_strength(options.strength)
        style_blend, style_index = options.style_blend, options.style_index
        if prepared.images:
            if style_index is not None:
                raise NstError("style_index picks a fixed style; it does not go with style images")
            if options.preserve_colors == "histogram":
                rows = self._predicted([color.match_color(s, content) for s in prepared.images])
            else:
                rows = prepared.cached("rows", lambda: self._predicted(prepared.images))
            count = len(prepared)
        else:
            if style_index is not None and not (isinstance(style_index, int) and 0 <= style_index < net.num_styles):
                raise NstError(f"style_index {style_index} is out of range: this network has {net.num_styles} style(s)")
            rows, count = tf.convert_to_tensor(net.table), net.num_styles
            if style_blend is None:
                style_blend = np.eye(count)[style_index or 0]
        embedding = tf.constant(painting.blend_weights(style_blend, count)[None], tf.float32) @ rows
        if strength < 1.0:
            if not net.predict:
                raise NstError("strength below 1 mixes in the content's own style: this network has no predict head")
            embedding = strength * embedding + (1.0 - strength) * self._predicted([content])
        return embedding

    def paint_photo(self, image, prepared: painting.Prepared, options: painting.Options, masks, callbacks):
        """One forward pass; tile: "auto" (tiled only when the untiled pass would not fit in the
        memory available), "off", or a side in pixels (`nst_tf.networks.tiled`, exact); callbacks:
        told of each tile (`callbacks.one_pass`)."""
        embedding = self.embedding(prepared, options, image)
        tile = planner.choose_network_tile(image.shape[:2], options.tile, self.network.alpha)
        if tile:
            with callbacks_lib.one_pass(image, callbacks) as report:
                out = tiled.paint_tiled(self.network.transform, image, embedding, tile, report)
        else:
            out = self._forward(tf.constant(image[None]), embedding).numpy()[0]
        return out
