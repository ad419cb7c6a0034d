"""Artistic controls: style statistics against NumPy, several styles, masks, colour, pooling, and
the run's reports (TensorBoard, contact sheet, loss plot)."""

import glob
import io
import os

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
from PIL import Image

import nst_tf
from nst_tf import color, config, features, image_io, losses
from nst_tf.callbacks import frame_steps
from nst_tf.config import Config

from conftest import gram_of

KINDS = ("gram", "poly", "gaussian", "meanstd", "w2")


# ---- NumPy references of each statistic's error on position sets: x [n, c] (image), s [m, c] (style).


def np_gram_error(x, s, norm):
    gx, gs = x.T @ x / len(x), s.T @ s / len(s)
    raw = np.mean((gx - gs) ** 2)
    return raw / np.mean(gs**2) if norm == "relative" else raw


def np_poly_error(x, s, norm):
    scale = np.mean(np.sum(s**2, axis=1))
    k = lambda a, b: (a @ b.T / scale + 1.0) ** 2  # noqa: E731  the kernel itself, summed over all pairs
    mmd = k(x, x).mean() + k(s, s).mean() - 2 * k(x, s).mean()
    return mmd / (k(s, s).mean() - 1.0) if norm == "relative" else mmd


def np_meanstd_error(x, s, norm):
    sx, ss = np.sqrt(x.var(axis=0) + losses.STD_EPSILON), np.sqrt(s.var(axis=0) + losses.STD_EPSILON)
    raw = np.sum((x.mean(0) - s.mean(0)) ** 2) + np.sum((sx - ss) ** 2)
    return raw / (np.sum(s.mean(0) ** 2) + np.sum(ss**2)) if norm == "relative" else raw / x.shape[1]


def np_w2_error(x, s, norm):
    cx, cs = np.cov(x, rowvar=False, bias=True), np.cov(s, rowvar=False, bias=True)
    root = scipy.linalg.sqrtm(cs).real
    inner = np.maximum(np.linalg.eigvalsh(root @ cx @ root), 0.0)  # square roots, the quadratic below the floor
    floor = losses.W2_FLOOR * inner.max()
    cross = np.sum(np.where(inner >= floor, np.sqrt(inner), inner / (2 * np.sqrt(floor)) * (3 - inner / floor)))
    raw = np.sum((x.mean(0) - s.mean(0)) ** 2) + np.trace(cx) + np.trace(cs) - 2 * cross
    return raw / (np.sum(s.mean(0) ** 2) + np.trace(cs)) if norm == "relative" else raw / x.shape[1]


def np_gaussian_error(x, s, norm, target):
    """The random-feature MMD with the target's own frequencies (checked against the exact kernel below)."""
    w, b = target["w"].numpy().astype(np.float64), target["b"].numpy().astype(np.float64)
    phi = lambda a: np.sqrt(2.0 / w.shape[1]) * np.cos(a @ w + b)  # noqa: E731
    ex, es = phi(x).mean(0), phi(s).mean(0)
    raw = np.sum((ex - es) ** 2)
    return raw / np.sum(es**2) if norm == "relative" else raw


def np_error(kind, x, s, norm, target):
    if kind == "gaussian":
        return np_gaussian_error(x, s, norm, target)
    return {"gram": np_gram_error, "poly": np_poly_error, "meanstd": np_meanstd_error, "w2": np_w2_error}[kind](
        x, s, norm
    )


def statistic(kind):
    return losses.style_statistic(Config(style_loss=kind))


def relu_features(rng, shape, shift=0.0):
    return np.maximum(rng.normal(shift, 1.0, size=shape), 0.0) + rng.uniform(0, 0.1, size=shape)


