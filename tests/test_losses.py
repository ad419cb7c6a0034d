"""Loss terms against independent NumPy references, and the gradient against finite differences."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import losses

from conftest import content_of, gram_of
from nst_tf.config import Config


def np_gram(f, norm):
    b, h, w, c = f.shape
    flat = f.reshape(b, h * w, c).astype(np.float64)
    g = np.einsum("bnc,bnd->bcd", flat, flat) / (h * w)
    return g / c if norm == "chw" else g


def np_tv(x):
    """Per image, like every term in `losses`."""
    return np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum(axis=(1, 2, 3))


@pytest.mark.parametrize("norm", ["hw", "chw"])
def test_gram_matches_numpy(rng, norm):
    f = rng.normal(size=(2, 5, 7, 6)).astype(np.float32)
    np.testing.assert_allclose(gram_of(tf.constant(f), norm).numpy(), np_gram(f, norm), rtol=1e-5, atol=1e-6)


def test_gram_rejects_unknown_norm(rng):
    with pytest.raises(ValueError):
        gram_of(tf.zeros((1, 2, 2, 3)), "bogus")


@pytest.mark.parametrize("weighted", [False, True])
def test_second_moment_gradient_is_the_analytic_one(rng, weighted):
    """The hand-written gradient of `second_moment` against NumPy's d/dx of sum(A * G) for an
    asymmetric A (so both halves of dG + dG^T count), with and without position weights."""
    x = rng.normal(size=(2, 9, 4))
    a = rng.normal(size=(2, 4, 4))
    w = rng.uniform(0, 1, size=(1, 9)) if weighted else np.ones((1, 9))
    xt = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        g = losses.second_moment(xt, tf.constant(w) if weighted else None)
        loss = tf.reduce_sum(tf.constant(a) * g)
    np.testing.assert_allclose(g.numpy(), np.einsum("bnc,bn,bnd->bcd", x, np.broadcast_to(w, (2, 9)), x), rtol=1e-12)
    # d/dx_n sum_cd A_cd sum_m w_m x_mc x_md = w_n (A + A^T) x_n
    expected = w[..., None] * np.einsum("bnd,bcd->bnc", x, a + np.swapaxes(a, 1, 2))
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), expected, rtol=1e-12)


def test_content_loss_is_mean_over_layers_of_mse(rng):
    a = {"x": rng.normal(size=(1, 4, 4, 3)), "y": rng.normal(size=(1, 2, 3, 8))}
    b = {"x": rng.normal(size=(1, 4, 4, 3)), "y": rng.normal(size=(1, 2, 3, 8))}
    expected = np.mean([np.mean((a[k] - b[k]) ** 2) for k in "xy"])
    got = content_of(
        {k: tf.constant(v, tf.float32) for k, v in a.items()}, {k: tf.constant(v, tf.float32) for k, v in b.items()}
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_style_loss_weights_layers(rng):
    g = {k: rng.normal(size=(1, 4, 4)) for k in ("a", "b", "c")}
    t = {k: rng.normal(size=(1, 4, 4)) for k in ("a", "b", "c")}
    per_layer = {k: losses.layer_error(tf.constant(g[k], tf.float32), tf.constant(t[k], tf.float32)) for k in g}
    for k in g:
        np.testing.assert_allclose(per_layer[k].numpy(), np.mean((g[k] - t[k]) ** 2), rtol=1e-5)
    weights = (0.5, 0.3, 0.2)
    expected = sum(w * np.mean((g[k] - t[k]) ** 2) for w, k in zip(weights, "abc"))
    np.testing.assert_allclose(losses.style_loss(per_layer, weights).numpy(), expected, rtol=1e-5)


def test_total_variation_matches_numpy(rng):
    x = rng.uniform(size=(2, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.total_variation(tf.constant(x)).numpy(), np_tv(x), rtol=1e-5)
    assert losses.total_variation(tf.ones((1, 4, 4, 3))).numpy().tolist() == [0.0]


def test_squared_total_variation_matches_numpy(rng):
    x = rng.uniform(size=(2, 6, 5, 3)).astype(np.float32)
    expected = 0.5 * (
        np.square(np.diff(x, axis=1)).sum(axis=(1, 2, 3)) + np.square(np.diff(x, axis=2)).sum(axis=(1, 2, 3))
    )
    np.testing.assert_allclose(losses.total_variation(tf.constant(x), "squared").numpy(), expected, rtol=1e-5)


def test_relative_layer_error_is_scale_free(rng):
    x, t = rng.normal(size=(1, 3, 4, 5)), rng.normal(size=(1, 3, 4, 5))
    expected = np.sum((x - t) ** 2) / np.sum(t**2)
    for scale in (1.0, 1e3):
        got = losses.layer_error(tf.constant(scale * x), tf.constant(scale * t), "relative")
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(
        content_of({"a": tf.constant(x)}, {"a": tf.constant(t)}, "relative").numpy(), expected, rtol=1e-9
    )


def test_objective_composes_terms_with_weights(vgg19, small_pair):
    content, style = (tf.constant(x[None]) for x in small_pair)
    cfg = Config(
        content_layers=("block5_conv2",),
        loss_norm="mean",
        content_weight=3.0,
        style_weight=5.0,
        tv_weight=7.0,
        style_layer_weights=(1, 2, 3, 4, 0),
    )
    targets = losses.compute_targets(vgg19, content, style, cfg)
    image = tf.constant(np.clip(small_pair[0][None] + 0.1, 0, 1))
    total, terms = losses.objective(vgg19, targets, cfg, image)
    feats = {k: v.numpy() for k, v in vgg19(image).items()}
    sfeats = {k: v.numpy() for k, v in vgg19(style).items()}
    cfeats = vgg19(content)["block5_conv2"].numpy()
    content_ref = np.mean((feats["block5_conv2"] - cfeats) ** 2)
    per_layer = [np.mean((np_gram(feats[n], "hw") - np_gram(sfeats[n], "hw")) ** 2) for n in cfg.style_layers]
    style_ref = np.dot(np.array([1, 2, 3, 4, 0]) / 10.0, per_layer)
    tv_ref = np_tv(image.numpy())
    np.testing.assert_allclose(terms["content"].numpy(), content_ref, rtol=1e-4)
    np.testing.assert_allclose(terms["style"].numpy(), style_ref, rtol=1e-3)
    np.testing.assert_allclose(terms["tv"].numpy(), tv_ref, rtol=1e-5)
    np.testing.assert_allclose(total.numpy(), 3 * content_ref + 5 * style_ref + 7 * tv_ref, rtol=1e-3)


@pytest.fixture
def float64_vgg19(embedded_weights):
    """The feature model in float64, so finite differences resolve the loss."""
    import keras

    from nst_tf import features

    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield features.build_feature_model(
            list(Config().content_layers) + list(Config().style_layers), layer_weights=embedded_weights
        )
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


def test_gradient_matches_finite_differences(float64_vgg19, rng):
    """Directional derivatives of the default objective (real weights, 32 px, float64) against
    central differences."""
    from nst_tf.optimize import loss_and_grad

    model = float64_vgg19
    content, style, x = (tf.constant(rng.uniform(0.1, 0.9, size=(1, 32, 32, 3))) for _ in range(3))
    cfg = Config(tv_weight=0.0)  # |.| has kinks: TV's gradient is checked on its own below
    targets = losses.compute_targets(model, content, style, cfg)
    f = lambda img: losses.objective(model, targets, cfg, img)  # noqa: E731
    loss, terms, grad = loss_and_grad(f, x)
    assert loss.dtype == tf.float64 and grad.dtype == tf.float64
    assert terms["content"] > 0 and terms["style"] > 0
    for _ in range(3):
        d = rng.normal(size=x.shape)
        d /= np.linalg.norm(d)
        eps = 1e-6
        numeric = (float(f(x + eps * d)[0]) - float(f(x - eps * d)[0])) / (2 * eps)
        analytic = float(np.sum(grad.numpy() * d))
        assert analytic == pytest.approx(numeric, rel=1e-5)


def test_tv_gradient_matches_numpy_sign_formula(rng):
    x = rng.uniform(size=(1, 5, 6, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        tv = losses.total_variation(xt)
    g = tape.gradient(tv, xt).numpy()
    ref = np.zeros_like(x)
    dy, dx = np.sign(np.diff(x, axis=1)), np.sign(np.diff(x, axis=2))
    ref[:, 1:] += dy
    ref[:, :-1] -= dy
    ref[:, :, 1:] += dx
    ref[:, :, :-1] -= dx
    np.testing.assert_allclose(g, ref, atol=1e-6)


def test_soft_sqrt_is_the_square_root_above_the_floor_and_smooth_with_a_bounded_slope_below():
    top = 4.0
    floor = losses.W2_FLOOR * top
    lam = tf.constant([[0.0, 1e-3 * floor, 0.5 * floor, floor, 2 * floor, 0.01, top]], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(lam)
        y = losses.soft_sqrt(lam)
    slope = tape.gradient(y, lam).numpy()[0]
    y = y.numpy()[0]
    np.testing.assert_allclose(y[3:], np.sqrt(lam.numpy()[0, 3:]), rtol=1e-12)  # exact from the floor up
    assert y[0] == 0 and np.all(np.diff(y) > 0)  # from 0, increasing
    eps = 1e-9 * floor  # value and slope continuous at the floor
    below, above = losses.soft_sqrt(tf.constant([[floor - eps, top]], tf.float64)).numpy()[0, 0], np.sqrt(floor)
    assert abs(below - above) < 1e-6 * above
    np.testing.assert_allclose(slope[3], 1 / (2 * np.sqrt(floor)), rtol=1e-6)
    np.testing.assert_allclose(slope[0], 3 / (2 * np.sqrt(floor)), rtol=1e-12)  # bounded where sqrt's is not
    assert np.all(np.isfinite(slope)) and slope[1] == pytest.approx(slope[0], rel=2e-3)  # flat across the noise
