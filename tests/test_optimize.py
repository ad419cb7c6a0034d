"""The optimisers and precisions against independent references: Rosenbrock, SciPy's L-BFGS-B,
Adam, and the float32 gradient."""

import numpy as np
import pytest
import tensorflow as tf

import nst_tf
from nst_tf import features, losses, optimize


def rosenbrock(x):
    return tf.reduce_sum(100.0 * tf.square(x[1:] - tf.square(x[:-1])) + tf.square(1.0 - x[:-1])), {}


def losses_of(optimizer, loss_fn, x0, evaluations):
    """The loss at each of `evaluations` pure steps (no clipping: unconstrained), on `x0` as a
    batch of one (the optimisers' first axis is the batch)."""
    x = tf.constant(np.asarray(x0)[None])
    state, seen = optimizer.init(x), []
    for _ in range(evaluations):
        loss, _, grad = optimize.loss_and_grad(lambda x: loss_fn(x[0]), x)
        seen.append(float(loss))
        x, state = optimizer.update(x, grad, state, loss)
    return seen


@pytest.mark.slow
def test_lbfgs_solves_rosenbrock_where_adam_does_not():
    x0 = np.array([-1.2, 1.0, -1.2, 1.0])  # float64: the classic start
    lbfgs = losses_of(optimize.Lbfgs(memory=5), rosenbrock, x0, 100)
    assert lbfgs[0] == pytest.approx(532.4)  # f(x0)
    assert lbfgs[-1] < 1e-12  # measured 5e-30
    best_adam = min(
        losses_of(optimize.Adam(lr, epsilon=1e-8), rosenbrock, x0, 100)[-1] for lr in (0.01, 0.03, 0.1, 0.3)
    )
    assert best_adam > 1.0  # measured 2.25 at the best rate
    assert min(lbfgs) == lbfgs[-1]


def test_lbfgs_memory_is_a_ring():
    """More steps than the memory holds: the oldest pairs are overwritten, results stay finite
    and the loss keeps falling on a quadratic."""
    scales = tf.constant(np.linspace(1.0, 50.0, 20))
    quadratic = lambda x: (tf.reduce_sum(scales * tf.square(x - 0.5)), {})  # noqa: E731
    seen = losses_of(optimize.Lbfgs(memory=3), quadratic, np.zeros(20), 60)
    assert np.isfinite(seen).all() and seen[-1] < 1e-8 * seen[0]


@pytest.fixture(scope="module")
def tiny_transfer(vgg19, small_pair):
    """A 32 px problem from noise, so there is a long way to go."""
    content, style = small_pair

    def make(**options):
        return nst_tf.StyleTransfer(
            content,
            style,
            **{
                "size": 32,
                "model": vgg19,
                "init": "noise",
                "jit": "off",
                "precision": "float32",
                "loss_norm": "mean",
                "content_layers": ("block5_conv2",),
                "content_weight": 1e4,
                "style_weight": 1e-2,
                "tv_weight": 30.0,
                **options,
            },
        )

    return make


@pytest.mark.slow
def test_lbfgs_matches_scipy_and_beats_adam_on_a_style_problem(tiny_transfer):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    evaluations = 40
    ours = tiny_transfer(optimizer="lbfgs", lbfgs_memory=10)
    ours.run(evaluations)
    adam = tiny_transfer(optimizer="adam")  # the default Adam settings
    adam.run(evaluations)

    ref = tiny_transfer()
    shape = (1,) + ref.image.shape
    grad_fn = tf.function(lambda image: optimize.loss_and_grad(ref.loss_fn, image))

    def value_and_grad(v):
        loss, _, grad = grad_fn(tf.constant(v.reshape(shape), tf.float32))
        return float(tf.reduce_sum(loss)), grad.numpy().ravel().astype(np.float64)

    x0 = ref.image.ravel().astype(np.float64)
    start = value_and_grad(x0)[0]
    scipy = scipy_optimize.minimize(
        value_and_grad,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0, 1)] * x0.size,
        options={"maxfun": evaluations, "maxcor": 10},
    )
    lbfgs_loss, adam_loss = ours.evaluate()[0], adam.evaluate()[0]
    # Measured (mean-squared losses): start 3.86e9, ours 6.69e8, SciPy 6.70e8, Adam 6.95e8.
    assert lbfgs_loss < 0.25 * start
    assert lbfgs_loss <= 1.03 * scipy.fun, (lbfgs_loss, scipy.fun)
    assert lbfgs_loss < adam_loss, (lbfgs_loss, adam_loss)


