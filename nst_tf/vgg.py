"""VGG knowledge in one place: the layer tables of VGG16 and VGG19 without their top, the backbone
as `keras.applications` builds it, and the input preprocessing their ImageNet weights expect.

A leaf: it imports no other nst_tf module but `errors`, and no TensorFlow or Keras until a model is
built or an image preprocessed (the planner and `--dry_run` read the tables without them).
"""

from __future__ import annotations

import functools
from typing import Tuple

from nst_tf.errors import NstError

# Convolutions per block of each backbone (keras.applications VGG16 / VGG19 without top).
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
BACKBONES = ("vgg19", "vgg16")
# ImageNet means in BGR order, 0..255 scale (keras.applications.vgg19.preprocess_input, mode "caffe").
MEAN_BGR = (103.939, 116.779, 123.68)
PRECISIONS = ("float32", "bfloat16", "float16")
# VGG halves the image four times before block5: smaller sides pool away to nothing.
MIN_SIDE = 16


@functools.lru_cache(maxsize=None)
def layer_names(backbone: str = "vgg19") -> Tuple[str, ...]:
    """All layer names of `backbone` without its top, in order: blockB_convK and blockB_pool."""
    if backbone not in BLOCKS:
        raise NstError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
    names = []
    for block, convs in enumerate(BLOCKS[backbone], start=1):
        names += [f"block{block}_conv{k}" for k in range(1, convs + 1)] + [f"block{block}_pool"]
    return tuple(names)


def channels(layer: str) -> int:
    """The channels of a layer's activation (64, 128, 256, 512, 512 in blocks 1 to 5)."""
    return 64 * 2 ** min(int(layer[5]) - 1, 3)


def build_backbone(backbone: str = "vgg19", precision: str = "float32"):
    """The `keras.applications` network without top and without weights (random init).

    precision: the convolutions' compute dtype. "bfloat16" and "float16" build the layers under
    Keras' mixed policy: float32 weights, reduced-precision activations.
    """
    import keras

    if precision not in PRECISIONS:
        raise NstError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    layer_names(backbone)  # an unknown backbone is an NstError
    application = {"vgg19": keras.applications.VGG19, "vgg16": keras.applications.VGG16}[backbone]
    if precision == "float32":  # the global policy (float32 unless a caller chose, e.g. float64)
        return application(include_top=False, weights=None, input_shape=(None, None, 3))
    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy(f"mixed_{precision}")
    try:
        return application(include_top=False, weights=None, input_shape=(None, None, 3))
    finally:
        keras.config.set_dtype_policy(saved)


def preprocess(rgb):
    """RGB in [0, 1] -> the Caffe-style input VGG's weights were trained on: BGR, x255, ImageNet
    channel means subtracted."""
    import tensorflow as tf

    bgr = tf.reverse(rgb, axis=[-1]) * 255.0
    return bgr - tf.constant(MEAN_BGR, dtype=bgr.dtype)


@functools.lru_cache(maxsize=None)
def preprocess_layer_class():
    """`preprocess` as a Keras layer class (defined on first use, so this module needs no Keras)."""
    import keras

    @keras.saving.register_keras_serializable(package="nst_tf")
    class VggPreprocess(keras.layers.Layer):
        """RGB in [0, 1] -> the Caffe-style input VGG weights were trained on."""

        def call(self, rgb):
            return preprocess(rgb)

    return VggPreprocess


def layer_hw(hw: Tuple[int, int], layer: str, backbone: str = "vgg19") -> Tuple[int, int]:
    """A layer's activation (height, width) for an input of (height, width) `hw`: each pooling
    before it halves the sides, rounding down."""
    names = layer_names(backbone)
    pools = sum(1 for name in names[: names.index(layer)] if name.endswith("pool"))
    return hw[0] // 2**pools, hw[1] // 2**pools


def footprint(layers, backbone: str = "vgg19") -> Tuple[int, int]:
    """`(align, reach)` of the deepest of `layers`: `align` is its stride (2 to the number of
    poolings before it: a crop that starts at a multiple of it pools exactly as the whole image
    does), `reach` the most input pixels beyond its own stride cell that one of its positions
    depends on, on either side (its receptive field's half width: 70 for VGG19's block5_conv1).

    Walks the layer table down from the deepest layer, growing one position's input interval:
    a 3x3 convolution adds one position on each side, a 2x2 pooling doubles the interval."""
    names = layer_names(backbone)
    deepest = max(names.index(name) for name in layers)
    lo, hi, stride = 0, 0, 1
    for name in reversed(names[: deepest + 1]):
        if name.endswith("pool"):
            lo, hi, stride = 2 * lo, 2 * hi + 1, 2 * stride
        else:
            lo, hi = lo - 1, hi + 1
    # One position at `stride` covers input [0, stride - 1] itself; beyond that it reaches:
    return stride, max(-lo, hi - (stride - 1))
