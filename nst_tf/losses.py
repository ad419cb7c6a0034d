"""Loss terms as pure tensor functions: no state, no I/O.

Shapes: images `[B, H, W, 3]` in [0, 1]; activations `[B, h, w, c]`; Gram matrices `[B, c, c]`.
Every term is a scalar per batch, averaged over the batch (one image is the usual batch).
"""

from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Sequence

import tensorflow as tf


def _wide(x: tf.Tensor) -> tf.Tensor:
    """Half-precision activations widened to float32 (a Gram matrix overflows float16); float32
    and float64 stay as they are."""
    x = tf.convert_to_tensor(x)
    return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


def gram_matrix(features: tf.Tensor, norm: str = "hw") -> tf.Tensor:
    """`F^T F` of `[B, h, w, c]` features, divided by h*w ("hw") or c*h*w ("chw"): `[B, c, c]`."""
    features = _wide(features)
    shape = tf.shape(features)
    gram = tf.linalg.einsum("bijc,bijd->bcd", features, features)
    denom = tf.cast(shape[1] * shape[2], gram.dtype)
    if norm == "chw":
        denom *= tf.cast(shape[3], gram.dtype)
    elif norm != "hw":
        raise ValueError(f"unknown gram norm {norm!r}")
    return gram / denom


def mean_squared_error(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(_wide(a) - _wide(b)))


def layer_error(x: tf.Tensor, target: tf.Tensor, norm: str = "mean") -> tf.Tensor:
    """"mean": the mean squared error; "relative": ||x - target||^2 / ||target||^2 (scale-free)."""
    error = mean_squared_error(x, target)
    if norm == "relative":
        return error / (tf.reduce_mean(tf.square(_wide(target))) + 1e-30)
    if norm != "mean":
        raise ValueError(f"unknown loss norm {norm!r}")
    return error


def content_loss(features: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor], norm: str = "mean") -> tf.Tensor:
    """Mean over the target layers of the activations' `layer_error`."""
    terms = [layer_error(features[name], targets[name], norm) for name in targets]
    return tf.add_n(terms) / float(len(terms))


def style_layer_losses(grams: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor], norm: str = "mean") -> Dict[str, tf.Tensor]:
    """Per layer, the Gram matrices' `layer_error`."""
    return {name: layer_error(grams[name], targets[name], norm) for name in targets}


def style_loss(layer_losses: Mapping[str, tf.Tensor], layer_weights: Sequence[float]) -> tf.Tensor:
    """Weighted sum of per-layer style losses (`layer_weights` in the mapping's order)."""
    return tf.add_n([w * loss for w, loss in zip(layer_weights, layer_losses.values())])


def total_variation(image: tf.Tensor, kind: str = "abs") -> tf.Tensor:
    """Total variation, averaged over the batch. "abs": the sum of absolute differences between
    neighbouring pixels (`tf.image.total_variation`); "squared": half the sum of their squares
    (Lua neural-style's TV, here on the [0, 1] image)."""
    if kind == "abs":
        return tf.reduce_mean(tf.image.total_variation(image))
    if kind != "squared":
        raise ValueError(f"unknown total variation {kind!r}")
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    per_image = tf.reduce_sum(tf.square(dy), axis=[1, 2, 3]) + tf.reduce_sum(tf.square(dx), axis=[1, 2, 3])
    return 0.5 * tf.reduce_mean(per_image)


class Targets(NamedTuple):
    """What the image is pulled towards: content activations and style Gram matrices by layer."""

    content: Dict[str, tf.Tensor]
    style: Dict[str, tf.Tensor]


def compute_targets(model, content: tf.Tensor, style: tf.Tensor, cfg) -> Targets:
    """Content activations of `content` and Gram matrices of `style` (each `[1, H, W, 3]`)."""
    content_features = model(content, training=False) if cfg.content_layers else {}
    style_features = model(style, training=False) if cfg.style_layers else {}
    return Targets(
        content={name: content_features[name] for name in cfg.content_layers},
        style={name: gram_matrix(style_features[name], cfg.gram_norm) for name in cfg.style_layers},
    )


def objective(model, targets: Targets, cfg, image: tf.Tensor, content_weight=None, style_weight=None):
    """The total loss of `image` and its terms: a pure function of the image tensor.

    total = content_weight * content + style_weight * style + tv_weight * tv, where content is the
    mean over content layers, style the weighted mean over style layers (weights summing to one),
    each layer's error per `cfg.loss_norm`. `content_weight` and `style_weight` (numbers or
    scalar tensors, as a serving request supplies) override the config's.
    Returns `(total, {"content", "style", "tv", "style/<layer>"...: scalar})`.
    """
    features = model(image, training=False)
    zero = tf.zeros((), image.dtype)
    terms = {}
    terms["content"] = content_loss(features, targets.content, cfg.loss_norm) if targets.content else zero
    if targets.style:
        grams = {name: gram_matrix(features[name], cfg.gram_norm) for name in targets.style}
        per_layer = style_layer_losses(grams, targets.style, cfg.loss_norm)
        terms["style"] = style_loss(per_layer, cfg.layer_weights)
        terms.update({f"style/{name}": value for name, value in per_layer.items()})
    else:
        terms["style"] = zero
    terms["tv"] = total_variation(image, cfg.tv_loss)
    content_weight = cfg.content_weight if content_weight is None else content_weight
    style_weight = cfg.style_weight if style_weight is None else style_weight
    total = content_weight * terms["content"] + style_weight * terms["style"] + cfg.tv_weight * terms["tv"]
    return total, terms