@pytest.mark.parametrize(
    "precision, bound",
    [
        pytest.param("bfloat16", 0.12, marks=pytest.mark.bfloat16),
        pytest.param("float16", 0.06, marks=pytest.mark.float16),
    ],
)
def test_reduced_precision_gradient_agrees_with_float32(embedded_weights, small_pair, rng, precision, bound):
    """Measured at 64 px: bfloat16 gradient error 6.2% (cosine 0.998), float16 2.8% (0.9996)."""
    content, style = (tf.constant(a[None]) for a in small_pair)
    image = tf.constant(np.clip(small_pair[0] + rng.normal(0, 0.1, small_pair[0].shape), 0, 1)[None], tf.float32)
    cfg = nst_tf.Config()
    layers = list(cfg.content_layers) + list(cfg.style_layers)
    results = {}
    for p in ("float32", precision):
        model = features.build_feature_model(layers, layer_weights=embedded_weights, precision=p)
        targets = losses.compute_targets(model, content, style, cfg)
        loss, terms, grad = optimize.loss_and_grad(lambda x: losses.objective(model, targets, cfg, x), image)
        assert grad.dtype == tf.float32 and loss.dtype == tf.float32  # losses and image stay float32
        results[p] = float(loss), grad.numpy()
    (loss32, g32), (loss_low, g_low) = results["float32"], results[precision]
    assert abs(loss_low / loss32 - 1) < 0.03
    assert np.linalg.norm(g_low - g32) / np.linalg.norm(g32) < bound
    assert np.sum(g_low * g32) / np.linalg.norm(g_low) / np.linalg.norm(g32) > 0.99


@pytest.mark.bfloat16
def test_reduced_precision_model_computes_in_it(embedded_weights):
    model = features.build_feature_model(["block1_conv1"], layer_weights=embedded_weights, precision="bfloat16")
    out = model(tf.zeros([1, 8, 8, 3]))["block1_conv1"]
    assert out.dtype == tf.bfloat16
    assert all(w.dtype == "float32" for w in model.weights)  # mixed: float32 weights


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_xla_step_agrees_and_traces_once(tiny_transfer, optimizer):
    """The XLA-compiled step and the plain one, each taken from the same state at every step of one
    trajectory (the plain run's), so rounding differences are never carried from step to step:
    two independent trajectories part wherever an L-BFGS line search's comparison falls the other
    way, which depends on the CPU's kernels (on AVX2 kernels a 15-step run parted by 2%).

    Tolerances from the computation: XLA fuses and reorders float32 sums, so the loss (a sum over
    ~1e5 terms) agrees to ~1e-5 relative, far inside 1e-4; a new image agrees to float32 rounding
    of the update (1e-5 in [0, 1]) except where an elementwise decision (Adam's clip to [0, 1],
    L-BFGS's accept/shrink) flips, which moves a pixel by at most one step. So the median
    difference is held to 1e-5 and, for Adam, the largest to its longest step, 3.2 x the learning
    rate (Kingma and Ba, 2.1); an L-BFGS step has no such bound."""
    plain, xla = tiny_transfer(optimizer=optimizer), tiny_transfer(optimizer=optimizer, jit="on")
    image, state = plain.state.image, plain.state.opt_state
    longest = 3.2 * plain.config.learning_rate if optimizer == "adam" else 1.0
    seen = []
    for _ in range(15):
        new_plain, state_plain, loss_plain, _, _ = plain.compiled(image, state)
        new_xla, _, loss_xla, _, _ = xla.compiled(image, state)
        np.testing.assert_allclose(loss_xla.numpy(), loss_plain.numpy(), rtol=1e-4)
        difference = np.abs(new_xla.numpy() - new_plain.numpy())
        assert np.median(difference) <= 1e-5 and difference.max() <= longest, (np.median(difference), difference.max())
        image, state = new_plain, state_plain
        seen.append(float(np.sum(loss_plain.numpy())))
    assert seen[-1] < 0.9 * seen[0]  # the trajectory went somewhere
    assert xla.compiled.trace_count == 1 and plain.compiled.trace_count == 1


@pytest.mark.parametrize("steps", [3, 7, 12])
def test_a_run_gives_lbfgs_last_accepted_point_never_a_line_search_trial(tiny_transfer, steps):
    """Stopped after any number of loss evaluations (a step count, a deadline, a signal), an L-BFGS
    run's picture is its last accepted point: the lowest loss it evaluated, not the untried (or
    rejected) trial its line search holds (found on a held-out pair: a deadline in the middle of a
    line search wrote a picture with 60x the style error)."""
    run = tiny_transfer(optimizer="lbfgs", init="noise")
    seen = nst_tf.History()
    run.run(steps, callbacks=[seen])
    state = run.state.opt_state
    np.testing.assert_array_equal(run.images, state.x.numpy())
    assert run.evaluate()[0] == pytest.approx(float(state.f[0]), rel=1e-5)
    assert run.evaluate()[0] <= min(seen.losses) * (1 + 1e-5)  # no evaluated point was better
