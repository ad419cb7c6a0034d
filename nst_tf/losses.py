"""Loss terms as pure tensor functions: no state, no I/O.

Shapes: images `[B, H, W, 3]` in [0, 1]; activations `[B, h, w, c]`; Gram matrices `[B, c, c]`;
masks `[B or 1, h, w]` of weights in [0, 1] over an activation's positions.
Every term is per image, a `[B]` vector: a batch of images is optimised as B independent problems
(each image's loss depends on that image alone). `objective` averages over the batch unless
asked for the per-image vector.

Style statistics (`STYLE_STATISTICS`, chosen by the objective's `style_loss`, `config.Objective`) compare the distribution of an
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


class Positions(NamedTuple):
    """An activation's positions and what each counts for in a statistic: `flat` `[B, n, c]`
    (widened), `p` `[B, n]` each position's probability, `count` the number of positions the
    statistic averages over (a float scalar), and whether a mask weighs them."""

    flat: tf.Tensor
    p: tf.Tensor
    count: tf.Tensor
    masked: bool


def positions(features: tf.Tensor, mask: Optional[tf.Tensor] = None, total=None) -> Positions:
    """`[B, h, w, c]` features as `Positions`: uniform, or `mask` (`[B or 1, h, w]`) normalised to
    sum to one (all zero where the mask is empty).

    total: when these features are part of a larger image (a tile's positions, see
        `nst_tf.tiling`), the whole image's position count (no mask) or mask total, so that the
        probabilities are the whole image's and a statistic's sums over the parts add up to it.
    """
    x = _wide(features)
    shape = tf.shape(x)
    flat = tf.reshape(x, [shape[0], -1, shape[3]])
    if mask is None:
        n = tf.cast(shape[1] * shape[2], x.dtype) if total is None else tf.cast(total, x.dtype)
        return Positions(flat, tf.ones(tf.shape(flat)[:2], x.dtype) / n, n, False)
    m = tf.reshape(tf.cast(mask, x.dtype), [tf.shape(mask)[0], -1])
    weight = tf.reduce_sum(m, axis=1, keepdims=True) if total is None else tf.cast(total, x.dtype)
    p = m / tf.maximum(weight, 1e-12)
    return Positions(flat, tf.broadcast_to(p, tf.shape(flat)[:2]), tf.cast(tf.shape(flat)[1], x.dtype), True)


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


def _mean_outer(pos: Positions) -> tf.Tensor:
    """`E[x x^T]` over the positions, each weighted by its probability: `[B, c, c]`."""
    if not pos.masked:
        return second_moment(pos.flat) / pos.count
    return second_moment(pos.flat, pos.p)


def _mean(pos: Positions) -> tf.Tensor:
    """`E[x]` over the positions: `[B, c]`."""
    return tf.einsum("bn,bnc->bc", pos.p, pos.flat)


def _per_image_mean(x: tf.Tensor) -> tf.Tensor:
    """The mean over every axis but the first (the batch): `[B, ...]` -> `[B]`."""
    return tf.reduce_mean(x, axis=tf.range(1, tf.rank(x)))


def mean_squared_error(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per image (`[B]`; a target with batch 1 is shared by every image)."""
    return _per_image_mean(tf.square(_wide(a) - _wide(b)))


def layer_error(x: tf.Tensor, target: tf.Tensor, norm: str = "mean") -> tf.Tensor:
    """ "mean": the mean squared error; "relative": ||x - target||^2 / ||target||^2 (scale-free);
    per image, `[B]`."""
    return _relative_to(mean_squared_error(x, target), target, norm)


def _relative_to(error, target, norm):
    """A mean squared error against `target` as `layer_error`'s `norm` asks."""
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


