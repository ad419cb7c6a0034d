"""The exact tiled objective: a step's loss and gradient computed tile by tile, for images whose
feature activations do not fit in memory at once.

Every term of `losses.objective` is a sum over positions: the content term is local, and each
style statistic is a sum of per-position moments weighted by the positions' probabilities
(`losses.Statistic.sums`), so the whole image's moments are the sums of its tiles'. One step:

1. pass 1, no gradients: each tile, grown by a halo, runs through VGG; the positions it owns (its
   stride cells inside the tile proper) add their moments to the whole image's;
2. the head: the loss from the whole image's moments (`losses.objective_from_sums`, the formula
   the untiled step uses), and its gradient with respect to each moment (small tensors);
3. pass 2: each tile again, now differentiating the sum of its own moments weighted by those
   gradients (the chain rule through the statistic, the whole image's moments held fixed). The
   gradient reaches the tile's pixels, halo included (its owned positions see the halo), and is
   added into the whole image's gradient there.
The tiles' gradients add up to the gradient of the whole image's objective: there is nothing to
blend and no seam. The optimiser then updates the whole image (it and the optimiser state live in
host memory) with the same pure update as an untiled run.

Exactness needs two facts of the tile's geometry (`nst_tf.geometry`, from `vgg.footprint`): each tile starts at a multiple
of the deepest layer's stride (so poolings see the whole image's windows), and the halo is at least
that layer's reach (70 px for VGG19's block5_conv1, rounded up to the stride: 80), so every owned
position's receptive field lies inside the grown tile and the tile's zero padding never reaches it.
The halo is the least that is exact: a larger one only costs time.

The targets are computed the same way: the content's activations are assembled from the tiles'
owned positions, and each style image's statistic from its tiles' sums.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from nst_tf import geometry, losses, optimize, vgg
from nst_tf.geometry import Tile, owned_window


def _open(value):
    """A tensor's spec with its batch and pixel dimensions left open: all but the channels of a
    rank 4 tensor (`[B, h, w, c]`), all of a rank 3 one (a mask's `[B, h, w]`)."""
    if not isinstance(value, (tf.Tensor, np.ndarray)):
        return value
    shape = list(value.shape)
    if len(shape) >= 3:
        shape[:3] = [None] * 3
    return tf.TensorSpec(shape, tf.as_dtype(value.dtype))


class Part(NamedTuple):
    """What one tile's compiled pass takes: the grown tile's pixels are cut per call; these are
    fixed for the run."""

    windows: Dict[str, tf.Tensor]  # layer -> int32 [4]: owned rows and columns in the tile's own layer map
    content: Dict[str, tf.Tensor]  # content layer -> the content target at the owned positions
    masks: Tuple[Optional[Dict[str, tf.Tensor]], ...]  # per style: style layer -> the mask at the owned positions


def _silent(stage: str, done: int, total: int) -> None:
    pass


class TiledObjective:
    """`losses.objective` and its gradient for `[B, H, W, 3]` images, computed tile by tile.

    model: the feature model (`features.model_for`); spec: the objective (`config.Objective`); tile:
    the owned tile side in pixels; seed: the seed of a statistic's random parameters.
    `targets(...)` must be called once (it fixes the content's size) before `loss_and_grad`.
    Passes report each tile they finish to the `report(stage, done, total)` given to them (`step`).
    """

    def __init__(self, model, spec, tile: int, seed: int = 0):
        self.model, self.spec, self.tile, self.seed = model, spec, tile, seed
        self.layers = list(dict.fromkeys(list(spec.content_layers) + list(spec.style_layers)))
        self.geometry = geometry.of_layers(self.layers, spec.backbone)
        names = vgg.layer_names(spec.backbone)
        self.strides = {name: 2 ** sum(n.endswith("pool") for n in names[: names.index(name)]) for name in self.layers}
        self._functions = {
            "features": tf.function(self._owned_features, autograph=False),
            "sums": tf.function(self._tile_sums, autograph=False),
            "gradient": tf.function(self._tile_grad, autograph=False),
            "head": tf.function(self._head_and_cotangents, autograph=False),
        }
        self._concrete = {}

    # -- geometry -------------------------------------------------------------------------
    def grid(self, hw) -> List[Tile]:
        return self.geometry.grid(hw, self.tile)

    def _windows(self, tile: Tile, hw) -> Dict[str, Tuple[int, int, int, int]]:
        """Per layer, the tile's owned positions in the whole layer's coordinates."""
        return {
            name: owned_window(tile, vgg.layer_hw(hw, name, self.spec.backbone), self.strides[name])
            for name in self.layers
        }

    def _local(self, tile: Tile, windows) -> Dict[str, tf.Tensor]:
        """`windows` in the grown tile's own layer coordinates."""
        gy0, _, gx0, _ = tile.grown
        local = {}
        for name, (r0, r1, c0, c1) in windows.items():
            s = self.strides[name]
            local[name] = tf.constant([r0 - gy0 // s, r1 - gy0 // s, c0 - gx0 // s, c1 - gx0 // s], tf.int32)
        return local

    # -- compiled passes ------------------------------------------------------------------
    @property
    def trace_counts(self) -> Dict[str, int]:
        """How often each compiled pass was traced: once each (per image size for the head)."""
        return {name: fn.experimental_get_tracing_count() for name, fn in self._functions.items()}

    def _call(self, name, *args):
        """A compiled pass, traced once for every tile: the tiles' pixel dimensions are left open
        (they differ at the image's edges)."""
        if name not in self._concrete:
            specs = tf.nest.map_structure(_open, args)
            self._concrete[name] = self._functions[name].get_concrete_function(*specs)
        return self._concrete[name](*args)

    def _owned_features(self, image, windows):
        features = self.model(image, training=False)
        return {name: features[name][:, w[0] : w[1], w[2] : w[3], :] for name, w in windows.items()}

    def _tile_sums(self, image, part: Part):
        owned = self._owned_features(image, part.windows)
        styles = tuple(style._replace(masks=masks) for style, masks in zip(self._targets.styles, part.masks))
        return losses.objective_sums(owned, losses.Targets(part.content, styles), self.spec, self._counts)

    def _tile_grad(self, image, part: Part, cotangents):
        with tf.GradientTape() as tape:
            tape.watch(image)
            sums = self._tile_sums(image, part)
            surrogate = tf.add_n(
                [
                    tf.reduce_sum(tf.cast(c, s.dtype) * s)
                    for c, s in zip(tf.nest.flatten(cotangents), tf.nest.flatten(sums))
                ]
            )
        return tape.gradient(surrogate, image)

    def _head_and_cotangents(self, sums, image):
        """The loss per image from the whole image's sums, and the gradients of the rescaled
        loss (as `optimize.loss_and_grad` rescales it) with respect to the sums and, through the
        total variation, the image; with the per-image scale to multiply the gradient back by."""
        with tf.GradientTape() as tape:
            tape.watch([tf.nest.flatten(sums), image])
            tv = losses.total_variation(image, self.spec.tv_loss)
            loss, terms = losses.objective_from_sums(sums, self._targets, self.spec, tv, per_image=True)
            scale = tf.stop_gradient(tf.maximum(tf.abs(loss), 1e-30) / optimize.LOSS_SCALE)
            scaled = tf.reduce_sum(loss / scale)
        cotangents, tv_grad = tape.gradient(scaled, [sums, image], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, terms, cotangents, tv_grad, scale

    # -- targets --------------------------------------------------------------------------
    def _reduce(self, image: np.ndarray, fn):
        """`fn(tile, owned features)` summed over `image`'s tiles (`None` results are skipped)."""
        total = None
        grid = self.grid(image.shape[1:3])
        for tile in grid:
            gy0, gy1, gx0, gx1 = tile.grown
            windows = self._local(tile, self._windows(tile, image.shape[1:3]))
            owned = self._call("features", tf.constant(image[:, gy0:gy1, gx0:gx1]), windows)
            value = fn(tile, owned)
            if value is not None:
                total = value if total is None else tf.nest.map_structure(tf.add, total, value)
        return total

    def targets(self, contents: np.ndarray, styles: Sequence[np.ndarray], blend=None, masks=None) -> losses.Targets:
        """`losses.compute_targets` tile by tile: `contents` `[B, H, W, 3]`, `styles` `[h, w, 3]`
        each, `masks` `[H, W]` each (one per style) or None. Fixes the size of the images this
        objective takes, and precomputes each tile's part of the targets."""
        spec = self.spec
        hw = contents.shape[1:3]
        self.hw = hw
        content = {}
        if spec.content_layers:
            full = {
                name: np.zeros(
                    (contents.shape[0], *vgg.layer_hw(hw, name, spec.backbone), vgg.channels(name)), np.float32
                )
                for name in spec.content_layers
            }

            def gather(tile, owned):
                for name in spec.content_layers:
                    r0, r1, c0, c1 = self._windows(tile, hw)[name]
                    full[name][:, r0:r1, c0:c1] = tf.cast(owned[name], tf.float32).numpy()

            self._reduce(contents, gather)
            content = {name: tf.constant(value) for name, value in full.items()}
        blend = [1.0] * len(styles) if blend is None else [float(b) for b in blend]
        statistic = losses.style_statistic(spec)
        style_targets = []
        for k, style in enumerate(styles):
            stats = self._style_stats(statistic, style[None], k) if spec.style_layers else {}
            region = None if masks is None else self._layer_masks(masks[k], hw)
            style_targets.append(losses.StyleTarget(stats, blend[k] / sum(blend), region))
        self._targets = losses.Targets(content, tuple(style_targets))
        self._counts = losses.Counts(
            {name: float(np.prod(vgg.layer_hw(hw, name, spec.backbone))) for name in self.layers},
            tuple(
                None if t.masks is None else {n: tf.reduce_sum(m) for n, m in t.masks.items()} for t in style_targets
            ),
        )
        self._parts = [(tile, self._part(tile)) for tile in self.grid(hw)]
        return self._targets

    def _style_stats(self, statistic, style: np.ndarray, k: int):
        """One style image's statistic per style layer, from its tiles' sums."""
        spec, hw = self.spec, style.shape[1:3]
        counts = {name: float(np.prod(vgg.layer_hw(hw, name, spec.backbone))) for name in spec.style_layers}
        params = {name: {} for name in spec.style_layers}
        seeds = {name: (self.seed, 1000 * k + i) for i, name in enumerate(spec.style_layers)}
        if type(statistic).param_sums is not losses.Statistic.param_sums:  # random features: drawn first
            param_sums = self._reduce(
                style,
                lambda tile, owned: {
                    n: statistic.param_sums(losses.positions(owned[n], total=counts[n])) for n in spec.style_layers
                },
            )
            params = {name: statistic.params(param_sums[name], seeds[name]) for name in spec.style_layers}
        sums = self._reduce(
            style,
            lambda tile, owned: {
                n: statistic.sums(losses.positions(owned[n], total=counts[n]), params[n]) for n in spec.style_layers
            },
        )
        return {name: statistic.target_from(sums[name], params[name]) for name in spec.style_layers}

    def _layer_masks(self, mask: np.ndarray, hw) -> Dict[str, tf.Tensor]:
        """As `losses.layer_masks`, at each style layer's whole size."""
        mask = tf.convert_to_tensor(mask, tf.float32)[None, :, :, None]
        return {
            name: tf.image.resize(mask, vgg.layer_hw(hw, name, self.spec.backbone), method="area")[..., 0]
            for name in self.spec.style_layers
        }

    def _part(self, tile: Tile) -> Part:
        windows = self._windows(tile, self.hw)
        cut = lambda x, n: x[:, windows[n][0] : windows[n][1], windows[n][2] : windows[n][3]]  # noqa: E731
        return Part(
            self._local(tile, windows),
            {name: cut(target, name) for name, target in self._targets.content.items()},
            tuple(
                None if style.masks is None else {n: cut(m, n) for n, m in style.masks.items()}
                for style in self._targets.styles
            ),
        )

    # -- the step -------------------------------------------------------------------------
    def _crops(self, image: np.ndarray):
        for tile, part in self._parts:
            gy0, gy1, gx0, gx1 = tile.grown
            yield tile, part, tf.constant(image[:, gy0:gy1, gx0:gx1])

    def sums(self, image: np.ndarray, report=_silent):
        """Pass 1: the whole image's `losses.objective_sums`, added up over the tiles."""
        total = None
        for k, (tile, part, crop) in enumerate(self._crops(image)):
            sums = self._call("sums", crop, part)
            total = sums if total is None else tf.nest.map_structure(tf.add, total, sums)
            report("pass 1", k + 1, len(self._parts))
        return total

    def loss(self, image):
        """`(loss [B], terms)` of `image`, as `losses.objective(..., per_image=True)`."""
        image = np.asarray(image, np.float32)
        tv = losses.total_variation(tf.constant(image), self.spec.tv_loss)
        return losses.objective_from_sums(self.sums(image), self._targets, self.spec, tv, per_image=True)

    def loss_and_grad(self, image, report=_silent):
        """`(loss [B], terms, gradient)` as `optimize.loss_and_grad` gives them for the untiled
        objective: the two passes of the module docstring, each tile reported to `report(stage,
        done, total)`."""
        image = np.asarray(image, np.float32)
        loss, terms, cotangents, tv_grad, scale = self._functions["head"](self.sums(image, report), tf.constant(image))
        grad = np.array(tv_grad, np.float32)
        for k, (tile, part, crop) in enumerate(self._crops(image)):
            gy0, gy1, gx0, gx1 = tile.grown
            grad[:, gy0:gy1, gx0:gx1] += self._call("gradient", crop, part, cotangents).numpy()
            report("pass 2", k + 1, len(self._parts))
        grad *= scale.numpy().reshape(-1, 1, 1, 1)
        return loss, terms, tf.constant(grad)

    def step(self, update: optimize.CompiledStep, report=_silent):
        """The run's step `(image, state) -> (image, state, loss, terms, finite)` for
        `nst_tf.driver`: this objective's loss and gradient (each tile reported to `report`), then
        `update` (a `CompiledStep` of `optimize.make_update`)."""

        def step(image, state):
            loss, terms, grad = self.loss_and_grad(image, report)
            return update(image, state, grad, loss, terms)

        return step