@pytest.mark.parametrize("norm", ["mean", "relative"])
@pytest.mark.parametrize("kind", KINDS)
def test_style_statistic_matches_numpy(rng, kind, norm):
    s = relu_features(rng, (1, 7, 6, 5))
    x = relu_features(rng, (1, 5, 8, 5), shift=0.4)
    stat = statistic(kind)
    target = stat.target(tf.constant(s), seed=(3, 4))
    (got,) = stat.error(tf.constant(x), target, norm).numpy()
    expected = np_error(kind, x.reshape(-1, 5), s.reshape(-1, 5), norm, target)
    assert got == pytest.approx(expected, rel=1e-6 if kind != "w2" else 1e-5)
    assert stat.error(tf.constant(s), target, norm).numpy()[0] == pytest.approx(0.0, abs=1e-6 if kind != "w2" else 1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_statistics_are_per_image(rng, kind):
    """A batch's errors are each image's own: a batch of two gives the two single errors."""
    s = relu_features(rng, (1, 6, 5, 4))
    x = np.concatenate([relu_features(rng, (1, 5, 6, 4), shift=0.3), relu_features(rng, (1, 5, 6, 4), shift=0.1)])
    stat = statistic(kind)
    target = stat.target(tf.constant(s), seed=(0, 2))
    both = stat.error(tf.constant(x), target, "relative").numpy()
    alone = [stat.error(tf.constant(x[i : i + 1]), target, "relative").numpy()[0] for i in range(2)]
    assert both.shape == (2,) and both[0] != both[1]
    np.testing.assert_allclose(both, alone, rtol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_a_binary_mask_is_the_statistic_of_the_selected_positions(rng, kind):
    """The masked error equals the NumPy error over only the positions the mask selects."""
    s = relu_features(rng, (1, 6, 6, 4))
    x = relu_features(rng, (1, 6, 7, 4), shift=0.3)
    mask = (rng.uniform(size=(1, 6, 7)) > 0.4).astype(np.float64)
    stat = statistic(kind)
    target = stat.target(tf.constant(s), seed=(0, 1))
    (got,) = stat.error(tf.constant(x), target, "relative", tf.constant(mask)).numpy()
    selected = x.reshape(-1, 4)[mask.reshape(-1) > 0]
    assert got == pytest.approx(np_error(kind, selected, s.reshape(-1, 4), "relative", target), rel=1e-5)


def test_gaussian_random_features_approach_the_exact_kernel(rng):
    """The sampled MMD against the full Gaussian-kernel MMD (bandwidth: the style's mean squared
    distance between positions). Measured on 5 draws: within 10% at 256 features, 2% at 4096."""
    for trial in range(3):
        s = relu_features(rng, (1, 6, 7, 8)).astype(np.float32)
        x = relu_features(rng, (1, 5, 6, 8), shift=0.3).astype(np.float32)
        sf, xf = s.reshape(-1, 8).astype(np.float64), x.reshape(-1, 8).astype(np.float64)
        sigma2 = np.mean(np.sum((sf[:, None] - sf[None]) ** 2, axis=-1))
        k = lambda a, b: np.exp(-np.sum((a[:, None] - b[None]) ** 2, axis=-1) / (2 * sigma2))  # noqa: E731
        exact = k(xf, xf).mean() + k(sf, sf).mean() - 2 * k(xf, sf).mean()
        stat = losses.Gaussian(4096)
        (sampled,) = stat.error(tf.constant(x), stat.target(tf.constant(s), seed=(trial, 0)), "mean").numpy()
        assert sampled == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_statistic_gradients_are_finite_with_fewer_positions_than_channels(rng, kind):
    """block5 of a small image has fewer positions than channels: a rank-deficient covariance."""
    s = tf.constant(relu_features(rng, (1, 3, 3, 16)), tf.float32)
    x = tf.constant(relu_features(rng, (1, 2, 3, 16), 0.2), tf.float32)
    stat = statistic(kind)
    target = stat.target(s, seed=(0, 0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        error = stat.error(x, target, "relative")
    grad = tape.gradient(error, x).numpy()
    assert np.all(np.isfinite(error.numpy())) and np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_soft_masked_gram_weights_each_position(rng):
    f = rng.normal(size=(2, 4, 5, 3))
    soft = rng.uniform(size=(1, 4, 5))
    flat, w = f.reshape(2, 20, 3), soft.reshape(20)
    expected = np.einsum("bnc,n,bnd->bcd", flat, w, flat) / w.sum()
    np.testing.assert_allclose(gram_of(tf.constant(f), "hw", tf.constant(soft)).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(gram_of(tf.constant(f), "chw", tf.constant(soft)).numpy(), expected / 3, rtol=1e-12)
    for norm in ("hw", "chw"):  # a mask of ones is no mask
        np.testing.assert_allclose(
            gram_of(tf.constant(f), norm, tf.ones((1, 4, 5), tf.float64)).numpy(),
            gram_of(tf.constant(f), norm).numpy(),
            rtol=1e-12,
        )


# ---- The objective with several styles and masks, on the real weights.


@pytest.mark.slow
def test_empty_mask_leaves_its_style_loss_at_zero(vgg19, small_pair):
    content, style = (tf.constant(a[None]) for a in small_pair)
    shipwreck = tf.constant(image_io.load_image(image_io.example_path("shipwreck"), 64)[None])
    hw = small_pair[0].shape[:2]
    masks = [np.zeros(hw, np.float32), np.ones(hw, np.float32)]
    for kind in KINDS:
        cfg = Config(style_loss=kind)
        targets = losses.compute_targets(vgg19, content, [style, shipwreck], cfg, masks=masks)
        image = tf.constant(np.clip(small_pair[0][None] + 0.05, 0, 1), tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(image)
            _, terms = losses.objective(vgg19, targets, cfg, image)
            first = terms["style_1"]
        assert float(first) == 0.0 and float(terms["style_2"]) > 0, kind
        assert float(terms["style"]) == pytest.approx(0.5 * float(terms["style_2"]), rel=1e-6)
        grad = tape.gradient(first, image)
        assert grad is None or not np.any(grad.numpy()), kind


def test_masks_are_averaged_down_to_each_layer(vgg19, small_pair):
    content = tf.constant(small_pair[0][None])
    h, w = small_pair[0].shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[:, : w // 2] = 1.0
    cfg = Config()
    targets = losses.compute_targets(vgg19, content, [content], cfg, masks=[mask])
    feats = vgg19(content)
    for name, m in targets.styles[0].masks.items():
        assert m.shape[1:] == feats[name].shape[1:3]
        assert float(tf.reduce_mean(m)) == pytest.approx(0.5, abs=0.02)
        assert float(m[0, 0, 0]) == 1.0 and float(m[0, -1, -1]) == 0.0


@pytest.mark.slow
def test_blend_one_zero_equals_the_single_style_run(vgg19):
    boston, scream, ship = (image_io.example_path(n) for n in ("boston", "the_scream", "shipwreck"))
    options = dict(size=64, scales=1, steps=6, model=vgg19, jit="off", precision="float32")
    single = nst_tf.stylize(boston, scream, **options)
    blended = nst_tf.stylize(boston, [scream, ship], style_blend=(1, 0), **options)
    # the same picture; oneDNN's AVX2 kernels may round one channel of a pixel the other way (measured
    # under ONEDNN_MAX_CPU_ISA=AVX2 on an AMX CPU: 1 of 8256 values, by 1 level)
    np.testing.assert_allclose(blended, single, atol=1)
    assert np.mean(blended != single) < 0.001
    other = nst_tf.stylize(boston, [scream, ship], style_blend=(0.5, 0.5), **options)
    assert np.abs(other.astype(int) - single).mean() > 1  # the second style does change the picture


@pytest.mark.slow
def test_masks_paint_each_style_in_its_region(vgg19):
    """Left half Scream, right half Shipwreck: each half's Gram error is lower against its own style."""
    boston, scream, ship = (image_io.example_path(n) for n in ("boston", "the_scream", "shipwreck"))
    content = image_io.load_image(boston, 96)
    h, w = content.shape[:2]
    left = np.zeros((h, w), np.float32)
    left[:, : w // 2] = 1
    out = nst_tf.stylize(boston, [scream, ship], masks=[left, 1 - left], size=96, scales=1, steps=40, model=vgg19)
    halves = {"left": out[:, : w // 2 - 8], "right": out[:, w // 2 + 8 :]}
    errors = {
        (half, name): nst_tf.evaluate(img, content, image_io.load_image(style, 96), model=vgg19)["style"]["mean"]
        for half, img in halves.items()
        for name, style in (("scream", scream), ("ship", ship))
    }
    assert errors["left", "scream"] < errors["left", "ship"]
    assert errors["right", "ship"] < errors["right", "scream"]


def test_style_count_mismatches_are_errors():
    boston = image_io.example_path("boston")
    with pytest.raises(nst_tf.NstError, match="style_blend has 2 values for 1 style"):
        nst_tf.StyleTransfer(boston, boston, style_blend=(1, 2), size=32, weights="random")
    with pytest.raises(nst_tf.NstError, match="1 mask"):
        nst_tf.StyleTransfer(boston, [boston, boston], masks=[np.ones((4, 4))], size=32, weights="random")
    with pytest.raises(nst_tf.NstError, match="style_blend"):
        Config(style_blend=(0, 0))
    with pytest.raises(nst_tf.NstError, match="style_scale"):
        Config(style_scale=0)


def test_style_scale_sizes_the_style_images():
    cfg = Config(size=200, style_scale=0.5, scales=2, steps=3)
    assert cfg.effective_style_size == 100
    assert cfg.scale_plan() == ((100, 50, 3), (200, 100, 3))
    assert Config(size=200, style_scale=0.5, scales=1).scale_plan() == ((200, 100, 60),)
    assert Config(size=200, style_size=80, style_scale=0.5).effective_style_size == 80  # style_size wins
    run = nst_tf.StyleTransfer(
        image_io.example_path("boston"), image_io.example_path("the_scream"), size=64, style_scale=0.5, weights="random"
    )
    assert max(run.style.shape[:2]) == 32 and max(run.content.shape[:2]) == 64


# ---- Colour.


def test_histogram_matching_moves_the_colour_moments(rng):
    style = image_io.load_image(image_io.example_path("the_scream"), 128)
    content = image_io.load_image(image_io.example_path("boston"), 128)
    mu_c, cov_c = color.color_moments(content)
    exact = color.match_color(style, content, clip=False)
    mu, cov = color.color_moments(exact)
    np.testing.assert_allclose(mu, mu_c, atol=1e-6)
    np.testing.assert_allclose(cov, cov_c, atol=1e-6)
    # Clipped to [0, 1] (what the run uses), measured: means within 1.2e-4, covariances within 1.3e-4.
    mu, cov = color.color_moments(color.match_color(style, content))
    np.testing.assert_allclose(mu, mu_c, atol=1e-3)
    np.testing.assert_allclose(cov, cov_c, atol=1e-3)
    mu_s, cov_s = color.color_moments(style)
    assert np.abs(mu_s - mu_c).max() > 0.05  # it did have to move (measured: 0.28)


def test_yiq_round_trip_and_luminance_match(rng):
    rgb = rng.uniform(size=(5, 6, 3))
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(rgb)), rgb, atol=1e-12)
    style, content = rng.uniform(0.5, 1.0, size=(8, 8, 3)), rng.uniform(0.0, 0.4, size=(9, 9, 3))
    matched = color.match_luminance(style, content)
    assert np.all(matched[..., 0] == matched[..., 1]) and np.all(matched[..., 1] == matched[..., 2])
    assert matched[..., 0].mean() == pytest.approx(color.luminance(content).mean(), abs=1e-5)
    assert matched[..., 0].std() == pytest.approx(color.luminance(content).std(), abs=1e-5)


@pytest.mark.slow
def test_luminance_mode_keeps_the_content_chroma(vgg19):
    boston, scream = image_io.example_path("boston"), image_io.example_path("the_scream")
    out = nst_tf.stylize(boston, scream, preserve_colors="luminance", size=96, scales=1, steps=30, model=vgg19)
    content = image_io.load_image(boston, 96)
    got, want = color.rgb_to_yiq(out / 255.0), color.rgb_to_yiq(content)
    chroma_error = np.abs(got[..., 1:] - want[..., 1:])
    # Only uint8 rounding and clipping move the chroma. Measured: mean 0.00057, 99th percentile
    # 0.0018, max 0.0068 (I and Q on a 0..1 RGB scale); without the mode the chroma moved 0.076.
    assert chroma_error.mean() < 0.003 and np.percentile(chroma_error, 99) < 0.01
    assert np.abs(got[..., 0] - want[..., 0]).mean() > 0.03  # while the luminance was restyled
    plain = nst_tf.stylize(boston, scream, size=96, scales=1, steps=30, model=vgg19)
    assert np.abs(color.rgb_to_yiq(plain / 255.0)[..., 1:] - want[..., 1:]).mean() > 5 * chroma_error.mean()


# ---- Pooling.


def test_average_pooling_averages(embedded_weights, rng):
    model = features.build_feature_model(["block1_conv2", "block1_pool"], layer_weights=embedded_weights, pooling="avg")
    out = model(tf.constant(rng.uniform(size=(1, 10, 12, 3)), tf.float32))
    conv = out["block1_conv2"].numpy()
    expected = conv.reshape(1, 5, 2, 6, 2, 64).mean(axis=(2, 4))
    np.testing.assert_allclose(out["block1_pool"].numpy(), expected, rtol=1e-5, atol=1e-4)
    max_model = features.build_feature_model(["block1_conv2", "block1_pool"], layer_weights=embedded_weights)
    assert not np.allclose(
        max_model(tf.constant(rng.uniform(size=(1, 10, 12, 3)), tf.float32))["block1_pool"].numpy(), expected
    )
    with pytest.raises(nst_tf.NstError, match="pooling"):
        features.build_feature_model(["block1_pool"], layer_weights=embedded_weights, pooling="min")


# ---- Reports: TensorBoard, contact sheet, loss plot.


def read_events(logdir):
    """{tag: [step, ...]} and {tag: TensorBoard plugin name} from the event files."""
    tags, plugins = {}, {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
                plugins[value.tag] = value.metadata.plugin_data.plugin_name or plugins.get(value.tag)
                if value.tag == "image":  # TensorBoard's image format: width, height, PNG
                    width, height, png = tf.make_ndarray(value.tensor)
                    assert Image.open(io.BytesIO(png)).size == (int(width), int(height))
    return tags, plugins


@pytest.mark.slow
def test_reports_tensorboard_contact_sheet_and_loss_plot(vgg19, tmp_path):
    logdir, sheet, plot = tmp_path / "logs", tmp_path / "sheet.png", tmp_path / "loss.png"
    boston, scream = image_io.example_path("boston"), image_io.example_path("the_scream")
    # Two scales (32 and 64 px) of 4 and 3 steps: 7 steps; frames at steps 0, 1, ..., 7.
    nst_tf.stylize(
        boston,
        scream,
        size=64,
        scales=2,
        start_size=32,
        scale_steps=(4, 3),
        model=vgg19,
        logdir=str(logdir),
        log_every=2,
        contact_sheet=str(sheet),
        contact_sheet_frames=8,
        loss_plot=str(plot),
    )
    tags, plugins = read_events(logdir)
    expected_scalars = {"loss/total", "loss/content", "loss/style", "loss/tv"} | {
        f"loss/style/{n}" for n in config.DEFAULT_STYLE_LAYERS
    }
    assert expected_scalars <= set(tags)
    for name in expected_scalars:
        assert sorted(tags[name]) == list(range(1, 8)), name  # every step, counted on across the scales
    assert sorted(tags["image"]) == [0, 2, 4, 6, 7]  # the start, every 2 steps, the end of each scale
    assert tags["config"] == [0]
    assert {plugins[t] for t in expected_scalars} == {"scalars"}
    assert (plugins["image"], plugins["config"]) == ("images", "text")

    image = Image.open(sheet)
    assert image.format == "PNG" and image.mode == "RGB"
    # 8 frames, 4 columns x 2 rows of 64x43 cells (the 64x43 output), 4 px apart.
    assert image.size == (4 * 64 + 5 * 4, 2 * 43 + 3 * 4)
    cells = np.asarray(image).astype(int)
    first, last = cells[4 : 4 + 30, 4 : 4 + 64], cells[4 + 47 : 4 + 47 + 30, 4 + 3 * 68 : 4 + 3 * 68 + 64]
    assert np.abs(first - last).mean() > 3  # the start and the end differ

    image = Image.open(plot)
    assert image.format == "PNG" and image.size == (800, 450)
    assert np.asarray(image).std() > 10  # not blank


@pytest.mark.slow
def test_a_one_frame_sheet_over_two_scales(vgg19, tmp_path):
    sheet = tmp_path / "one.png"
    nst_tf.stylize(
        image_io.example_path("boston"),
        image_io.example_path("the_scream"),
        size=48,
        scales=2,
        start_size=32,
        steps=2,
        model=vgg19,
        contact_sheet=str(sheet),
        contact_sheet_frames=1,
    )
    assert Image.open(sheet).size == (48 + 2 * 4, 32 + 2 * 4)  # the final image alone


def test_frame_steps():
    assert frame_steps(7, 8) == list(range(8))
    assert frame_steps(100, 5) == [0, 25, 50, 75, 100]
    assert frame_steps(3, 8) == [0, 1, 2, 3]
    assert frame_steps(10, 1) == [10]


# ---- Presets.

FEATURE_PRESETS = {
    "blend": dict(style_blend=(0.5, 0.5)),
    "regions": dict(style_mask=("configs/masks/boston_sky.png", "configs/masks/boston_water.png")),
    "style_scale": dict(style_scale=1.5),
    "preserve_luminance": dict(preserve_colors="luminance"),
    "preserve_histogram": dict(preserve_colors="histogram"),
    "style_poly": dict(style_loss="poly"),
    "style_gaussian": dict(style_loss="gaussian", style_weight=20),
    "style_meanstd": dict(style_loss="meanstd"),
    "style_w2": dict(style_loss="w2"),
    "avg_pool": dict(pooling="avg"),
}


@pytest.mark.parametrize("name", sorted(FEATURE_PRESETS))
def test_feature_presets_change_only_their_feature(name, monkeypatch):
    """Each gallery preset is the default plus its feature (and its images, run from the repo root)."""
    from absl import flags

    from conftest import REPO
    from nst_tf import cli

    monkeypatch.chdir(REPO)
    fv = flags.FlagValues()
    cli.define_flags(fv)
    fv(["nst-tf", f"--flagfile=configs/{name}.cfg"])
    assert cli.config_from_flags(fv) == Config(**FEATURE_PRESETS[name])
    if name in ("blend", "regions"):
        assert [os.path.basename(p) for p in fv.style] == ["the_scream.jpg", "shipwreck.jpg"]
        assert all(os.path.isfile(p) for p in fv.style)