class Statistic:
    """A style statistic, written so that it can be computed in parts (`nst_tf.tiling`):

    - `sums(pos, target)`: the activation's moments, each a sum over positions weighted by their
      probabilities (`Positions.p`), so the moments of a whole image are the sums of its parts';
    - `error_from(sums, target, norm)`: the layer's error `[B]` from the whole image's moments;
    - `target_from(sums, params)`: the style's target from its own moments. A statistic with
      `params` (random features, say) draws them first from `param_sums`' moments.
    `target(features)` and `error(features, target)` compose them for a whole activation.
    """

    def params(self, param_sums, seed):
        return {}

    def param_sums(self, pos: Positions):
        return {}

    def target(self, features, seed=(0, 0)):
        pos = positions(features)
        params = self.params(self.param_sums(pos), seed)
        return self.target_from(self.sums(pos, params), params)

    def error(self, features, target, norm="mean", mask=None):
        return self.error_from(self.sums(positions(features, mask), target), target, norm)


class Gram(Statistic):
    """Gram matrices compared by `layer_error` (the classic style loss)."""

    def __init__(self, norm: str = "hw"):
        if norm not in ("hw", "chw"):
            raise ValueError(f"unknown gram norm {norm!r}")
        self.norm = norm

    def sums(self, pos, target=None):
        gram = _mean_outer(pos)
        if self.norm == "chw":
            gram = gram / tf.cast(tf.shape(pos.flat)[2], gram.dtype)
        return {"gram": gram}

    def target_from(self, sums, params=None):
        return {"gram": sums["gram"]}

    def error_from(self, sums, target, norm="mean"):
        return layer_error(sums["gram"], target["gram"], norm)


class MeanStd(Statistic):
    """Per-channel mean and standard deviation; "mean" averages the squared differences over
    channels (Li et al.'s 1/N_l), "relative" divides by the style's sum of squares."""

    def sums(self, pos, target=None):
        return {"mean": _mean(pos), "square": tf.einsum("bn,bnc->bc", pos.p, tf.square(pos.flat))}

    @staticmethod
    def mean_std(sums):
        var = tf.maximum(sums["square"] - tf.square(sums["mean"]), 0.0)
        return sums["mean"], tf.sqrt(var + STD_EPSILON)

    @classmethod
    def moments(cls, features, mask=None):
        """`(mean, std)` per channel, `[B, c]` each."""
        return cls.mean_std(cls().sums(positions(features, mask)))

    def target_from(self, sums, params=None):
        mean, std = self.mean_std(sums)
        return {"mean": mean, "std": std}

    def error_from(self, sums, target, norm="mean"):
        mean, std = self.mean_std(sums)
        raw = _sum_sq(mean - target["mean"], [1]) + _sum_sq(std - target["std"], [1])
        scale = _sum_sq(target["mean"], [1]) + _sum_sq(target["std"], [1])
        channels = tf.cast(tf.shape(mean)[1], raw.dtype)
        return _normalised(raw, scale, norm, channels)


class Poly(Statistic):
    """MMD^2 with k(x, y) = (x.y / s + 1)^2: from the moments G = E[x x^T] and mu = E[x],
    MMD^2 = |G_x - G_s|^2 / s^2 + 2 |mu_x - mu_s|^2 / s (exact)."""

    def sums(self, pos, target=None):
        return {"gram": _mean_outer(pos), "mean": _mean(pos)}

    def target_from(self, sums, params=None):
        return {**sums, "scale": tf.linalg.trace(sums["gram"])}  # scale: E|s|^2

    def error_from(self, sums, target, norm="mean"):
        gram, mean, s = sums["gram"], sums["mean"], target["scale"]
        raw = _sum_sq(gram - target["gram"], [1, 2]) / s**2 + 2.0 * _sum_sq(mean - target["mean"], [1]) / s
        own = _sum_sq(target["gram"], [1, 2]) / s**2 + 2.0 * _sum_sq(target["mean"], [1]) / s
        return _normalised(raw, own, norm)


