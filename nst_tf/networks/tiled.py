"""Exact tiled painting with a transform network, for outputs whose activations do not fit in memory.

Instance norm makes every output pixel depend on the whole image: each norm layer uses its input's
mean and variance over all positions. Those are sums over positions, like the style statistics of
the tiled objective (`nst_tf.tiling`), but here they chain: each norm layer's input depends on the
statistics of the norm layers before it. So a painting runs one statistics pass per norm layer, in
order, and a last pass that paints:

- pass k (k = 1 .. number of norm layers): each tile, grown by the network's reach, runs through the
  network with the norm layers before k using the whole image's statistics already found; the
  positions the tile owns add their moments of norm layer k's input (combined exactly, Chan et al.'s
  pairwise update in float64), and the tile stops there;
- the last pass runs each grown tile through the whole network with every statistic fixed and writes
  the pixels it owns.

Exactness needs the tiles to sit on the network's stride grid (the image is reflect-padded to a
multiple of 4 first, as the network itself does, and tiles start at multiples of 4) and a halo of at
least the network's reach (`reach`: every owned pixel's receptive field lies inside the grown tile,
so the reflect padding at a tile's inner edges never reaches it; at the image's edges a tile's edge
is the image's, padded as the whole image is). The cost: the statistics passes recompute the layers
before each norm layer (the residual trunk holds 10 of the 16), plus the halos and one trace per
pass: measured 5.6x the untiled pass at 4096 px and 2.9x at 8192 px, in tiles of 2048 (docs/tiling.md), so
`planner.choose_network_tile` tiles only what does not fit.
"""

from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from nst_tf import geometry
from nst_tf.networks import models


class _Stop(Exception):
    """Raised by a statistics pass's hook once its norm layer's moments are taken."""


def chain(model: keras.Model) -> list:
    """A Keras model's convolutions and upsamplings in order, as `geometry.reach` takes them."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out.append(("conv", layer.kernel_size[0], layer.strides[0]))
        elif isinstance(layer, keras.layers.UpSampling2D):
            out.append(("upsample", layer.size[0], 0))
    return out


def reach(model: keras.Model, stride: int = 1) -> int:
    """A network's reach in input pixels (`geometry.reach` of its layers): how far from an output
    pixel an input pixel can change it when every norm layer's statistics are held fixed.
    `stride`: input pixels per position of the model's input (a decoder's features: > 1)."""
    return geometry.reach(chain(model), stride)


def geometry_of(transform: keras.Model) -> geometry.Geometry:
    """The tiles of a transform network's exact tiled painting: on multiples of 4, grown by its
    reach rounded up to 4 (`planner.NETWORK_GEOMETRY` for the default network)."""
    return geometry.Geometry.of_reach(reach(transform), models.MULTIPLE)


def norm_layers(transform: keras.Model) -> list:
    """The names of the transform network's norm layers, in the order they run."""
    kinds = (models.InstanceNorm, models.ConditionalInstanceNorm)
    return [layer.name for layer in transform.layers if isinstance(layer, kinds)]


class _Moments:
    """A channel-wise mean and variance accumulated over tiles (pairwise update, float64)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, count, mean, var) -> None:
        n = int(count)
        mean, var = mean.numpy().astype(np.float64), var.numpy().astype(np.float64)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + var * n + delta**2 * (self.count * n / total)
        self.count = total

    def tensors(self) -> Tuple[tf.Tensor, tf.Tensor]:
        shape = (1, 1, 1, -1)
        return (
            tf.constant(np.reshape(self.mean, shape), tf.float32),
            tf.constant(np.reshape(self.m2 / self.count, shape), tf.float32),
        )


def _owned(x, tile_hw, window):
    """The positions of a grown tile's map `x` (of a tile of `tile_hw` pixels) that the tile owns:
    `window` holds the owned pixel rows and columns within the grown tile (multiples of 4)."""
    stride = tile_hw[0] // tf.shape(x)[1]
    return x[:, window[0] // stride : window[1] // stride, window[2] // stride : window[3] // stride]


def _compiled_pass(transform: keras.Model, fixed_names, target: Optional[str]):
    """One pass's tile function, compiled with the tile's size left open: `(tile, embedding, window,
    fixed)` -> the owned positions' `(count, mean, variance)` of norm layer `target`'s input (the
    norm layers `fixed_names` using the statistics `fixed`), or (`target` None) the owned pixels of
    the painting."""

    def run(tile, embedding, window, fixed):
        stats = dict(zip(fixed_names, fixed))
        taken = []

        def hook(layer, x):
            if layer in stats:
                return stats[layer]
            x = _owned(x, tf.shape(tile)[1:3], window)
            mean, var = models.instance_moments(x)
            taken.append((tf.shape(x)[1] * tf.shape(x)[2], tf.reshape(mean, [-1]), tf.reshape(var, [-1])))
            raise _Stop

        try:
            with models.norm_moments(hook):
                painted = transform([tile, embedding])
        except _Stop:
            return taken[0]
        return _owned(painted, tf.shape(tile)[1:3], window)

    stat = tf.TensorSpec([1, 1, 1, None], tf.float32)
    signature = [
        tf.TensorSpec([1, None, None, 3], tf.float32),
        tf.TensorSpec([1, None], tf.float32),
        tf.TensorSpec([4], tf.int32),
        [(stat, stat)] * len(fixed_names),
    ]
    return tf.function(run, input_signature=signature)


def paint_tiled(
    transform: keras.Model,
    content: np.ndarray,
    embedding,
    tile: int,
    report=None,
) -> np.ndarray:
    """`transform([content, embedding])` computed tile by tile: `content` float32 `[H, W, 3]` in
    [0, 1], `embedding` `[1, D]`; returns float32 `[H, W, 3]`. `tile`: the owned tile side in
    pixels (rounded down to a multiple of 4). report: `report(stage, done, total)` after each tile
    (`callbacks.tile_reporter`; stage "pass k/n")."""
    height, width = content.shape[:2]
    multiple = models.MULTIPLE
    padded = np.pad(content, [(0, -height % multiple), (0, -width % multiple), (0, 0)], mode="reflect")
    grid = geometry_of(transform).grid(padded.shape[:2], tile)
    names = norm_layers(transform)
    embedding = tf.convert_to_tensor(embedding, tf.float32)
    fixed: list = []
    out = np.empty(padded.shape, np.float32)
    with _quiet_retracing():
        for k, target in enumerate(names + [None]):
            function, moments = _compiled_pass(transform, names[:k], target), _Moments()
            for i, t in enumerate(grid):
                (y0, y1, x0, x1), (gy0, gy1, gx0, gx1) = t.owned, t.grown
                window = tf.constant([y0 - gy0, y1 - gy0, x0 - gx0, x1 - gx0], tf.int32)
                result = function(tf.constant(padded[None, gy0:gy1, gx0:gx1]), embedding, window, fixed)
                if target is None:
                    out[y0:y1, x0:x1] = result[0].numpy()
                else:
                    moments.add(*result)
                if report:
                    report(f"pass {k + 1}/{len(names) + 1}", i + 1, len(grid))
            if target is not None:
                fixed.append(moments.tensors())
    return out[:height, :width]


@contextlib.contextmanager
def _quiet_retracing():
    """Each pass's function is traced once, by design: TensorFlow's "retracing" warning is noise."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)
