"""Loss terms as pure tensor functions: no state, no I/O.

Shapes: images `[B, H, W, 3]` in [0, 1]; activations `[B, h, w, c]`; Gram matrices `[B, c, c]`;
masks `[B or 1, h, w]` of weights in [0, 1] over an activation's positions.
Every term is per image, a `[B]` vector: a batch of images is optimised as B independent problems
(each image's loss depends on that image alone). `objective` averages over the batch unless
asked for the per-image vector.

Style statistics (`STYLE_STATISTICS`, chosen by `Config.style_loss`) compare the distribution of an
activation's positions (`h*w` vectors of `c` channels) with the style image's:
- "gram": Gram matrices, the uncentred second moments (Gatys et al.);
- "poly": MMD with the polynomial kernel `(x.y / s + 1)^2`, `s` the style's mean squared norm
  (Li et al., "Demystifying Neural Style Transfer", 2017; with `+0` instead of `+1` it is the Gram
  loss); computed exactly from first and second moments, so nothing is sampled;
- "gaussian": MMD with the Gaussian kernel `exp(-|x-y|^2 / (2 sigma^2))`, `sigma^2` the style's
  mean squared distance between positions; the `N x M` kernel is too large to form, so it is
  sampled: `RFF_FEATURES` random Fourier features (Rahimi and Recht, 2007) drawn once per layer
  from the seed, which keeps the loss deterministic and uses every position;
- "meanstd": per-channel mean and standard deviation (Li et al.'s batch-norm statistics);
- "w2": the 2-Wasserstein distance between Gaussian fits (mean and covariance).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

# Random Fourier features per layer for the "gaussian" statistic.
RFF_FEATURES = 256
STD_EPSILON = 1e-5  # added to variances before the square root ("meanstd")


def _wide(x: tf.Tensor) -> tf.Tensor:
    """Half-precision activations widened to float32 (a Gram matrix overflows float16); float32
    and float64 stay as they are."""
    x = tf.convert_to_tensor(x)
    return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


def _positions(features: tf.Tensor, mask: Optional[tf.Tensor] = None):
    """`[B, h, w, c]` as `[B, h*w, c]` (widened) and each position's probability `[B or 1, h*w]`:
    uniform, or `mask` normalised to sum to one (all zero where the mask is empty)."""
    x = _wide(features)
    shape = tf.shape(x)
    flat = tf.reshape(x, [shape[0], -1, shape[3]])
    if mask is None:
        n = tf.cast(shape[1] * shape[2], x.dtype)
        return flat, tf.ones(tf.shape(flat)[:2], x.dtype) / n
    m = tf.reshape(tf.cast(mask, x.dtype), [tf.shape(mask)[0], -1])
    p = m / tf.maximum(tf.reduce_sum(m, axis=1, keepdims=True), 1e-12)
    return flat, tf.broadcast_to(p, tf.shape(flat)[:2])


def mask_present(mask: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """1 if `mask` selects any position, 0 for an all-zero mask."""
    return tf.cast(tf.reduce_sum(mask) > 0, dtype)


def second_moment(flat: tf.Tensor, weights: Optional[tf.Tensor] = None) -> tf.Tensor:
    """`sum_n w_n x_n x_n^T` over the positions of `[B, n, c]` features: `[B, c, c]`.

    weights: `[B or 1, n]` per-position weights (held constant: no gradient flows to them); None
    for ones. One batched matmul forward, and a gradient written by hand as one more,
    `dx = w * (x @ (dG + dG^T))`: TensorFlow's own gradient of a product of `x` with itself takes
    two, each as large as the forward. Measured on the tutorial objective at 384x257 px (2-core
    AVX-512 CPU): the Gram matrices of its five style layers, forward and backward, 53 ms per step
    as einsums and 24 ms so, in float32 and bfloat16 alike (a quarter of the bfloat16 step).
    """
    w = None if weights is None else tf.stop_gradient(tf.cast(weights, flat.dtype))[..., None]

    @tf.custom_gradient
    def moment(x):
        def grad(dg):
            dx = tf.matmul(x, dg + tf.linalg.matrix_transpose(dg))
            return dx if w is None else dx * w

        return tf.matmul(x if w is None else x * w, x, transpose_a=True), grad

    return moment(flat)


def _mean_outer(flat: tf.Tensor, p: tf.Tensor, masked: bool) -> tf.Tensor:
    """`E[x x^T]` over `_positions`' `[B, n, c]` positions, each weighted by its probability `p`
    when `masked` (else uniform): `[B, c, c]`."""
    if not masked:
        return second_moment(flat) / tf.cast(tf.shape(flat)[1], flat.dtype)
    return second_moment(flat, p)


def gram_matrix(features: tf.Tensor, norm: str = "hw", mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    """`F^T F` of `[B, h, w, c]` features, divided by h*w ("hw") or c*h*w ("chw"): `[B, c, c]`.
    With a `mask`, each position counts by its weight and the sum is divided by the weights'
    total instead of h*w."""
    if norm not in ("hw", "chw"):
        raise ValueError(f"unknown gram norm {norm!r}")
    gram = _mean_outer(*_positions(features, mask), masked=mask is not None)
    if norm == "chw":
        gram = gram / tf.cast(tf.shape(features)[3], gram.dtype)
    return gram


def _per_image_mean(x: tf.Tensor) -> tf.Tensor:
    """The mean over every axis but the first (the batch): `[B, ...]` -> `[B]`."""
    return tf.reduce_mean(x, axis=tf.range(1, tf.rank(x)))


def mean_squared_error(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per image (`[B]`; a target with batch 1 is shared by every image)."""
    return _per_image_mean(tf.square(_wide(a) - _wide(b)))