class Gaussian(Statistic):
    """MMD^2 with the Gaussian kernel, through random Fourier features phi (fixed per layer):
    |mean phi(x) - mean phi(s)|^2; "relative" divides by |mean phi(s)|^2 (about E k(s, s'))."""

    def __init__(self, features: int = RFF_FEATURES):
        self.features = features

    def param_sums(self, pos):
        return {"mean": _mean(pos), "square": tf.einsum("bn,bnc->b", pos.p, tf.square(pos.flat))}

    def params(self, param_sums, seed):
        # The style's mean squared distance between positions: 2 (E|s|^2 - |E s|^2).
        mean = param_sums["mean"]
        sigma2 = 2.0 * (param_sums["square"] - _sum_sq(mean, [1]))[0]
        sigma = tf.sqrt(tf.maximum(sigma2, 1e-12))
        seed = tf.cast(tf.stack(seed), tf.int32)
        w = tf.random.stateless_normal(tf.stack([tf.shape(mean)[1], self.features]), seed, dtype=mean.dtype) / sigma
        b = tf.random.stateless_uniform([self.features], seed + 1, 0.0, 2.0 * math.pi, dtype=mean.dtype)
        return {"w": w, "b": b}

    def sums(self, pos, target):
        phi = math.sqrt(2.0 / self.features) * tf.cos(tf.einsum("bnc,cd->bnd", pos.flat, target["w"]) + target["b"])
        return {"embedding": tf.einsum("bn,bnd->bd", pos.p, phi)}

    def target_from(self, sums, params):
        return {**params, "embedding": sums["embedding"]}

    def error_from(self, sums, target, norm="mean"):
        raw = _sum_sq(sums["embedding"] - target["embedding"], [1])
        return _normalised(raw, _sum_sq(target["embedding"], [1]), norm)


# Eigenvalues of C_s^1/2 C_x C_s^1/2 below this fraction of the largest are treated as rounding noise:
# C_x comes from float32 sums over positions, so its null space holds eigenvalues of the order of
# float32's epsilon (1.2e-7) times the largest, or a few times that; see `soft_sqrt`.
W2_FLOOR = 1e-5


def soft_sqrt(eigenvalues: tf.Tensor) -> tf.Tensor:
    """sqrt(l) for the eigenvalues l >= 0 of a PSD matrix (`[..., c]`), exactly for l >= f (f =
    `W2_FLOOR` x the largest), and below f the quadratic that meets it with the same value and slope,
    (l / 2 sqrt f) (3 - l / f), whose slope falls from 3 / (2 sqrt f) at 0 to 1 / (2 sqrt f) at f,
    where the exact root's, 1 / (2 sqrt l), is unbounded. With sqrt itself, the gradient of a rank-deficient
    covariance's W2 (few positions, many channels) came from its null space's rounding noise, and
    so differed wherever the sums were added in another order (a served graph, XLA, other CPU
    kernels); here every null-space eigenvalue has nearly the same derivative, so their gradient
    is close to the null space's projection, whatever the noise."""
    floor = W2_FLOOR * tf.stop_gradient(tf.maximum(tf.reduce_max(eigenvalues, axis=-1, keepdims=True), 1e-30))
    low = eigenvalues / (2.0 * tf.sqrt(floor)) * (3.0 - eigenvalues / floor)
    return tf.where(eigenvalues >= floor, tf.sqrt(tf.maximum(eigenvalues, floor)), low)


class Wasserstein(Statistic):
    """W2^2 between Gaussian fits N(mu, C): |mu_x - mu_s|^2 + tr C_x + tr C_s
    - 2 tr (C_s^1/2 C_x C_s^1/2)^1/2, the matrix square roots by eigendecompositions in float64
    (the outer one's square roots by `soft_sqrt`);
    "mean" divides by the channels, "relative" by the style's |mu_s|^2 + tr C_s."""

    sums = Poly.sums

    @staticmethod
    def mean_cov(sums):
        mean = sums["mean"]
        return mean, sums["gram"] - tf.einsum("bc,bd->bcd", mean, mean)

    def target_from(self, sums, params=None):
        mean, cov = self.mean_cov(sums)
        e, v = tf.linalg.eigh(tf.cast(cov, tf.float64))
        root = tf.einsum("bij,bj,bkj->bik", v, tf.sqrt(tf.maximum(e, 0.0)), v)
        return {"mean": mean, "cov": cov, "root": root}

    def error_from(self, sums, target, norm="mean"):
        mean, cov = self.mean_cov(sums)
        root = target["root"]
        inner = tf.maximum(tf.linalg.eigvalsh(root @ tf.cast(cov, tf.float64) @ root), 0.0)
        cross = tf.cast(tf.reduce_sum(soft_sqrt(inner), axis=-1), mean.dtype)
        trace_s = tf.linalg.trace(target["cov"])
        raw = _sum_sq(mean - target["mean"], [1]) + tf.linalg.trace(cov) + trace_s - 2.0 * cross
        channels = tf.cast(tf.shape(mean)[1], raw.dtype)
        return _normalised(raw, _sum_sq(target["mean"], [1]) + trace_s, norm, channels)


