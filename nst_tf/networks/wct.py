"""The whitening and colouring transform (Li et al., NeurIPS 2017) as pure tensor functions.

Features are one image's activations `[h, w, C]` (or `[N, C]` positions). A style is represented
at each level by its channel mean `m_s` `[C]` and the symmetric square root `S` `[C, C]` of its
channel covariance; the content by its mean `m_c` and the inverse square root `W` of its covariance.
The transform is `S W (f - m_c) + m_s`: the result's mean is the style's and its covariance is the
style's wherever the content's covariance has full rank.

Statistics are sums over positions (`Moments`: count, sum, sum of outer products), so a tiled pass
adds the tiles' sums and gets the whole image's statistics exactly; a mask weights the positions
(one region's statistics).

Matrix square roots of a covariance `C` (up to 512 x 512) are taken of `C + eps I` with
`eps = EPS * trace(C) / n` (plus a tiny absolute floor, so a one-colour painting's zero covariance
still gives finite, zero colouring): the whitening then maps a direction of variance `d` to variance
`d / (d + eps)` at most 1, never amplifying float32 rounding noise in the covariance's null space
(features from few positions and many channels are rank-deficient). Two ways compute the same
function:
- `eigh` (`tf.linalg.eigh` in float64, the eigenvalues clipped at 0 before the shift): the reference,
  used by the Keras path and the SavedModel;
- `newton_schulz`: the coupled Newton-Schulz iteration (Higham, "Functions of Matrices", 6.3), only
  matmuls, in float32, for targets without an eigen-decomposition (TF Lite, TensorFlow.js).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
from nst_tf import painting

# The shift, relative to the mean eigenvalue. 1e-4 left the whitening sensitive to float32 rounding
# in the covariance: a tiled picture's (summed tile by tile) differed from the untiled one's by up
# to 3 levels after four levels of the cascade; at 1e-3 by at most 1 (boston x shipwreck, 203 px).
EPS = 1e-3
TINY = 1e-8  # an absolute floor on the shift (a zero covariance)
NEWTON_SCHULZ_STEPS = 40  # the smallest scaled eigenvalue (>= EPS / n) grows ~1.5x a step, then converges fast


class Moments(NamedTuple):
    """Sums over positions: `count` (a scalar, or the mask's total weight), `total` `[C]`, `outer` `[C, C]`
    (sum of f f^T), all float32. Add two by `add`."""

    count: tf.Tensor
    total: tf.Tensor
    outer: tf.Tensor

    def add(self, other: "Moments") -> "Moments":
        return Moments(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def mean_cov(self):
        """`(mean [C], covariance [C, C])`, the covariance symmetrised."""
        count = tf.maximum(self.count, 1e-12)
        mean = self.total / count
        cov = self.outer / count - mean[:, None] * mean[None, :]
        return mean, 0.5 * (cov + tf.transpose(cov))


def moments(features, mask=None) -> Moments:
    """The sums of `features` `[..., C]` over every position, each position weighted by `mask`
    `[...]` (the features' positions; None: all 1)."""
    features = tf.cast(features, tf.float32)
    flat = tf.reshape(features, [-1, tf.shape(features)[-1]])
    if mask is None:
        count = tf.cast(tf.shape(flat)[0], tf.float32)
        weighted = flat
    else:
        weights = tf.reshape(tf.cast(mask, tf.float32), [-1, 1])
        count = tf.reduce_sum(weights)
        weighted = flat * weights
    return Moments(count, tf.reduce_sum(weighted, axis=0), tf.matmul(weighted, flat, transpose_a=True))


def _eye(n, dtype):
    """The `n` x `n` identity from a comparison of ranges: TF Lite and TensorFlow.js have no
    MatrixDiag kernel (which `tf.eye` of a tensor size becomes)."""
    index = tf.range(n)
    return tf.cast(tf.equal(index[:, None], index[None, :]), dtype)


def _trace(m):
    """The trace as a masked sum (TF Lite has no diagonal-part kernel)."""
    return tf.reduce_sum(m * _eye(tf.shape(m)[0], m.dtype))


def _shift(cov):
    n = tf.cast(tf.shape(cov)[0], cov.dtype)
    return EPS * _trace(cov) / n + TINY


def sqrt_pair_eigh(cov):
    """`((C + eps I)^1/2, (C + eps I)^-1/2)` by an eigen-decomposition in float64."""
    c64 = tf.cast(cov, tf.float64)
    c64 = 0.5 * (c64 + tf.transpose(c64))
    values, vectors = tf.linalg.eigh(c64)
    values = tf.nn.relu(values) + _shift(c64)
    root = tf.matmul(vectors * tf.sqrt(values)[None, :], vectors, transpose_b=True)
    inverse = tf.matmul(vectors * tf.math.rsqrt(values)[None, :], vectors, transpose_b=True)
    return tf.cast(root, tf.float32), tf.cast(inverse, tf.float32)


def sqrt_pair_newton_schulz(cov, steps: int = NEWTON_SCHULZ_STEPS):
    """`((C + eps I)^1/2, (C + eps I)^-1/2)` by the coupled Newton-Schulz iteration: matmuls only.
    The matrix is scaled by its trace first (every eigenvalue then lies in (0, 1], where the
    iteration converges)."""
    cov = tf.cast(cov, tf.float32)
    n = tf.shape(cov)[0]
    eye = _eye(n, tf.float32)
    shifted = 0.5 * (cov + tf.transpose(cov)) + _shift(cov) * eye
    scale = _trace(shifted)
    y, z = shifted / scale, eye
    for _ in range(steps):
        t = 0.5 * (3.0 * eye - tf.matmul(z, y))
        y, z = tf.matmul(y, t), tf.matmul(t, z)
    return y * tf.sqrt(scale), z * tf.math.rsqrt(scale)


SQRT_METHODS = {"eigh": sqrt_pair_eigh, "newton_schulz": sqrt_pair_newton_schulz}


class Style(NamedTuple):
    """One level of a style's representation: mean `[C]` and covariance square root `[C, C]`."""

    mean: tf.Tensor
    root: tf.Tensor


def style_of(m: Moments, method: str = "eigh") -> Style:
    mean, cov = m.mean_cov()
    return Style(mean, SQRT_METHODS[method](cov)[0])


def blend(styles, weights) -> Style:
    """The convex blend of styles (the transform is linear in mean and root, so blending them is
    blending the coloured features, as Li et al. blend several styles)."""
    weights = [float(w) for w in weights]
    total = sum(weights)
    mean = tf.add_n([w / total * s.mean for w, s in zip(weights, styles)])
    root = tf.add_n([w / total * s.root for w, s in zip(weights, styles)])
    return Style(mean, root)


def blend_levels(styles, weights=None) -> dict:
    """Per level, the blend (`blend`) of several styles' `{level: Style}` (weights None: equal)."""
    weights = painting.blend_weights(weights, len(styles)).tolist()  # the one rule for a blend's weights
    return {k: blend([s[k] for s in styles], weights) for k in styles[0]}


def whiten_colour(features, content: Moments, style: Style, strength=1.0, method: str = "eigh"):
    """`features` `[..., C]` whitened by `content`'s statistics and coloured by `style`, mixed with
    the features themselves: `strength * (S W (f - m_c) + m_s) + (1 - strength) * f`."""
    features = tf.cast(features, tf.float32)
    mean, cov = content.mean_cov()
    whiten = SQRT_METHODS[method](cov)[1]
    transform = tf.matmul(style.root, whiten)
    shape = tf.shape(features)
    flat = tf.reshape(features, [-1, shape[-1]])
    coloured = tf.matmul(flat - mean[None, :], transform, transpose_b=True)
    # The style's mean is added after the product is scaled, not to the product: TensorFlow.js would
    # fuse that matmul and add, and its WebAssembly kernel (4.22) gets a fused bias on a transposed
    # product wrong.
    out = strength * coloured + (strength * style.mean + (1.0 - strength) * flat)
    return tf.reshape(out, shape)