def layer_error(x: tf.Tensor, target: tf.Tensor, norm: str = "mean") -> tf.Tensor:
    """ "mean": the mean squared error; "relative": ||x - target||^2 / ||target||^2 (scale-free);
    per image, `[B]`."""
    error = mean_squared_error(x, target)
    if norm == "relative":
        return error / (_per_image_mean(tf.square(_wide(target))) + 1e-30)
    if norm != "mean":
        raise ValueError(f"unknown loss norm {norm!r}")
    return error


def _normalised(raw, scale, norm, mean_divisor=1.0):
    """A statistic's error: "mean" divides by `mean_divisor`, "relative" by the style's own `scale`."""
    if norm == "relative":
        return raw / (scale + 1e-30)
    if norm != "mean":
        raise ValueError(f"unknown loss norm {norm!r}")
    return raw / mean_divisor


def _sum_sq(x, axes):
    return tf.reduce_sum(tf.square(x), axis=axes)


class Gram:
    """Gram matrices compared by `layer_error` (the classic style loss)."""

    def __init__(self, norm: str = "hw"):
        self.norm = norm

    def target(self, features, seed=None):
        return {"gram": gram_matrix(features, self.norm)}

    def error(self, features, target, norm="mean", mask=None):
        return layer_error(gram_matrix(features, self.norm, mask), target["gram"], norm)


class MeanStd:
    """Per-channel mean and standard deviation; "mean" averages the squared differences over
    channels (Li et al.'s 1/N_l), "relative" divides by the style's sum of squares."""

    @staticmethod
    def moments(features, mask=None):
        flat, p = _positions(features, mask)
        mean = tf.einsum("bn,bnc->bc", p, flat)
        var = tf.maximum(tf.einsum("bn,bnc->bc", p, tf.square(flat)) - tf.square(mean), 0.0)
        return mean, tf.sqrt(var + STD_EPSILON)

    def target(self, features, seed=None):
        mean, std = self.moments(features)
        return {"mean": mean, "std": std}

    def error(self, features, target, norm="mean", mask=None):
        mean, std = self.moments(features, mask)
        raw = _sum_sq(mean - target["mean"], [1]) + _sum_sq(std - target["std"], [1])
        scale = _sum_sq(target["mean"], [1]) + _sum_sq(target["std"], [1])
        channels = tf.cast(tf.shape(mean)[1], raw.dtype)
        return _normalised(raw, scale, norm, channels)


