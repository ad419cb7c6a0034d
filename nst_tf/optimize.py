"""Compiled optimisation steps over the image.

Pure functions, so one implementation serves every driver:
- `loss_and_grad(loss_fn, image)` and each optimiser's `update(image, grad, state, loss) -> (image,
  state)` (Adam ignores the loss; L-BFGS's line search needs it) and `recover(state) -> (state,
  what was done)` after a non-finite step; `make_step` joins them into
  `step(image, state) -> (image, state, loss, terms)` with the image projected back to [0, 1];
- `CompiledStep`: that step as a `tf.function` traced once per image shape, which also says whether
  the loss and the new image are finite. `nst_tf.driver` runs it over a run state in Python; the
  SavedModel export runs the same pure step in a `tf.while_loop`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf

from nst_tf.errors import NstError


# The loss is differentiated at this magnitude (see `loss_and_grad`). Measured on VGG19 at 64 px,
# float16 gradient error against float32: scaled to 1, 100% (underflow); to 256, 2.9%; to 4096
# and 65536, 2.8%; unscaled, overflow (inf).
LOSS_SCALE = 2.0**12


def per_image(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A scalar, or a `[B]` vector of per-image values, shaped to broadcast against `like`
    (`[B, ...]`)."""
    if values.shape.rank == 0:
        return values
    return tf.reshape(values, [-1] + [1] * (like.shape.rank - 1))


def loss_and_grad(loss_fn: Callable, image: tf.Tensor):
    """`(loss, terms, d loss / d image)` for `loss_fn(image) -> (loss, terms)`.

    The loss is a scalar or, for a batch optimised as independent images, a `[B]` vector: the
    gradient of each image is then that of its own loss (the vector's sum).
    The tape differentiates each loss rescaled to `LOSS_SCALE` (by its own value, held constant)
    and the gradient is scaled back: style losses reach 1e9, whose gradients overflow float16
    activations (65504 at most) on the way back through the network, while scaling to 1 makes
    them underflow. In float32 the rescaling changes the gradient by rounding only.
    """
    with tf.GradientTape() as tape:
        tape.watch(image)
        loss, terms = loss_fn(image)
        scale = tf.stop_gradient(tf.maximum(tf.abs(loss), tf.constant(1e-30, loss.dtype)) / LOSS_SCALE)
        scaled_loss = tf.reduce_sum(loss / scale)
    grad = tape.gradient(scaled_loss, image)
    return loss, terms, grad * per_image(tf.cast(scale, grad.dtype), grad)


class AdamState(NamedTuple):
    m: tf.Tensor  # first moment, the image's shape
    v: tf.Tensor  # second moment, the image's shape
    t: tf.Tensor  # steps taken, float32 scalar


