"""The feature network: a frozen `tf.keras.Model` from RGB in [0, 1] to VGG activations by name.

VGG's own preprocessing (RGB -> BGR, x255, ImageNet channel means subtracted, as the Keras and
original Caffe weights expect) is folded into the model, so callers never see it. The model is
truncated at the deepest requested layer: nothing past it is computed.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import keras
import tensorflow as tf

from nst_tf import vgg
from nst_tf import weights as weights_lib
from nst_tf.errors import NstError


def build_feature_model(
    layers: Sequence[str],
    backbone: str = "vgg19",
    weights: Optional[str] = "auto",
    layer_weights=None,
    precision: str = "float32",
    pooling: str = "max",
) -> keras.Model:
    """A frozen model mapping `[B, H, W, 3]` RGB in [0, 1] to `{layer name: [B, h, w, c] activation}`.

    layers: the activations to return (any names from `vgg.layer_names(backbone)`).
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
    if pooling not in ("max", "avg"):
        raise NstError(f"unknown pooling {pooling!r}; choose max or avg")
    valid = vgg.layer_names(backbone)
    layers = list(dict.fromkeys(layers))  # unique, order kept
    unknown = [name for name in layers if name not in valid]
    if unknown or not layers:
        raise NstError(
            f"unknown {backbone} layer(s) {', '.join(unknown) or '(none given)'}; valid layers: {', '.join(valid)}"
        )
    if layer_weights is None and weights is not None:
        layer_weights = weights_lib.load(weights, backbone)

    backbone_model = vgg.build_backbone(backbone, precision)
    if layer_weights is not None:
        for layer in backbone_model.layers:
            if layer.get_weights():
                if layer.name not in layer_weights:
                    raise NstError(f"the weights have no entry for layer {layer.name}")
                try:
                    layer.set_weights(list(layer_weights[layer.name]))
                except ValueError as err:
                    raise NstError(f"the weights do not fit {backbone} layer {layer.name}: {err}") from None

    deepest = max(valid.index(name) for name in layers)
    inputs = keras.Input(shape=(None, None, 3), name="rgb")
    x = vgg.preprocess_layer_class()(name="vgg_preprocess", dtype=None if precision == "float32" else "float32")(inputs)
    outputs = {}
    for layer in backbone_model.layers[1 : deepest + 2]:  # layers[0] is the InputLayer
        if pooling == "avg" and isinstance(layer, keras.layers.MaxPooling2D):
            layer = keras.layers.AveragePooling2D(
                layer.pool_size, layer.strides, layer.padding, name=layer.name, dtype=layer.dtype_policy
            )
        x = layer(x)
        if layer.name in layers:
            outputs[layer.name] = x
    model = keras.Model(
        inputs, {name: outputs[name] for name in layers}, name=f"{backbone}_{precision}_{pooling}pool_features"
    )
    model.trainable = False
    return model


def model_for(spec, precision: str):
    """The feature model an objective (`config.Objective`) needs: its content and style layers,
    backbone, weights and pooling, at `precision` (resolved: `nst_tf.plan.resolve` turns "auto"
    into one). Built once per process for each of the last few (layers, backbone, weights,
    precision, pooling), outside a `tf.distribute` scope (a model built in one is its own): a
    repeat run pays for its steps only."""
    layers = tuple(spec.content_layers) + tuple(spec.style_layers)
    if tf.distribute.has_strategy() or spec.weights == "random":  # its own model, every time
        return build_feature_model(list(layers), spec.backbone, spec.weights, precision=precision, pooling=spec.pooling)
    return _kept_model(layers, spec.backbone, spec.weights, precision, spec.pooling)


@functools.lru_cache(maxsize=2)
def _kept_model(layers: tuple, backbone: str, weights: str, precision: str, pooling: str):
    return build_feature_model(list(layers), backbone, weights, precision=precision, pooling=pooling)