class Poly:
    """MMD^2 with k(x, y) = (x.y / s + 1)^2: from the moments G = E[x x^T] and mu = E[x],
    MMD^2 = |G_x - G_s|^2 / s^2 + 2 |mu_x - mu_s|^2 / s (exact)."""

    @staticmethod
    def moments(features, mask=None):
        flat, p = _positions(features, mask)
        return _mean_outer(flat, p, mask is not None), tf.einsum("bn,bnc->bc", p, flat)

    def target(self, features, seed=None):
        gram, mean = self.moments(features)
        scale = tf.linalg.trace(gram)  # E|s|^2
        return {"gram": gram, "mean": mean, "scale": scale}

    def error(self, features, target, norm="mean", mask=None):
        gram, mean = self.moments(features, mask)
        s = target["scale"]
        raw = _sum_sq(gram - target["gram"], [1, 2]) / s**2 + 2.0 * _sum_sq(mean - target["mean"], [1]) / s
        own = _sum_sq(target["gram"], [1, 2]) / s**2 + 2.0 * _sum_sq(target["mean"], [1]) / s
        return _normalised(raw, own, norm)


class Gaussian:
    """MMD^2 with the Gaussian kernel, through random Fourier features phi (fixed per layer):
    |mean phi(x) - mean phi(s)|^2; "relative" divides by |mean phi(s)|^2 (about E k(s, s'))."""

    def __init__(self, features: int = RFF_FEATURES):
        self.features = features

    def embed(self, features, target, mask=None):
        flat, p = _positions(features, mask)
        phi = math.sqrt(2.0 / self.features) * tf.cos(tf.einsum("bnc,cd->bnd", flat, target["w"]) + target["b"])
        return tf.einsum("bn,bnd->bd", p, phi)

    def target(self, features, seed=(0, 0)):
        flat, p = _positions(features)
        mean = tf.einsum("bn,bnc->bc", p, flat)
        # The style's mean squared distance between positions: 2 (E|s|^2 - |E s|^2).
        sigma2 = 2.0 * (tf.einsum("bn,bnc->b", p, tf.square(flat)) - _sum_sq(mean, [1]))[0]
        sigma = tf.sqrt(tf.maximum(sigma2, 1e-12))
        c = tf.shape(flat)[2]
        seed = tf.cast(tf.stack(seed), tf.int32)
        w = tf.random.stateless_normal(tf.stack([c, self.features]), seed, dtype=flat.dtype) / sigma
        b = tf.random.stateless_uniform([self.features], seed + 1, 0.0, 2.0 * math.pi, dtype=flat.dtype)
        target = {"w": w, "b": b}
        target["embedding"] = self.embed(features, target)
        return target

    def error(self, features, target, norm="mean", mask=None):
        raw = _sum_sq(self.embed(features, target, mask) - target["embedding"], [1])
        return _normalised(raw, _sum_sq(target["embedding"], [1]), norm)


