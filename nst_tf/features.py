"""The feature network: a frozen `tf.keras.Model` from RGB in [0, 1] to VGG activations by name.

VGG's own preprocessing (RGB -> BGR, x255, ImageNet channel means subtracted, as the Keras and
original Caffe weights expect) is folded into the model, so callers never see it. The model is
truncated at the deepest requested layer: nothing past it is computed.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from nst_tf.config import layer_names  # noqa: F401  (re-exported: the valid layer names)
from nst_tf.errors import NstError

# ImageNet means in BGR order, 0..255 scale (keras.applications.vgg19.preprocess_input, mode "caffe").
VGG_MEAN_BGR = (103.939, 116.779, 123.68)


PRECISIONS = ("float32", "bfloat16", "float16")


def build_backbone(backbone: str = "vgg19", precision: str = "float32") -> keras.Model:
    """The `keras.applications` network without top and without weights (random init).

    precision: the convolutions' compute dtype. "bfloat16" and "float16" build the layers under
    Keras' mixed policy: float32 weights, reduced-precision activations.
    """
    if precision not in PRECISIONS:
        raise NstError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    application = {"vgg19": keras.applications.VGG19, "vgg16": keras.applications.VGG16}[backbone]
    if precision == "float32":  # the global policy (float32 unless a caller chose, e.g. float64)
        return application(include_top=False, weights=None, input_shape=(None, None, 3))
    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy(f"mixed_{precision}")
    try:
        return application(include_top=False, weights=None, input_shape=(None, None, 3))
    finally:
        keras.config.set_dtype_policy(saved)


@keras.saving.register_keras_serializable(package="nst_tf")
class VggPreprocess(keras.layers.Layer):
    """RGB in [0, 1] -> the Caffe-style input VGG weights were trained on."""

    def call(self, rgb):
        bgr = tf.reverse(rgb, axis=[-1]) * 255.0
        return bgr - tf.constant(VGG_MEAN_BGR, dtype=bgr.dtype)


def build_feature_model(
    layers: Sequence[str],
    backbone: str = "vgg19",
    weights: Optional[str] = "auto",
    layer_weights=None,
    precision: str = "float32",
    pooling: str = "max",
) -> keras.Model:
    """A frozen model mapping `[B, H, W, 3]` RGB in [0, 1] to `{layer name: [B, h, w, c] activation}`.

    layers: the activations to return (any names from `layer_names(backbone)`).
    weights: a spec for `nst_tf.weights.load` ("auto", "imagenet", "embedded", "random", a path),
        ignored when `layer_weights` (already-loaded `{name: (kernel, bias)}`) is given; None
        leaves Keras' initial weights in place quietly (for callers that supply weight values
        at call time, as the SavedModel export does with `stateless_call`).
    precision: compute dtype of the convolutions ("float32", "bfloat16", "float16"); the input
        and the preprocessing stay float32, the activations come out in this dtype (the losses
        widen them to float32).
    pooling: "max" (VGG's own) or "avg": each max pooling replaced by an average pooling of the
        same window, as Gatys et al. do (the weights are unchanged).
    """
    from nst_tf import weights as weights_lib

    if pooling not in ("max", "avg"):
        raise NstError(f"unknown pooling {pooling!r}; choose max or avg")
    valid = layer_names(backbone)
    layers = list(dict.fromkeys(layers))  # unique, order kept
    unknown = [name for name in layers if name not in valid]
    if unknown or not layers:
        raise NstError(f"unknown {backbone} layer(s) {', '.join(unknown) or '(none given)'}; valid layers: {', '.join(valid)}")
    if layer_weights is None and weights is not None:
        layer_weights = weights_lib.load(weights, backbone)

    vgg = build_backbone(backbone, precision)
    if layer_weights is not None:
        for layer in vgg.layers:
            if layer.get_weights():
                if layer.name not in layer_weights:
                    raise NstError(f"the weights have no entry for layer {layer.name}")
                try:
                    layer.set_weights(list(layer_weights[layer.name]))
                except ValueError as err:
                    raise NstError(f"the weights do not fit {backbone} layer {layer.name}: {err}") from None

    deepest = max(valid.index(name) for name in layers)
    inputs = keras.Input(shape=(None, None, 3), name="rgb")
    x = VggPreprocess(name="vgg_preprocess", dtype=None if precision == "float32" else "float32")(inputs)
    outputs = {}
    for layer in vgg.layers[1 : deepest + 2]:  # layers[0] is the InputLayer
        if pooling == "avg" and isinstance(layer, keras.layers.MaxPooling2D):
            layer = keras.layers.AveragePooling2D(layer.pool_size, layer.strides, layer.padding, name=layer.name,
                                                  dtype=layer.dtype_policy)
        x = layer(x)
        if layer.name in layers:
            outputs[layer.name] = x
    model = keras.Model(inputs, {name: outputs[name] for name in layers}, name=f"{backbone}_{precision}_{pooling}pool_features")
    model.trainable = False
    return model


def model_for(cfg):
    """The feature model a `Config` asks for: its content and style layers, backbone, weights,
    precision ("auto" resolved by `nst_tf.autotune`) and pooling."""
    from nst_tf import autotune

    cfg, _ = autotune.concrete(cfg)
    return build_feature_model(list(cfg.content_layers) + list(cfg.style_layers), cfg.backbone, cfg.weights,
                               precision=cfg.precision, pooling=cfg.pooling)
