"""The universal painter: any painting in one forward pass, with decoders trained on photos only.

The frozen VGG19 encodes the content to `relu_k_1` (Keras' `block{k}_conv1`); `wct` whitens the
features with the content's own covariance and colours them with the painting's; a decoder trained
only to turn `relu_k_1` features of photos back into the photo paints the result. Coarse to fine
(Li et al., NeurIPS 2017): the deepest level first, and each finer level re-encodes the previous
level's picture. No painting is needed in training, so no painting is ever unseen.

`build_decoder(k, width)`: VGG19's layers from `block{k}_conv1` back to the input, mirrored: each
3x3 convolution (reflect-padded, ReLU) maps its output channels back to its input channels (times
`width`, except the 3 RGB channels), each pooling becomes a nearest-neighbour x2 upsampling.
`UniversalNetwork`: the decoders of a set of levels, saved as one `.keras` file (no VGG weights).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from nst_tf import callbacks as callbacks_lib
from nst_tf import features, geometry, painting, vgg
from nst_tf.errors import NstError
from nst_tf.networks import models, tiled, wct
from nst_tf.networks.options import MAX_LEVEL
from nst_tf import image_io
from nst_tf import weights as weights_lib
from nst_tf import color, plan, planner

LEVELS = (1, 2, 3, 4, 5)
# Levels the cascade leaves out by default. Level 1's decoder is one linear 3x3 convolution (the
# mirror of block1_conv1): it inverts the relu1_1 features of photos but, fed the coloured
# features of a painting (or a painted picture's own), it adds a high-frequency texture that the
# deeper VGG layers answer strongly (boston x the_scream, decoders at 1000 steps: block3..5 Gram
# errors 1.6 to 12x those of the same cascade without level 1).
# Level 2's transform already matches the colours (block1 Gram error 0.06 without level 1).
# (The bundled file holds levels 2 and 3 only: with decoders trained for 3000 steps on a CPU, adding
# level 4 or 5 raised both the style and the content error on the tuning paintings; docs/networks.md.)
CASCADE_SKIPS = (1,)
# The root mean square of each level's features on photos (VGG19's 0-255 scale, measured on the
# bundled photos at 256 px): a decoder divides its input by it, so its initial output is near the
# pictures' [0, 1] scale instead of hundreds (which cost the first few hundred steps).
FEATURE_SCALE = {1: 30.0, 2: 150.0, 3: 200.0, 4: 700.0, 5: 125.0}


def level_layer(level: int) -> str:
    """The VGG19 layer a level's features are taken at: `relu_k_1`, Keras' `block{k}_conv1`."""
    return f"block{level}_conv1"


def level_stride(level: int) -> int:
    """Input pixels per feature position at `level` (the content is padded to a multiple of it)."""
    return 2 ** (level - 1)


def level_width(level: int, width: float) -> float:
    """The width multiplier of level `level`'s decoder in a network of `width`: level 5's is half
    as wide (its 512-channel convolutions would hold 3.8 M of a width-0.5 network's 5.3 M weights)."""
    return width / 2 if level == 5 else width


def build_decoder(level: int, width: float = 0.5) -> keras.Model:
    """`[B, h, w, C_k]` features -> `[B, h * s, w * s, 3]` RGB (about [0, 1], not clipped), `s` the
    level's stride."""
    if not 1 <= level <= MAX_LEVEL:
        raise NstError(f"decoder levels are 1 to {MAX_LEVEL}, got {level}")
    names = vgg.layer_names("vgg19")
    encoder = names[: names.index(level_layer(level)) + 1]
    convs = [n for n in encoder if not n.endswith("pool")]
    # each conv's input channels: the previous conv's output, 3 for the first
    inputs = {n: (3 if i == 0 else vgg.channels(convs[i - 1])) for i, n in enumerate(convs)}
    features = keras.Input((None, None, vgg.channels(level_layer(level))), name="features")
    x = keras.layers.Rescaling(1.0 / FEATURE_SCALE[level], name="rescale")(features)
    for name in reversed(encoder):
        if name.endswith("pool"):
            x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up_{name}")(x)
            continue
        last = name == "block1_conv1"
        filters = 3 if last else max(8, int(round(inputs[name] * width)))
        x = models.ReflectPad(1, name=f"{name}_pad")(x)
        x = keras.layers.Conv2D(filters, 3, activation=None if last else "relu", name=f"de_{name}")(x)
    return keras.Model(features, x, name=f"decoder{level}")


@keras.saving.register_keras_serializable("nst_tf")
class UniversalNetwork(keras.Model):
    """The trainable part of the universal painter: one decoder per level. `call(features)` takes
    `{level: [B, h, w, C_k]}` and returns `{level: [B, H, W, 3]}` (every level decodes its own)."""

    def __init__(self, levels: Sequence[int] = LEVELS, width: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.levels = tuple(sorted(int(k) for k in levels))
        if not self.levels or len(set(self.levels)) != len(self.levels):
            raise NstError(f"decoder levels must be distinct, got {levels}")
        self.width = float(width)
        for k in self.levels:  # tracked by attribute name (saved, checkpointed, exported)
            setattr(self, f"decoder{k}", build_decoder(k, level_width(k, self.width)))
        self.built = True

    @property
    def decoders(self) -> dict:
        """`{level: decoder}`."""
        return {k: getattr(self, f"decoder{k}") for k in self.levels}

    def call(self, features):
        return {k: self.decoders[k](features[k]) for k in self.levels if k in features}

    def get_config(self):
        return {**super().get_config(), "levels": list(self.levels), "width": self.width}


class Encoder:
    """The frozen VGG19 to each level: `levels(images)` -> `{k: relu_k_1 features}` in one pass,
    `level(k, images)` -> level k's features alone (the network truncated there); float32 out.
    arrays: VGG19 weights as `nst_tf.weights.load` returns them (read once, shared)."""

    def __init__(self, arrays, levels: Sequence[int], precision: str = "float32"):
        self.levels_ = tuple(levels)
        build = lambda names: features.build_feature_model(  # noqa: E731
            names, "vgg19", layer_weights=arrays, precision=precision
        )
        self.all = build([level_layer(k) for k in self.levels_])
        self.each = {k: build([level_layer(k)]) for k in self.levels_}

    def levels(self, images) -> dict:
        out = self.all(images)
        return {k: tf.cast(out[level_layer(k)], tf.float32) for k in self.levels_}

    def level(self, k: int, images):
        return tf.cast(self.each[k](images)[level_layer(k)], tf.float32)


def reconstruction_loss(encoder: Encoder, images, targets, outputs, feature_weight: float):
    """The decoders' training loss on a batch of photos: per level, the pixel mean squared error
    plus `feature_weight` times the relative squared error of the output's own `relu_k_1` features
    against the photo's (`targets`: `encoder.levels(images)`), Li et al.'s pixel + perceptual
    reconstruction. Returns the total and each level's terms."""
    total, terms = 0.0, {}
    for k, out in outputs.items():
        pixel = tf.reduce_mean(tf.square(out - images))
        again = encoder.level(k, out)
        feature = tf.reduce_sum(tf.square(again - targets[k])) / (tf.reduce_sum(tf.square(targets[k])) + 1e-6)
        terms[f"pixel{k}"], terms[f"feature{k}"] = pixel, feature
        total = total + pixel + feature_weight * feature
    return total, terms


def pad_to(image, multiple: int):
    """`[B, H, W, 3]` reflect-padded at the bottom and right to multiples of `multiple`."""
    shape = tf.shape(image)
    extra_h, extra_w = (-shape[1]) % multiple, (-shape[2]) % multiple
    return tf.pad(image, [[0, 0], [0, extra_h], [0, extra_w], [0, 0]], mode="REFLECT")


def reconstruct(network: UniversalNetwork, encoder: Encoder, image) -> dict:
    """Each level's decoder's reconstruction of `image` `[H, W, 3]` in [0, 1]: `{k: uint8 [H, W, 3]}`."""
    h, w = image.shape[:2]
    out = {}
    for k in network.levels:
        x = pad_to(tf.constant(image[None], tf.float32), level_stride(k))
        y = network.decoders[k](encoder.level(k, x))[0, :h, :w]
        out[k] = np.round(np.clip(y.numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


def reconstruction_report(network: UniversalNetwork, encoder: Encoder, path, size: int) -> dict:
    """Each level's reconstruction error of the photo at `path` (longest side `size`): mean absolute
    difference in 8-bit levels and PSNR in dB."""

    image = image_io.load_image(path, size)
    truth = np.round(image * 255.0)
    report = {}
    for k, rec in reconstruct(network, encoder, image).items():
        diff = rec.astype(np.float64) - truth
        mse = float(np.mean(diff**2))
        report[f"level{k}"] = {
            "mean_abs_levels": round(float(np.mean(np.abs(diff))), 3),
            "psnr_db": round(10 * np.log10(255.0**2 / max(mse, 1e-12)), 2),
        }
    return report


BUNDLED_NAME = "universal"


def load_universal(src) -> UniversalNetwork:
    """A `UniversalNetwork` from a `.keras` file (`nst-tf-train --mode=decoder` writes them;
    "universal": the bundled one), or the model itself."""
    return models.load_model(src, (UniversalNetwork,), "a universal painter's decoders (nst-tf-train --mode=decoder)")


class Transform:
    """What the cascade does to one level's features: whiten them with the content's statistics
    and colour them with a style's, per region. Statistics are sums over positions, so the tiled
    cascade adds its tiles' `moments` and applies the whole picture's.

    styles: `{level: wct.Style}` per region (one region without masks: the blended style).
    masks: None, or one `[H, W]` float32 array in [0, 1] per region (the padded picture's pixels:
        each level averages them down to its positions); where they add to less than 1 the
        content's features are kept, where to more they are normalised.
    `window` locates features in the level's whole map: `(row0, col0, (rows, cols))`.
    """

    def __init__(self, styles, strength, method: str, masks=None):
        self.styles, self.strength, self.method, self.masks = list(styles), strength, method, masks
        self._level_masks = {}

    def _weights(self, k: int, f, window):
        if self.masks is None:
            return [None]
        r0, c0, hw = window
        if (k, hw) not in self._level_masks:
            self._level_masks[(k, hw)] = [_mask_at(m, hw) for m in self.masks]
        rows, cols = tf.shape(f)[0], tf.shape(f)[1]
        return [m[r0 : r0 + rows, c0 : c0 + cols] for m in self._level_masks[(k, hw)]]

    def moments(self, k: int, f, window) -> list:
        return [wct.moments(f, m) for m in self._weights(k, f, window)]

    def apply(self, k: int, f, moments: list, window):
        weights = self._weights(k, f, window)
        parts = [
            wct.whiten_colour(f, m, style[k], self.strength, self.method) for m, style in zip(moments, self.styles)
        ]
        if self.masks is None:
            return parts[0]
        cover = tf.add_n(weights)
        scale = 1.0 / tf.maximum(cover, 1.0)
        out = f * (1.0 - tf.minimum(cover, 1.0))[..., None]
        for part, m in zip(parts, weights):
            out = out + part * (m * scale)[..., None]
        return out


class UniversalPainter(painting.Painter):
    """The universal painter ready to paint: the frozen VGG19 to each level, the decoders, and the
    whitening and colouring transform.

    network: a `UniversalNetwork`, its `.keras` file, or "universal" (the bundled decoders).
    weights: the VGG19 weights spec (`nst_tf.weights.load`); precision: the encoder's.
    method: the matrix square roots, "eigh" or "newton_schulz" (see `wct`).
    levels: the levels the cascade paints at, deepest first (default: the network's, without
        `CASCADE_SKIPS`).
    A `nst_tf.painting.Painter`: honours every painting option but a fixed style.
    """

    name = "universal"
    supports = frozenset({"strength", "style_blend", "style_mask", "preserve_colors", "style_size", "tile"})

    def __init__(
        self,
        network=BUNDLED_NAME,
        weights: str = "auto",
        precision: str = "float32",
        method: str = "eigh",
        encoder=None,
        levels=None,
    ):

        if method not in wct.SQRT_METHODS:
            raise NstError(f"unknown method {method!r}; choose one of: {', '.join(wct.SQRT_METHODS)}")
        self.network = load_universal(network)
        self.method = method
        if levels is None:
            levels = [k for k in self.network.levels if k not in CASCADE_SKIPS] or self.network.levels
        self.levels = tuple(sorted(set(int(k) for k in levels), reverse=True))
        missing = sorted(set(self.levels) - set(self.network.levels))
        if missing or not self.levels:
            raise NstError(f"levels {list(levels)}: this network has decoders for {list(self.network.levels)} only")
        if encoder is None:  # "auto": as a door's plan resolves it for a network
            encoder = Encoder(
                weights_lib.load(weights, "vgg19"), self.levels, plan.network_precision(precision, weights)
            )
        self.encoder = encoder
        self.min_side = max(vgg.MIN_SIDE, level_stride(self.levels[0]))

    def style(self, image) -> dict:
        """A style's representation: `{level: wct.Style}` from one encoder pass of `image` (float32
        `[H, W, 3]` in [0, 1])."""
        _check_side(image, self.min_side, "style image")
        return self.style_graph(tf.constant(image[None], tf.float32))

    def style_graph(self, image) -> dict:
        """`style` on a `[1, H, W, 3]` tensor (graph-safe): the image is reflect-padded to the
        deepest level's stride and each level's statistics are taken over the positions of the
        unpadded image only."""
        h, w = tf.shape(image)[1], tf.shape(image)[2]
        padded = pad_to(image, level_stride(self.levels[0]))
        out = {}
        for k, f in self.encoder.levels(padded).items():
            if k not in self.levels:
                continue
            s = level_stride(k)
            f = f[0, : (h + s - 1) // s, : (w + s - 1) // s]
            out[k] = wct.style_of(wct.moments(f), self.method)
        return out

    def style_tiled(self, image: np.ndarray, tile: int) -> dict:
        """`style`, tile by tile: each level's statistics are the sums of the positions its tiles
        own (grown by the encoder's reach, as `cascade_tiled`'s statistics pass), over the
        unpadded image's positions: the same representation, in the memory of one tile."""
        _check_side(image, self.min_side, "style image")
        h, w = image.shape[:2]
        padded = pad_to(tf.constant(image[None], tf.float32), level_stride(self.levels[0]))[0].numpy()
        out = {}
        for k in self.levels:
            s = level_stride(k)
            level_hw = (padded.shape[0] // s, padded.shape[1] // s)
            valid = (-(-h // s), -(-w // s))
            total = None
            for t in geometry.of_layers([level_layer(k)]).grid(padded.shape[:2], tile):
                f, (r0, c0, _) = self._owned_features(k, padded, t, level_hw)
                f = f[: max(0, valid[0] - r0), : max(0, valid[1] - c0)]
                part = wct.moments(f)
                total = part if total is None else total.add(part)
            out[k] = wct.style_of(total, self.method)
        return out

    def cascade(self, content, transform: Transform):
        """The coarse-to-fine pass on `content` `[1, H, W, 3]` (a tensor; graph-safe): at each
        level, deepest first, pad the current picture to the level's stride, encode it, transform
        the features with their own statistics, decode, crop back to H x W and clip to [0, 1]."""
        h, w = tf.shape(content)[1], tf.shape(content)[2]
        current = content
        for k in self.levels:
            f = self.encoder.level(k, pad_to(current, level_stride(k)))[0]
            window = (0, 0, tuple(f.shape[:2])) if f.shape[:2].is_fully_defined() else (0, 0, tf.shape(f)[:2])
            out = transform.apply(k, f, transform.moments(k, f, window), window)
            current = tf.clip_by_value(self.network.decoders[k](out[None])[:, :h, :w], 0.0, 1.0)
        return current

    def cascade_tiled(self, content: np.ndarray, transform: Transform, tile: int, report=None) -> np.ndarray:
        """`cascade`, tile by tile and exactly, on `content` `[H, W, 3]`. Each level makes two
        passes over one grid (`nst_tf.geometry`, tiles on the level's stride): the statistics,
        each tile grown by the encoder's reach adding the moments of the positions it owns; then
        the painting, each tile grown by the encoder's and the decoder's reach (`geometry_of`),
        encoded, transformed with the whole picture's moments, decoded, its owned pixels kept.
        `report(stage, done, total)` after each tile (stage "pass k/n")."""
        h, w = content.shape[:2]
        current, levels = content, list(self.levels)
        for i, k in enumerate(levels):
            s = level_stride(k)
            padded = pad_to(tf.constant(current[None], tf.float32), s)[0].numpy()
            hw = padded.shape[:2]
            level_hw = (hw[0] // s, hw[1] // s)
            grid = geometry.of_layers([level_layer(k)]).grid(hw, tile)
            total = None
            for n, t in enumerate(grid):
                f, window = self._owned_features(k, padded, t, level_hw)
                part = transform.moments(k, f, window)
                total = part if total is None else [a.add(b) for a, b in zip(total, part)]
                if report:
                    report(f"pass {2 * i + 1}/{2 * len(levels)}", n + 1, len(grid))
            grid = self.geometry_of(k).grid(hw, tile)
            out = np.zeros(hw + (3,), np.float32)
            for n, t in enumerate(grid):
                gy0, gy1, gx0, gx1 = t.grown
                f = self.encoder.level(k, tf.constant(padded[None, gy0:gy1, gx0:gx1]))[0]
                window = (gy0 // s, gx0 // s, level_hw)
                picture = self.network.decoders[k](transform.apply(k, f, total, window)[None])[0].numpy()
                y0, y1, x0, x1 = t.owned
                out[y0:y1, x0:x1] = picture[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
                if report:
                    report(f"pass {2 * i + 2}/{2 * len(levels)}", n + 1, len(grid))
            current = np.clip(out[:h, :w], 0.0, 1.0)
        return current

    def geometry_of(self, k: int) -> geometry.Geometry:
        """The tiles of level `k`'s painting pass: the encoder's reach, then its decoder's."""
        return geometry.of_layers([level_layer(k)]).then(tiled.reach(self.network.decoders[k], level_stride(k)))

    def _owned_features(self, k: int, padded: np.ndarray, t, level_hw):
        """Level `k`'s features at the positions tile `t` owns (`geometry.owned_window`, from its
        grown window), and their window in the level's whole map."""
        s = level_stride(k)
        gy0, gy1, gx0, gx1 = t.grown
        f = self.encoder.level(k, tf.constant(padded[None, gy0:gy1, gx0:gx1]))[0]
        r0, r1, c0, c1 = geometry.owned_window(t, level_hw, s)
        return f[r0 - gy0 // s : r1 - gy0 // s, c0 - gx0 // s : c1 - gx0 // s], (r0, c0, level_hw)

    def paint_array(
        self, image, styles, blend=None, strength: float = 1.0, masks=None, tile: int = 0, report=None
    ) -> np.ndarray:
        """`image` float32 `[H, W, 3]` in [0, 1] painted coarse to fine: float32 `[H, W, 3]`.

        styles: style representations (`style`); blend: their weights (None: equal), or with
        `masks` (one `[H, W]` per style in [0, 1]) each style paints where its mask is bright (the
        transform computed per region; where the masks add to less than 1, the content shows).
        tile: 0 (untiled) or a tile side in pixels (`cascade_tiled`: the same picture)."""
        strength = painting.checked_strength(strength)
        _check_side(image, self.min_side, "content")
        if masks is None:
            transform = Transform([wct.blend_levels(styles, blend)], strength, self.method)
        else:
            stride = level_stride(self.levels[0])
            padded = [pad_to(tf.constant(m[None, ..., None], tf.float32), stride)[0, ..., 0] for m in masks]
            transform = Transform(styles, strength, self.method, padded)
        if tile:
            return self.cascade_tiled(image, transform, tile, report)
        return np.asarray(self.cascade(tf.constant(image[None], tf.float32), transform)[0].numpy(), np.float32)

    def paint_photo(self, image, prepared, options, mask_arrays, callbacks) -> np.ndarray:
        """`image` painted in the manner of the prepared paintings in one pass of the cascade:
        float32 `[H, W, 3]`. Options (`nst_tf.painting.Options`): style_size: the paintings'
        longest side (None: the output's); style_mask: one image per painting, each painting where
        its mask is bright; preserve_colors: "luminance" (the result's luminance with the content's
        colours) or "histogram" (each painting's colours moved to the content's first); tile:
        "auto", "off" or a side in pixels (the same picture, tile by tile); callbacks: told of
        each tile (`callbacks.one_pass`). Each painting's representation at a size is computed
        once and kept in `prepared`."""
        painting.checked_strength(options.strength)
        _check_side(image, self.min_side, "content")
        side = options.style_size or max(image.shape[:2])
        tile = planner.choose_network_tile(image.shape[:2], options.tile, estimate=planner.universal_bytes)

        def represent(arrays):
            return [self.style_tiled(s, tile) if tile else self.style(s) for s in arrays]

        def arrays():
            return [image_io.load_image(s, side) for s in prepared.images]

        if options.preserve_colors == "histogram":  # depends on the content: nothing to keep
            reps = represent([color.match_color(s, image) for s in arrays()])
        else:
            reps = prepared.cached(("reps", side, tile), lambda: represent(arrays()))
        with callbacks_lib.one_pass(image, callbacks) as report:
            return self.paint_array(image, reps, options.style_blend, options.strength, mask_arrays, tile, report)


def _check_side(image, side: int, what: str) -> None:
    if min(image.shape[:2]) < side:
        raise NstError(
            f"the {what} is {image.shape[1]}x{image.shape[0]}: the universal painter needs {side} px or more on each side"
        )


def _mask_at(mask, hw):
    """A `[H, W]` mask averaged down to `hw` (area resize), float32 in [0, 1]."""
    m = tf.convert_to_tensor(mask, tf.float32)[None, ..., None]
    return tf.clip_by_value(tf.image.resize(m, hw, method="area")[0, ..., 0], 0.0, 1.0)


def graph_paint(painter: UniversalPainter, content, style, strength, reps=None):
    """One style's painting as a graph: `content` `[1, H, W, 3]`, `style` `[1, h, w, 3]` (or its
    representation `reps`), `strength` a scalar -> `[1, H, W, 3]` in [0, 1]. The SavedModel and
    TF Lite exports trace this."""
    reps = painter.style_graph(style) if reps is None else reps
    return painter.cascade(content, Transform([reps], strength, painter.method))


def packed_size(levels) -> int:
    """The length of a packed representation: each level's mean `[C]` and root `[C, C]`."""
    return sum(c + c * c for c in (vgg.channels(level_layer(k)) for k in levels))


def pack(reps: dict):
    """`{level: wct.Style}` -> `[1, packed_size]`, levels in increasing order."""
    parts = []
    for k in sorted(reps):
        parts += [reps[k].mean, tf.reshape(reps[k].root, [-1])]
    return tf.concat(parts, axis=0)[None]


def unpack(vector, levels) -> dict:
    """`pack`'s inverse."""
    out, start = {}, 0
    for k in sorted(levels):
        c = vgg.channels(level_layer(k))
        mean = vector[0, start : start + c]
        root = tf.reshape(vector[0, start + c : start + c + c * c], [c, c])
        out[k], start = wct.Style(mean, root), start + c + c * c
    return out


def subset(network: UniversalNetwork, levels: Sequence[int]) -> UniversalNetwork:
    """A network holding only `levels`' decoders of `network` (their weights copied)."""
    missing = sorted(set(levels) - set(network.levels))
    if missing:
        raise NstError(f"levels {missing}: this network has decoders for {list(network.levels)} only")
    out = UniversalNetwork(levels, network.width)
    for k in out.levels:
        out.decoders[k].set_weights(network.decoders[k].get_weights())
    return out


save_float16 = models.save_float16  # the bundled decoders ship this way