class Wasserstein:
    """W2^2 between Gaussian fits N(mu, C): |mu_x - mu_s|^2 + tr C_x + tr C_s
    - 2 tr (C_s^1/2 C_x C_s^1/2)^1/2, the matrix square root by an eigendecomposition in float64;
    "mean" divides by the channels, "relative" by the style's |mu_s|^2 + tr C_s."""

    @staticmethod
    def moments(features, mask=None):
        gram, mean = Poly.moments(features, mask)
        return mean, gram - tf.einsum("bc,bd->bcd", mean, mean)

    def target(self, features, seed=None):
        mean, cov = self.moments(features)
        e, v = tf.linalg.eigh(tf.cast(cov, tf.float64))
        root = tf.einsum("bij,bj,bkj->bik", v, tf.sqrt(tf.maximum(e, 0.0)), v)
        return {"mean": mean, "cov": cov, "root": root}

    def error(self, features, target, norm="mean", mask=None):
        mean, cov = self.moments(features, mask)
        root = target["root"]
        inner = tf.linalg.eigvalsh(root @ tf.cast(cov, tf.float64) @ root)
        floor = 1e-12 * tf.maximum(tf.reduce_max(inner, axis=-1, keepdims=True), 1e-30)
        cross = tf.cast(tf.reduce_sum(tf.sqrt(tf.maximum(inner, floor)), axis=-1), mean.dtype)
        trace_s = tf.linalg.trace(target["cov"])
        raw = _sum_sq(mean - target["mean"], [1]) + tf.linalg.trace(cov) + trace_s - 2.0 * cross
        channels = tf.cast(tf.shape(mean)[1], raw.dtype)
        return _normalised(raw, _sum_sq(target["mean"], [1]) + trace_s, norm, channels)


STYLE_STATISTICS = ("gram", "poly", "gaussian", "meanstd", "w2")


def style_statistic(cfg):
    """The statistic `cfg.style_loss` names (see the module docstring)."""
    kinds = {
        "gram": lambda: Gram(cfg.gram_norm),
        "poly": Poly,
        "gaussian": Gaussian,
        "meanstd": MeanStd,
        "w2": Wasserstein,
    }
    if cfg.style_loss not in kinds:
        raise ValueError(f"unknown style loss {cfg.style_loss!r}")
    return kinds[cfg.style_loss]()


def content_loss(features: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor], norm: str = "mean") -> tf.Tensor:
    """Mean over the target layers of the activations' `layer_error`, per image `[B]`."""
    terms = [layer_error(features[name], targets[name], norm) for name in targets]
    return tf.add_n(terms) / float(len(terms))


def style_loss(layer_losses: Mapping[str, tf.Tensor], layer_weights: Sequence[float]) -> tf.Tensor:
    """Weighted sum of per-layer style losses (`layer_weights` in the mapping's order)."""
    return tf.add_n([w * loss for w, loss in zip(layer_weights, layer_losses.values())])


def total_variation(image: tf.Tensor, kind: str = "abs") -> tf.Tensor:
    """Total variation per image `[B]`. "abs": the sum of absolute differences between
    neighbouring pixels (`tf.image.total_variation`); "squared": half the sum of their squares
    (Lua neural-style's TV, here on the [0, 1] image)."""
    if kind == "abs":
        return tf.image.total_variation(image)
    if kind != "squared":
        raise ValueError(f"unknown total variation {kind!r}")
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return 0.5 * (tf.reduce_sum(tf.square(dy), axis=[1, 2, 3]) + tf.reduce_sum(tf.square(dx), axis=[1, 2, 3]))


class StyleTarget(NamedTuple):
    """One style image's pull: its statistic per layer, its share of the style term, and
    optionally the region of the image it paints (a mask per layer, `[1, h, w]`)."""

    stats: Dict[str, Any]
    weight: float
    masks: Optional[Dict[str, tf.Tensor]] = None


class Targets(NamedTuple):
    """What the image is pulled towards: content activations by layer, and one `StyleTarget` per
    style image."""

    content: Dict[str, tf.Tensor]
    styles: Tuple[StyleTarget, ...]


def layer_masks(mask: tf.Tensor, features: Mapping[str, tf.Tensor], layers: Sequence[str]) -> Dict[str, tf.Tensor]:
    """A `[H, W]` mask (the image's size) averaged down to each layer's `[1, h, w]`."""
    mask = tf.convert_to_tensor(mask, tf.float32)[None, :, :, None]
    return {name: tf.image.resize(mask, tf.shape(features[name])[1:3], method="area")[..., 0] for name in layers}


