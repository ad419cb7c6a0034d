"""The temporal loss of Ruder et al. (GCPR 2016): a painted frame held to the previous paintings,
warped into it by the flow, where the flow is reliable.

For frame t, with earlier paintings warped into it (`w_j`, j frames back) and their reliability masks
(`c_j`, `nst_tf.flow.between`), the loss is

    sum_j  mean_over_pixels( c_long_j * |x - w_j|^2 )          (RGB in [0, 1], summed over channels)

Short-term consistency is j = 1 alone. Long-term consistency (their section 3.3) adds earlier frames,
each only where no nearer one is reliable: c_long_j = max(c_j - sum_{k < j} c_k, 0), so a region
hidden in the last frame and seen two frames back is held to that one. Pure tensor functions, like
`nst_tf.losses`: per image `[B]`, a gradient of zero wherever every mask is zero.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


def long_term_weights(masks: Sequence[np.ndarray]) -> list:
    """Ruder et al.'s long-term weights from masks ordered nearest first: each earlier frame counts
    only where no nearer one is reliable (float32 arrays, the masks' shape)."""
    out, covered = [], np.zeros_like(np.asarray(masks[0], np.float32))
    for mask in masks:
        mask = np.asarray(mask, np.float32)
        out.append(np.maximum(mask - covered, 0.0))
        covered = covered + mask
    return out


def temporal_loss(image: tf.Tensor, warped: Sequence, weights: Sequence) -> tf.Tensor:
    """`[B]`: for `image` `[B, H, W, 3]`, the sum over earlier paintings (`warped`, each `[B, H, W, 3]`
    or `[H, W, 3]`) of the mean over pixels of `weight * |image - warped|^2` (each weight `[H, W]`
    or `[B, H, W]`, e.g. `long_term_weights`)."""
    total = tf.zeros(tf.shape(image)[:1], tf.float32)
    for previous, weight in zip(warped, weights):
        previous = tf.convert_to_tensor(previous, tf.float32)
        weight = tf.convert_to_tensor(weight, tf.float32)
        squared = tf.reduce_sum(tf.square(image - previous), axis=-1)  # [B, H, W]
        total += tf.reduce_mean(weight * squared, axis=[1, 2])
    return total


class TemporalTerm:
    """`temporal_loss` as a term of the objective (`nst_tf.painters.paint(terms=[...])`):
    `term(image) -> (loss [B], {"temporal": [B]})`, `weight` times the loss against the earlier
    paintings and weights it holds in variables, so that one traced step serves every frame of a
    clip: `update` assigns the next frame's (as many as the term was made with, each of its shape)."""

    def __init__(self, weight: float, warped: Sequence[np.ndarray], weights: Sequence[np.ndarray]):
        self.weight = weight
        self.warped = [tf.Variable(w, trainable=False, dtype=tf.float32) for w in warped]
        self.weights = [tf.Variable(w, trainable=False, dtype=tf.float32) for w in weights]

    def update(self, warped: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> None:
        for held, value in zip(self.warped + self.weights, list(warped) + list(weights)):
            held.assign(value)

    def __call__(self, image: tf.Tensor):
        loss = self.weight * temporal_loss(image, self.warped, self.weights)
        return loss, {"temporal": loss}
