"""Compiled optimisation steps over the image.

Two layers, so one implementation serves two drivers:
- pure functions: `loss_and_grad(loss_fn, image)` and each optimiser's
  `update(image, grad, state) -> (image, state)`; `make_step` joins them into
  `step(image, state) -> (image, state, loss, terms)` with the image projected back to [0, 1];
- `VariableLoop`: holds the image and optimiser state in `tf.Variable`s and runs the step as a
  `tf.function` traced once per image shape. A graph driver (serving) can run the same pure step
  in a `tf.while_loop` instead.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf

from nst_tf.errors import NstError


def loss_and_grad(loss_fn: Callable, image: tf.Tensor):
    """`(loss, terms, d loss / d image)` for `loss_fn(image) -> (loss, terms)`."""
    with tf.GradientTape() as tape:
        tape.watch(image)
        loss, terms = loss_fn(image)
    return loss, terms, tape.gradient(loss, image)


class AdamState(NamedTuple):
    m: tf.Tensor  # first moment, the image's shape
    v: tf.Tensor  # second moment, the image's shape
    t: tf.Tensor  # steps taken, float32 scalar


class Adam:
    """Adam with Keras' update rule (epsilon added to sqrt(v), bias correction folded into the rate),
    so results match `keras.optimizers.Adam` step for step."""

    def __init__(self, learning_rate=0.02, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon

    def init(self, image: tf.Tensor) -> AdamState:
        zeros = tf.zeros_like(image)
        return AdamState(zeros, zeros, tf.constant(0.0))

    def update(self, image, grad, state: AdamState):
        t = state.t + 1.0
        m = state.m + (grad - state.m) * (1.0 - self.beta_1)
        v = state.v + (tf.square(grad) - state.v) * (1.0 - self.beta_2)
        alpha = self.learning_rate * tf.sqrt(1.0 - tf.pow(self.beta_2, t)) / (1.0 - tf.pow(self.beta_1, t))
        return image - alpha * m / (tf.sqrt(v) + self.epsilon), AdamState(m, v, t)


def make_optimizer(cfg):
    if cfg.optimizer == "adam":
        return Adam(cfg.learning_rate, cfg.beta_1, cfg.beta_2, cfg.epsilon)
    raise NstError(f"unknown optimizer {cfg.optimizer!r}")


def make_step(loss_fn: Callable, optimizer) -> Callable:
    """The pure step: `(image, state) -> (image in [0, 1], state, loss before the update, terms)`."""

    def step(image, state):
        loss, terms, grad = loss_and_grad(loss_fn, image)
        image, state = optimizer.update(image, grad, state)
        return tf.clip_by_value(image, 0.0, 1.0), state, loss, terms

    return step


class VariableLoop:
    """Runs a pure step on `tf.Variable`s: the image and the optimiser state live across calls.

    `trace_count` counts how often the step was traced; it should stay 1 for a fixed shape.
    """

    def __init__(self, step: Callable, image: tf.Tensor, state):
        self._step = step
        self.image = tf.Variable(image, trainable=False, name="image")
        self.state = tf.nest.map_structure(lambda s: tf.Variable(s, trainable=False), state)
        self.trace_count = 0
        self._compiled = tf.function(self._assign_step)

    def _assign_step(self):
        self.trace_count += 1  # Python side effect: runs at trace time only
        state = tf.nest.map_structure(lambda v: v.read_value(), self.state)
        image, state, loss, terms = self._step(self.image.read_value(), state)
        self.image.assign(image)
        tf.nest.map_structure(lambda var, value: var.assign(value), self.state, state)
        return loss, terms

    def __call__(self):
        """One step; returns `(loss, terms)` of the image before the update."""
        return self._compiled()