class Adam:
    """Adam with Keras' update rule (epsilon added to sqrt(v), bias correction folded into the rate),
    so results match `keras.optimizers.Adam` step for step. Elementwise, so a batch's images
    are optimised independently."""

    def __init__(self, learning_rate=0.02, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon

    def recover(self, state):
        """After a non-finite step, from the last good `state`: halve the learning rate (which must
        be a `tf.Variable`, for a compiled step to see the change); `(state, what was done)`."""
        if not isinstance(self.learning_rate, tf.Variable):
            raise TypeError("Adam.recover needs the learning rate in a tf.Variable")
        self.learning_rate.assign(self.learning_rate * 0.5)
        return state, f"halved the learning rate to {float(self.learning_rate.numpy()):.3g}"

    def init(self, image: tf.Tensor) -> AdamState:
        zeros = tf.zeros_like(image)
        return AdamState(zeros, zeros, tf.zeros((), image.dtype))

    def result(self, image, state: AdamState):
        """The picture a run of these steps gives: Adam's every step is taken, so the current image."""
        return image

    def update(self, image, grad, state: AdamState, loss=None):
        t = state.t + 1.0
        m = state.m + (grad - state.m) * (1.0 - self.beta_1)
        v = state.v + (tf.square(grad) - state.v) * (1.0 - self.beta_2)
        alpha = self.learning_rate * tf.sqrt(1.0 - tf.pow(self.beta_2, t)) / (1.0 - tf.pow(self.beta_1, t))
        return image - alpha * m / (tf.sqrt(v) + self.epsilon), AdamState(m, v, t)


class LbfgsState(NamedTuple):
    """Per image of the batch `[B, ...]` (the first axis of the image is the batch)."""

    s: tf.Tensor  # [B, memory, n] accepted steps x_{k+1} - x_k, flattened (a ring buffer per image)
    y: tf.Tensor  # [B, memory, n] gradient changes g_{k+1} - g_k
    rho: tf.Tensor  # [B, memory] 1 / (y . s); 0 marks an empty slot
    pairs: tf.Tensor  # int32 [B]: pairs stored so far (the next slot is pairs % memory)
    x: tf.Tensor  # the last accepted point (the image's shape)
    g: tf.Tensor  # the gradient there
    f: tf.Tensor  # [B] the loss there
    d: tf.Tensor  # the search direction from x
    t: tf.Tensor  # [B] the step length being tried along d
    started: tf.Tensor  # bool scalar: x, g, f hold an evaluated point


def _flat(x: tf.Tensor) -> tf.Tensor:
    """`[B, ...]` as `[B, n]` (static shapes where known: XLA would otherwise trace tf.shape back
    through the whole network)."""
    if x.shape.is_fully_defined():
        return tf.reshape(x, [x.shape[0], x.shape.num_elements() // x.shape[0]])
    return tf.reshape(x, tf.stack([tf.shape(x)[0], -1]))


def _dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per-image dot products of two `[B, n]` tensors: `[B]`."""
    return tf.einsum("bn,bn->b", a, b)


def _row(buffer: tf.Tensor, j: tf.Tensor) -> tf.Tensor:
    """`buffer[b, j[b]]` for each image b. Read with tf.gather: an indexing slice would make XLA
    try to prove the index constant, tracing it back through the whole network (minutes of
    compile time)."""
    return tf.gather(buffer, j, axis=1, batch_dims=1)


class Lbfgs:
    """L-BFGS with a backtracking (Armijo) line search, one loss evaluation per `update`.

    The line search is unrolled into the state, so each call is one function evaluation and the
    same pure `update(image, grad, state, loss)` runs under the `tf.Variable` loop and a
    `tf.while_loop`. The image passed in is the last trial point; if it decreased the loss enough (Armijo,
    c1 = 1e-4) it is accepted, the (s, y) pair joins the history and the two-loop recursion gives
    the next direction, tried at unit step; otherwise the step along the same direction is halved.
    The box [0, 1] is kept by projecting trial points; the curvature pair uses the projected step.
    A pair with y . s <= 0 is skipped, and a direction that is not downhill resets the history.
    Each image of a batch (the first axis; `loss` is then a `[B]` vector) has its own history,
    line search and step length, so it follows the same path as it would alone.
    """

    c1 = 1e-4
    max_halvings = 20  # then the point is taken anyway and the history cleared

    def __init__(self, memory: int = 10, bounded: bool = True):
        self.memory, self.bounded = memory, bounded

    def recover(self, state):
        """After a non-finite step, from the last good `state`: forget the history and start again
        from the last accepted point; `(state, what was done)`."""
        state = state._replace(
            rho=tf.zeros_like(state.rho),
            pairs=tf.zeros_like(state.pairs),
            started=tf.constant(False),
            t=tf.ones_like(state.t),
        )
        return state, "cleared the L-BFGS history"

    def result(self, image, state: LbfgsState):
        """The picture a run of these steps gives: the last accepted point (the lowest loss evaluated),
        not the trial point the line search would try next, which may be far worse (a run stopped by
        its step count, a deadline or a signal in the middle of a line search)."""
        return tf.where(state.started, state.x, image)

    def init(self, image: tf.Tensor) -> LbfgsState:
        flat = _flat(image)
        batch = tf.shape(flat)[0]
        buffer = tf.zeros(tf.stack([batch, self.memory, tf.shape(flat)[1]]), image.dtype)
        zeros, vector = tf.zeros_like(image), tf.zeros(tf.stack([batch]), image.dtype)
        return LbfgsState(
            buffer,
            buffer,
            tf.zeros(tf.stack([batch, self.memory]), image.dtype),
            tf.zeros(tf.stack([batch]), tf.int32),
            zeros,
            zeros,
            vector,
            zeros,
            vector + 1.0,
            tf.constant(False),
        )

    def direction(self, grad, state: LbfgsState):
        """The two-loop recursion: `-H grad` for each image's inverse Hessian estimate `H`.

        Written as `tf.while_loop`s over the ring buffer (empty slots have rho = 0 and change
        nothing), so the graph, and XLA's compile time, do not grow with the memory. One
        iteration at a time: each needs the last one's result anyway, and TensorFlow's default
        (10 in flight) gathers ten history rows at once, image-sized each (measured on a
        4096x2744 image, memory 10: 12.7 GiB peak against 8.5 GiB one at a time).
        """
        m = self.memory
        slot = lambda i: tf.math.floormod(state.pairs - 1 - i, m)  # [B]; i = 0 is the newest pair

        def newest_first(i, q, alphas):
            j = slot(i)
            alpha = _row(state.rho, j) * _dot(_row(state.s, j), q)
            return (
                i + 1,
                q - alpha[:, None] * _row(state.y, j),
                alphas + tf.one_hot(i, m, dtype=q.dtype) * alpha[:, None],
            )

        q0 = _flat(grad)
        _, q, alphas = tf.while_loop(
            lambda i, q, a: i < m,
            newest_first,
            (tf.constant(0), q0, tf.zeros_like(state.rho)),
            parallel_iterations=1,
        )
        newest = slot(0)
        s_new, y_new = _row(state.s, newest), _row(state.y, newest)
        yy = _dot(y_new, y_new)
        gamma = tf.where((state.pairs > 0) & (yy > 0), _dot(s_new, y_new) / tf.maximum(yy, 1e-30), 1.0)

        def oldest_first(i, r):
            j = slot(i)
            beta = _row(state.rho, j) * _dot(_row(state.y, j), r)
            return i - 1, r + (tf.gather(alphas, i, axis=1) - beta)[:, None] * _row(state.s, j)

        _, r = tf.while_loop(
            lambda i, r: i >= 0, oldest_first, (tf.constant(m - 1), gamma[:, None] * q), parallel_iterations=1
        )
        shape = grad.shape if grad.shape.is_fully_defined() else tf.shape(grad)
        return -tf.reshape(r, shape)

    def update(self, image, grad, state: LbfgsState, loss):
        # Both outcomes are computed and selected, rather than branched on with tf.cond: the
        # two-loop recursion costs a few dot products, far below the network's gradient.
        loss = tf.broadcast_to(tf.reshape(tf.cast(loss, image.dtype), [-1]), tf.shape(state.f))
        each = lambda v: per_image(v, image)  # noqa: E731  a [B] value against the image
        if self.bounded:
            # Pixels held at 0 or 1 whose gradient pushes them further out cannot move: leave
            # them out of the curvature pairs and the direction (L-BFGS-B's active set).
            pinned = ((image <= 0.0) & (grad > 0)) | ((image >= 1.0) & (grad < 0))
            grad = tf.where(pinned, tf.zeros_like(grad), grad)
        s_flat, y_flat = _flat(image - state.x), _flat(grad - state.g)
        armijo = loss <= state.f + self.c1 * _dot(_flat(state.g), s_flat)
        give_up = state.started & ~armijo & (state.t < 0.5**self.max_halvings)
        accept = ~state.started | armijo | give_up

        # On acceptance: store the pair (if it has positive curvature) in one row of the ring.
        ys = _dot(y_flat, s_flat)
        keep = accept & state.started & ~give_up & (ys > 1e-10 * tf.norm(y_flat, axis=1) * tf.norm(s_flat, axis=1))
        j = tf.math.floormod(state.pairs, self.memory)
        rows = tf.stack([tf.range(tf.shape(j)[0]), j], axis=1)  # [B, 2]: (image, slot)
        kept = lambda new, old: tf.where(keep[:, None], new, _row(old, j))  # noqa: E731
        history = state._replace(
            s=tf.tensor_scatter_nd_update(state.s, rows, kept(s_flat, state.s)),
            y=tf.tensor_scatter_nd_update(state.y, rows, kept(y_flat, state.y)),
            rho=tf.tensor_scatter_nd_update(
                state.rho, rows, tf.where(keep, 1.0 / tf.where(keep, ys, 1.0), _row(state.rho, j))
            ),
            pairs=state.pairs + tf.cast(keep, tf.int32),
        )
        # A failed line search clears that image's history (rho = 0 marks a slot empty).
        history = history._replace(
            rho=tf.where(give_up[:, None], tf.zeros_like(history.rho), history.rho),
            pairs=tf.where(give_up, 0, history.pairs),
        )
        d = self.direction(grad, history)
        downhill = _dot(_flat(d), _flat(grad)) < 0
        d = tf.where(each(downhill), d, -grad)
        # A steepest-descent step (the first, or after a reset) moves about one unit in total
        # (torch.optim.LBFGS's rule); a quasi-Newton step starts at length 1.
        steepest = (history.pairs == 0) | ~downhill
        t_new = tf.where(steepest, tf.minimum(1.0, 1.0 / (tf.reduce_sum(tf.abs(_flat(grad)), axis=1) + 1e-30)), 1.0)

        state = LbfgsState(
            s=history.s,
            y=history.y,
            rho=history.rho,
            pairs=history.pairs,
            x=tf.where(each(accept), image, state.x),
            g=tf.where(each(accept), grad, state.g),
            f=tf.where(accept, loss, state.f),
            d=tf.where(each(accept), d, state.d),
            t=tf.where(accept, tf.cast(t_new, image.dtype), state.t * 0.5),
            started=tf.constant(True),
        )
        return state.x + each(state.t) * state.d, state


def make_optimizer(opt, variable_rate: bool = False):
    """The optimiser the optimisation options `opt` (`config.Optimisation`) name; `variable_rate`
    holds Adam's learning rate in a `tf.Variable` (so `recover` can change it under a compiled step)."""
    if opt.optimizer == "adam":
        rate = tf.Variable(opt.learning_rate, trainable=False, dtype=tf.float32) if variable_rate else opt.learning_rate
        return Adam(rate, opt.beta_1, opt.beta_2, opt.epsilon)
    if opt.optimizer == "lbfgs":
        return Lbfgs(opt.lbfgs_memory)
    raise NstError(f"unknown optimizer {opt.optimizer!r}")


def make_step(loss_fn: Callable, optimizer) -> Callable:
    """The pure step: `(image, state) -> (image in [0, 1], state, loss before the update, terms)`."""
    update = make_update(optimizer)

    def step(image, state):
        loss, terms, grad = loss_and_grad(loss_fn, image)
        return update(image, state, grad, loss, terms)

    return step


def make_update(optimizer) -> Callable:
    """The step's second half, for a loss and gradient computed elsewhere (`nst_tf.tiling`):
    `(image, state, grad, loss, terms) -> (image in [0, 1], state, loss, terms)`."""

    def update(image, state, grad, loss, terms):
        image, state = optimizer.update(image, grad, state, loss)
        return tf.clip_by_value(image, 0.0, 1.0), state, loss, terms

    return update


class CompiledStep:
    """A pure step compiled once per image shape: `(image, state, *args) -> (image, state, loss,
    terms, finite)`, where `finite` (a bool tensor) says whether the loss and the new image are
    finite; `args` are passed to the step (a replica's own content targets, for example).

    `trace_count` counts how often the step was traced; it should stay 1 for a fixed shape.
    jit_compile: compile the step with XLA (`nst_tf.autotune` chooses for "auto").
    """

    def __init__(self, step: Callable, jit_compile: bool = False):
        self._step = step
        self.trace_count = 0
        self.jit_compile = jit_compile
        self._compiled = tf.function(self._traced, jit_compile=jit_compile, autograph=False)

    def _traced(self, image, state, *args):
        self.trace_count += 1  # Python side effect: runs at trace time only
        image, state, loss, terms = self._step(image, state, *args)
        finite = tf.reduce_all(tf.math.is_finite(loss)) & tf.reduce_all(tf.math.is_finite(image))
        return image, state, loss, terms, finite

    def __call__(self, image, state, *args):
        return self._compiled(image, state, *args)