STYLE_STATISTICS = ("gram", "poly", "gaussian", "meanstd", "w2")


def style_statistic(spec):
    """The statistic `spec.style_loss` names (see the module docstring); `spec`: the objective's
    options (`config.Objective`)."""
    kinds = {
        "gram": lambda: Gram(spec.gram_norm),
        "poly": Poly,
        "gaussian": Gaussian,
        "meanstd": MeanStd,
        "w2": Wasserstein,
    }
    if spec.style_loss not in kinds:
        raise ValueError(f"unknown style loss {spec.style_loss!r}")
    return kinds[spec.style_loss]()


def content_loss_of(layer_errors: Sequence[tf.Tensor]) -> tf.Tensor:
    """The content term from its layers' errors: their mean."""
    return tf.add_n(layer_errors) / float(len(layer_errors))


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
    spec,
    blend: Optional[Sequence[float]] = None,
    masks: Optional[Sequence[tf.Tensor]] = None,
    seed: int = 0,
) -> Targets:
    """Content activations of `content` (`[1, H, W, 3]`) and the style statistics of each style
    image (`style`: one `[1, h, w, 3]` tensor or a sequence of them), for the objective `spec`
    (`config.Objective`: its layers and style statistic).

    blend: each style's share of the style term (normalised to sum to one; default equal).
    masks: per style, a `[H, W]` mask in [0, 1] at the content's size: the region it paints.
    seed: the seed of a statistic's random parameters (the MMD kernels' projections).
    """
    styles = [style] if isinstance(style, (tf.Tensor, tf.Variable)) or getattr(style, "ndim", 0) == 4 else list(style)
    blend = [1.0] * len(styles) if blend is None else [float(b) for b in blend]
    shares = [b / sum(blend) for b in blend]
    need_content = spec.content_layers or (masks is not None and spec.style_layers)
    content_features = model(content, training=False) if need_content else {}
    statistic = style_statistic(spec)
    style_targets = []
    for k, (image, share) in enumerate(zip(styles, shares)):
        style_features = model(image, training=False) if spec.style_layers else {}
        stats = {
            name: statistic.target(style_features[name], seed=(seed, 1000 * k + i))
            for i, name in enumerate(spec.style_layers)
        }
        region = None if masks is None else layer_masks(masks[k], content_features, spec.style_layers)
        style_targets.append(StyleTarget(stats, share, region))
    return Targets(content={name: content_features[name] for name in spec.content_layers}, styles=tuple(style_targets))


def objective(
    model, targets: Targets, spec, image: tf.Tensor, content_weight=None, style_weight=None, per_image: bool = False
):
    """The total loss of `image` and its terms: a pure function of the image tensor.

    total = content_weight * content + style_weight * style + tv_weight * tv, where content is the
    mean over content layers and style the blend-weighted sum over style images of each one's
    weighted mean over style layers (layer weights summing to one), each layer's error per
    `spec` (`config.Objective`: `style_loss`, `loss_norm`, the weights). `content_weight` and `style_weight` (numbers or scalar
    tensors, as a serving request supplies) override the config's.
    Returns `(total, terms)`: "content", "style", "tv", "style/<layer>" (blended over styles),
    and with several styles "style_<k>" (k from 1) for each style's own term.
    per_image: return the total and every term per image (`[B]` vectors) rather than averaged over
        the batch. The content targets hold one image per batch image (or one for all); the
        style targets are shared.
    Computed as `objective_from_sums(objective_sums(...))`, the form `nst_tf.tiling` adds up
    over tiles.
    """
    sums = objective_sums(model(image, training=False), targets, spec)
    tv = total_variation(image, spec.tv_loss)
    return objective_from_sums(sums, targets, spec, tv, content_weight, style_weight, per_image)


