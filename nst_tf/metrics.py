"""A scale-free report of how well a stylised image matches its style and keeps its content.

For an image x, its content c and its style s, with VGG19 (float32) activations F:
- per style layer (block1..5_conv1): ||G(x) - G(s)||^2 / ||G(s)||^2, with G = F^T F / (H W)
  and the style image resized to the output's longest side; and the mean over layers;
- content: ||F(x) - F(c)||^2 / ||F(c)||^2 at block4_conv2, the content resized to the output.
- style_ratio: the mean style error over the content photo's own (the untouched photo scores 1;
  below 1 the output is nearer the style than the photo was).
Lower is better on all three. The ratios are computed in float64 from the network's float32
activations, so they do not depend on the loss weights or the precision a run used.
"""

from __future__ import annotations

import numpy as np

from nst_tf import flow, image_io
from nst_tf.config import DEFAULT_STYLE_LAYERS
from nst_tf.errors import NstError

STYLE_LAYERS = DEFAULT_STYLE_LAYERS
CONTENT_LAYER = "block4_conv2"


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b||^2 / ||b||^2 in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sum((a - b) ** 2) / np.sum(b**2))


def _gram(features: np.ndarray) -> np.ndarray:
    """`F^T F / (H W)` of one `[H, W, C]` activation, in float64."""
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    return flat.T @ flat / flat.shape[0]


def feature_model(weights: str = "auto"):
    """The float32 VGG19 model the report uses (build once to evaluate many images)."""
    from nst_tf import features  # loads TensorFlow: not at import

    return features.build_feature_model(list(STYLE_LAYERS) + [CONTENT_LAYER], "vgg19", weights, precision="float32")


def evaluate(image, content, style, weights: str = "auto", model=None) -> dict:
    """The report for `image` (the stylised result) against `content` and `style`.

    image, content, style: paths, PIL images or arrays (see `image_io.load_image`).
    weights: the VGG19 weights spec (see `nst_tf.weights.load`); model: a model from
        `feature_model()` to reuse.
    Returns `{"size": [H, W], "style": {layer: error, ..., "mean": error}, "style_ratio": ratio,
    "content": {"block4_conv2": error}}`.
    """
    import tensorflow as tf

    x = image_io.load_image(image)
    hw = x.shape[:2]
    c = image_io.resize(image_io.load_image(content), hw)
    s = image_io.load_image(style, max(hw))
    model = model or feature_model(weights)
    fx, fc, fs = (
        {name: value.numpy()[0] for name, value in model(tf.constant(a[None]), training=False).items()}
        for a in (x, c, s)
    )
    style_errors = {name: _relative_error(_gram(fx[name]), _gram(fs[name])) for name in STYLE_LAYERS}
    style_errors["mean"] = float(np.mean(list(style_errors.values())))
    own = float(np.mean([_relative_error(_gram(fc[name]), _gram(fs[name])) for name in STYLE_LAYERS]))
    return {
        "size": [int(hw[0]), int(hw[1])],
        "style": style_errors,
        "style_ratio": style_errors["mean"] / own if own > 0 else float("inf"),
        "content": {CONTENT_LAYER: _relative_error(fx[CONTENT_LAYER], fc[CONTENT_LAYER])},
    }


def warping_error(inputs, outputs, preset: str = "medium") -> dict:
    """Flicker: the warping error of Lai et al. ("Learning Blind Video Temporal Consistency", ECCV
    2018). For each consecutive pair, output frame t-1 is warped into frame t by the *input* clip's
    flow (`nst_tf.flow.between`), and the squared RGB difference to output frame t (values in [0, 1],
    averaged over the channels) is averaged over the pixels the flow marks reliable. `inputs`,
    `outputs`: the clip and its painting, float RGB `[H, W, 3]` frames of one size each. Returns
    `{"warping_error": mean over pairs, "per_pair": [...]}`; the input clip scored against itself
    is the floor (what the flow itself cannot explain)."""

    inputs, outputs = list(inputs), list(outputs)
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise NstError(
            f"the warping error needs two clips of the same length, 2 frames or more: got {len(inputs)} and {len(outputs)}"
        )
    per_pair = []
    for t in range(1, len(inputs)):
        backward, mask = flow.between(inputs[t], inputs[t - 1], preset)
        out, previous = np.asarray(outputs[t], np.float32), np.asarray(outputs[t - 1], np.float32)
        if out.shape != np.shape(inputs[t]):
            raise NstError(
                f"output frame {t} is {out.shape}, its input {np.shape(inputs[t])}: paint at the clip's size"
            )
        squared = np.mean((out - flow.warp(previous, backward)) ** 2, axis=-1)
        per_pair.append(float(np.sum(squared * mask) / max(float(np.sum(mask)), 1.0)))
    return {"warping_error": float(np.mean(per_pair)), "per_pair": per_pair}