def compute_targets(
    model,
    content: tf.Tensor,
    style,
    cfg,
    blend: Optional[Sequence[float]] = None,
    masks: Optional[Sequence[tf.Tensor]] = None,
) -> Targets:
    """Content activations of `content` (`[1, H, W, 3]`) and the style statistics of each style
    image (`style`: one `[1, h, w, 3]` tensor or a sequence of them).

    blend: each style's share of the style term (normalised to sum to one; default equal).
    masks: per style, a `[H, W]` mask in [0, 1] at the content's size: the region it paints.
    """
    styles = [style] if isinstance(style, (tf.Tensor, tf.Variable)) or getattr(style, "ndim", 0) == 4 else list(style)
    blend = [1.0] * len(styles) if blend is None else [float(b) for b in blend]
    shares = [b / sum(blend) for b in blend]
    need_content = cfg.content_layers or (masks is not None and cfg.style_layers)
    content_features = model(content, training=False) if need_content else {}
    statistic = style_statistic(cfg)
    style_targets = []
    for k, (image, share) in enumerate(zip(styles, shares)):
        style_features = model(image, training=False) if cfg.style_layers else {}
        stats = {
            name: statistic.target(style_features[name], seed=(cfg.seed, 1000 * k + i))
            for i, name in enumerate(cfg.style_layers)
        }
        region = None if masks is None else layer_masks(masks[k], content_features, cfg.style_layers)
        style_targets.append(StyleTarget(stats, share, region))
    return Targets(content={name: content_features[name] for name in cfg.content_layers}, styles=tuple(style_targets))


def objective(
    model, targets: Targets, cfg, image: tf.Tensor, content_weight=None, style_weight=None, per_image: bool = False
):
    """The total loss of `image` and its terms: a pure function of the image tensor.

    total = content_weight * content + style_weight * style + tv_weight * tv, where content is the
    mean over content layers and style the blend-weighted sum over style images of each one's
    weighted mean over style layers (layer weights summing to one), each layer's error per
    `cfg.style_loss` and `cfg.loss_norm`. `content_weight` and `style_weight` (numbers or scalar
    tensors, as a serving request supplies) override the config's.
    Returns `(total, terms)`: "content", "style", "tv", "style/<layer>" (blended over styles),
    and with several styles "style_<k>" (k from 1) for each style's own term.
    per_image: return the total and every term per image (`[B]` vectors) rather than averaged over
        the batch. The content targets hold one image per batch image (or one for all); the
        style targets are shared.
    """
    features = model(image, training=False)
    zero = tf.zeros(tf.shape(image)[:1], image.dtype)
    terms = {}
    terms["content"] = content_loss(features, targets.content, cfg.loss_norm) if targets.content else zero
    terms["style"] = zero
    if targets.styles and cfg.style_layers:
        statistic = style_statistic(cfg)
        per_layer = {}
        for k, style in enumerate(targets.styles):
            errors = {}
            for name in cfg.style_layers:
                mask = None if style.masks is None else style.masks[name]
                errors[name] = statistic.error(features[name], style.stats[name], cfg.loss_norm, mask)
                if mask is not None:  # an empty region: no pull at all (its statistic is undefined)
                    errors[name] *= mask_present(mask)
            own = style_loss(errors, cfg.layer_weights)
            if len(targets.styles) > 1:
                terms[f"style_{k + 1}"] = own
            terms["style"] = own * style.weight if k == 0 else terms["style"] + own * style.weight
            for name, value in errors.items():
                per_layer[name] = value * style.weight if k == 0 else per_layer[name] + value * style.weight
        terms.update({f"style/{name}": value for name, value in per_layer.items()})
    terms["tv"] = total_variation(image, cfg.tv_loss)
    content_weight = cfg.content_weight if content_weight is None else content_weight
    style_weight = cfg.style_weight if style_weight is None else style_weight
    total = content_weight * terms["content"] + style_weight * terms["style"] + cfg.tv_weight * terms["tv"]
    if per_image:
        return total, terms
    return tf.reduce_mean(total), {name: tf.reduce_mean(value) for name, value in terms.items()}