class Counts(NamedTuple):
    """The whole image's position counts, when the features given are a part of it (a tile's
    positions): per layer, its positions; per style and layer, its mask's total."""

    positions: Dict[str, tf.Tensor]
    masks: Tuple[Optional[Dict[str, tf.Tensor]], ...]


def objective_sums(features: Mapping[str, tf.Tensor], targets: Targets, spec, counts: Optional[Counts] = None):
    """Every term's moments: `{"content": {layer: [B]}, "style": ({layer: statistic sums}, ...)}`
    (one dict per style image), each a sum over positions (see `Statistic`).

    counts: None for a whole image; for a part of one, the whole image's `Counts` (then
        `targets` holds the content targets and masks of the part's positions, and the parts'
        sums add up to the whole image's)."""
    content = {}
    for name, target in targets.content.items():
        error = tf.square(_wide(features[name]) - _wide(target))
        if counts is None:
            content[name] = _per_image_mean(error)
        else:
            values = tf.cast(counts.positions[name], error.dtype) * tf.cast(tf.shape(error)[3], error.dtype)
            content[name] = tf.reduce_sum(error, axis=[1, 2, 3]) / values
    styles = []
    if spec.style_layers:
        statistic = style_statistic(spec)
        for k, style in enumerate(targets.styles):
            own = {}
            for name in spec.style_layers:
                mask = None if style.masks is None else style.masks[name]
                total = None
                if counts is not None:
                    total = counts.positions[name] if mask is None else counts.masks[k][name]
                own[name] = statistic.sums(positions(features[name], mask, total), style.stats[name])
            styles.append(own)
    return {"content": content, "style": tuple(styles)}


def objective_from_sums(
    sums, targets: Targets, spec, tv: tf.Tensor, content_weight=None, style_weight=None, per_image: bool = False
):
    """`objective` from the whole image's `objective_sums` and its total variation `tv` (`[B]`)."""
    zero = tf.zeros_like(tv)
    terms = {}
    content = [_relative_to(sums["content"][name], target, spec.loss_norm) for name, target in targets.content.items()]
    terms["content"] = content_loss_of(content) if content else zero
    terms["style"] = zero
    if targets.styles and spec.style_layers:
        statistic = style_statistic(spec)
        per_layer = {}
        for k, (style, own_sums) in enumerate(zip(targets.styles, sums["style"])):
            errors = {}
            for name in spec.style_layers:
                errors[name] = statistic.error_from(own_sums[name], style.stats[name], spec.loss_norm)
                if style.masks is not None:  # an empty region: no pull at all (its statistic is undefined)
                    errors[name] *= mask_present(style.masks[name])
            own = style_loss(errors, spec.layer_weights)
            if len(targets.styles) > 1:
                terms[f"style_{k + 1}"] = own
            terms["style"] = own * style.weight if k == 0 else terms["style"] + own * style.weight
            for name, value in errors.items():
                per_layer[name] = value * style.weight if k == 0 else per_layer[name] + value * style.weight
        terms.update({f"style/{name}": value for name, value in per_layer.items()})
    terms["tv"] = tv
    content_weight = spec.content_weight if content_weight is None else content_weight
    style_weight = spec.style_weight if style_weight is None else style_weight
    total = content_weight * terms["content"] + style_weight * terms["style"] + spec.tv_weight * terms["tv"]
    if per_image:
        return total, terms
    return tf.reduce_mean(total), {name: tf.reduce_mean(value) for name, value in terms.items()}
