"""The exact tiled objective (`nst_tf.tiling`): its geometry, its gradient against the untiled
one's, and tiled runs through `stylize`, checkpoints, the planner and the command line."""

import io
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import nst_tf
from nst_tf import config, features, geometry, image_io, losses, optimize, planner, tiling, vgg
from nst_tf.callbacks import ProgressBar, StopOnSignal
from nst_tf.errors import Interrupted, NstError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK4 = dict(style_layers="block1_conv1,block2_conv1,block3_conv1,block4_conv1", content_layers="block4_conv2")
RUN = dict(precision="float32", jit="off", weights="embedded", scales=1, optimizer="adam")


# -- geometry ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["vgg19", "vgg16"])
def test_the_footprint_is_the_measured_receptive_field_of_the_deepest_layer(backbone, embedded_weights):
    """One block5_conv1 position's gradient reaches exactly `reach` input pixels beyond its own
    16 px cell on each side (measured with random weights, so no ReLU is dead everywhere)."""
    align, reach = vgg.footprint(["block5_conv1", "block2_conv1"], backbone)
    assert align == 16 and reach == {"vgg19": 70, "vgg16": 58}[backbone]
    tf.keras.utils.set_random_seed(0)
    model = features.build_feature_model(["block5_conv1"], backbone, weights="random")
    image = tf.constant(np.random.default_rng(0).random((1, 320, 320, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(image)
        out = model(image)["block5_conv1"]
        chosen = tf.reduce_sum(out[:, 10, 10, :])  # the cell at pixels 160..175
    rows = np.nonzero(np.abs(tape.gradient(chosen, image).numpy()).sum(axis=(0, 2, 3)))[0]
    assert (rows.min(), rows.max()) == (160 - reach, 175 + reach)


def test_tiles_own_every_pixel_and_every_layer_position_once():
    hw, layers = (214, 331), ["block1_conv1", "block3_conv1", "block4_conv2", "block5_conv1"]
    shape = geometry.of_layers(layers)
    align, margin = shape
    assert (align, margin) == (16, 80)
    grid = shape.grid(hw, 100)  # 100 is rounded down to 96: uneven splits
    assert {t.owned[1] - t.owned[0] for t in grid} == {96, 22} and {t.owned[3] - t.owned[2] for t in grid} == {96, 43}
    pixels = np.zeros(hw, int)
    for tile in grid:
        y0, y1, x0, x1 = tile.owned
        gy0, gy1, gx0, gx1 = tile.grown
        pixels[y0:y1, x0:x1] += 1
        assert gy0 % align == 0 and gx0 % align == 0  # poolings see the whole image's windows
        assert gy0 == max(0, y0 - margin) and gy1 == min(hw[0], y1 + margin)
        assert gx0 == max(0, x0 - margin) and gx1 == min(hw[1], x1 + margin)
    assert (pixels == 1).all()
    names = vgg.layer_names("vgg19")
    for layer in layers:
        stride = 2 ** sum(n.endswith("pool") for n in names[: names.index(layer)])
        layer_hw = vgg.layer_hw(hw, layer)
        counts = np.zeros(layer_hw, int)
        for tile in grid:
            r0, r1, c0, c1 = geometry.owned_window(tile, layer_hw, stride)
            counts[r0:r1, c0:c1] += 1
        assert (counts == 1).all(), layer


# -- the gradient -----------------------------------------------------------------------------


def _both(cfg, model, content, styles, tile, masks=None, blend=None):
    """`(loss, gradient)` of a perturbed content image, untiled and tiled."""
    x = np.clip(content + 0.1 * np.random.default_rng(0).standard_normal(content.shape), 0, 1).astype(np.float32)
    targets = losses.compute_targets(
        model, tf.constant(content), [tf.constant(s[None]) for s in styles], cfg.objective, blend, masks, seed=cfg.seed
    )
    loss, _, grad = optimize.loss_and_grad(
        lambda im: losses.objective(model, targets, cfg.objective, im, per_image=True), tf.constant(x)
    )
    tiled = tiling.TiledObjective(model, cfg.objective, tile, cfg.seed)
    tiled.targets(content, styles, blend, masks)
    tiled_loss, _, tiled_grad = tiled.loss_and_grad(x)
    assert len(tiled.grid(content.shape[1:3])) > 4
    return (loss.numpy(), grad.numpy()), (tiled_loss.numpy(), tiled_grad.numpy())


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.mark.slow
@pytest.mark.parametrize("statistic", config.STYLE_LOSSES)
def test_the_tiled_gradient_equals_the_untiled_one_for_every_statistic_with_a_mask(statistic, embedded_weights):
    """214x320 px in tiles of 72 px (three rows of 72, 72, 70; columns 72 x 4 and 32), halo 40
    (block4's reach); the mask is random, so every tile's positions weigh differently."""
    cfg = config.Config(style_loss=statistic, size=320, **BLOCK4, **{k: RUN[k] for k in ("precision", "weights")})
    model = features.model_for(cfg.objective, cfg.precision)
    content = image_io.load_image(image_io.example_path("boston"), 320)[None]
    style = image_io.load_image(image_io.example_path("the_scream"), 256)
    mask = np.random.default_rng(1).random(content.shape[1:3]).astype(np.float32)
    (loss, grad), (tiled_loss, tiled_grad) = _both(cfg, model, content, [style], 72, masks=[mask])
    np.testing.assert_allclose(tiled_loss, loss, rtol=1e-5)
    assert _relative(grad, tiled_grad) <= 1e-4


@pytest.mark.slow
def test_the_tiled_gradient_equals_the_untiled_one_with_every_default_layer_and_two_masked_styles(vgg19):
    """The default layers (block5_conv1: halo 80) at 214x320 in uneven tiles of 96 px, two styles
    blended 1:2, each painting its own soft half; every term's weight on (TV too)."""
    cfg = config.Config(size=320, tv_weight=1e-3, content_weight=2.0, precision="float32", weights="embedded")
    content = image_io.load_image(image_io.example_path("boston"), 320)[None]
    styles = [image_io.load_image(image_io.example_path(name), 200) for name in ("the_scream", "shipwreck")]
    ramp = np.clip(np.linspace(-1, 2, content.shape[2]), 0, 1).astype(np.float32)
    masks = [np.tile(ramp, (content.shape[1], 1)), np.tile(1 - ramp, (content.shape[1], 1))]
    (loss, grad), (tiled_loss, tiled_grad) = _both(cfg, vgg19, content, styles, 96, masks=masks, blend=[1.0, 2.0])
    np.testing.assert_allclose(tiled_loss, loss, rtol=1e-5)
    assert _relative(grad, tiled_grad) <= 1e-4


# -- runs -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiled_run_gives_the_untiled_png_within_one_level_after_10_adam_steps():
    """192x128 px in uneven tiles of 80 (6 tiles); each compiled pass is traced once or twice
    (the first tile's shape, then shapes left open), not once per tile or step."""
    boston, scream = image_io.example_path("boston"), image_io.example_path("the_scream")
    untiled = nst_tf.stylize(boston, scream, size=192, steps=10, tile="off", **RUN)
    transfer = nst_tf.StyleTransfer(boston, scream, size=192, tile="80", **RUN)
    assert transfer.tiled is not None and len(transfer.tiled.grid(transfer.content.shape[:2])) == 6
    transfer.run(1)
    traces = transfer.tiled.trace_counts
    tiled = transfer.run(9)
    assert transfer.tiled.trace_counts == traces and max(traces.values()) <= 2, traces
    assert transfer.compiled.trace_count == 1
    assert np.abs(tiled.astype(int) - untiled.astype(int)).max() <= 1


@pytest.mark.slow
def test_coarse_to_fine_luminance_and_a_style_blend_run_tiled_as_untiled(vgg19):
    kwargs = {**RUN, "scales": 2, "size": 112, "steps": 6, "preserve_colors": "luminance", "style_blend": "1,3"}
    styles = [image_io.example_path("the_scream"), image_io.example_path("shipwreck")]
    untiled = nst_tf.stylize(image_io.example_path("boston"), styles, tile="off", model=vgg19, **kwargs)
    tiled = nst_tf.stylize(image_io.example_path("boston"), styles, tile="48", model=vgg19, **kwargs)
    assert np.abs(tiled.astype(int) - untiled.astype(int)).max() <= 1


@pytest.mark.slow
def test_a_signal_stops_a_tiled_step_at_its_tile_and_the_run_resumes_to_the_uninterrupted_image(tmp_path, vgg19):
    kwargs = dict(size=96, steps=6, tile="32", model=vgg19, **RUN)
    boston, scream = image_io.example_path("boston"), image_io.example_path("the_scream")
    whole = nst_tf.stylize(boston, scream, **kwargs)
    stop, seen = StopOnSignal(), []

    class Signal(nst_tf.Callback):  # SIGINT arrives during step 3's second pass, at its first tile
        def on_tile(self, transfer, stage, done, total):
            seen.append((transfer.step_count, stage, done))
            if seen[-1] == (2, "pass 2", 1):
                stop._handle(signal.SIGINT, None)

    with pytest.raises(Interrupted) as caught:
        nst_tf.stylize(boston, scream, checkpoint_dir=str(tmp_path), callbacks=[Signal(), stop], **kwargs)
    assert seen[-1] == (2, "pass 2", 1) and caught.value.run.step_count == 2  # the step is given up
    resumed = nst_tf.stylize(boston, scream, checkpoint_dir=str(tmp_path), resume=True, **kwargs)
    np.testing.assert_array_equal(resumed, whole)


def test_the_progress_bar_shows_the_tiles_of_a_step(vgg19):
    stream = io.StringIO()
    bar = ProgressBar(stream, tile_interval=0.0)  # a step's line still shows, 0.2 s after the last
    nst_tf.stylize(
        image_io.example_path("boston"),
        image_io.example_path("the_scream"),
        size=64,
        steps=2,
        tile="32",
        model=vgg19,
        callbacks=[bar],
        **RUN,
    )
    text = stream.getvalue()
    assert "step 1/2: pass 1, tile 1/4" in text and "step 2/2: pass 2, tile 4/4" in text
    assert "] 1/2 loss" in text and "] 2/2 loss" in text


def test_a_tiled_run_refuses_several_devices(vgg19):
    from types import SimpleNamespace

    strategy = SimpleNamespace(num_replicas_in_sync=2)  # refused before the strategy is used
    transfer = nst_tf.StyleTransfer(
        [image_io.example_path("boston")] * 2,
        image_io.example_path("the_scream"),
        size=48,
        tile="32",
        model=vgg19,
        **RUN,
    )
    with pytest.raises(NstError, match="a tiled run takes one device"):
        transfer.run(1, strategy=strategy)


# -- the planner, the config and the command line ---------------------------------------------


def test_the_tile_option_takes_auto_off_or_a_side_in_pixels():
    assert config.Config().tile_pixels is None and config.Config(tile="off").tile_pixels == 0
    assert config.Config(tile=256).tile == "256" and config.Config(tile="256").tile_pixels == 256
    for bad in ("abc", "8", "-64", True):
        with pytest.raises(NstError, match="tile must be"):
            config.Config(tile=bad)


def test_auto_tiles_only_the_scales_that_do_not_fit():
    cfg = config.Config(size=4096, precision="float32")
    style = [(4096, 3072)]
    scales = planner.plan_scales(cfg, (3000, 4000), style, available=20 * planner.GIB)
    assert [s.tile for s in scales[:2]] == [0, 0] and scales[2].tile in planner.AUTO_TILES  # 1024, 2048 px fit
    assert all(s.peak_bytes <= 20 * planner.GIB for s in scales)
    larger = planner.AUTO_TILES[planner.AUTO_TILES.index(scales[2].tile) - 1]  # the largest that fits
    assert planner.tiled_bytes(cfg, scales[2].size, style, 1, larger) > 20 * planner.GIB
    untiled = planner.peak_bytes(cfg, scales[-1].size, style)
    assert untiled > 40 * planner.GIB and scales[-1].peak_bytes < untiled / 2
    # In 8 GiB, Adam fits in smaller tiles; L-BFGS's history of the whole image does not fit at all.
    adam = planner.plan_scales(cfg.replace(optimizer="adam"), (3000, 4000), style, available=8 * planner.GIB)
    assert 0 < adam[-1].tile < scales[2].tile and adam[-1].peak_bytes <= 8 * planner.GIB
    lbfgs = planner.plan_scales(cfg, (3000, 4000), style, available=8 * planner.GIB)
    with pytest.raises(NstError, match="--optimizer=adam or a smaller --lbfgs_memory"):
        planner.check(lbfgs, cfg, available=8 * planner.GIB)
    assert planner.choose_tile(cfg.replace(tile="512"), (300, 400), style) == 0  # one tile holds it
    assert planner.choose_tile(cfg.replace(tile="512"), (3000, 4000), style) == 512
    assert planner.choose_tile(cfg.replace(tile="off"), (3000, 4000), style, available=1) == 0


@pytest.mark.slow
def test_the_command_line_plans_tiles_and_refuses_a_bad_tile(tmp_path):
    script = os.path.join(REPO, "scripts", "stylize.py")
    env = dict(os.environ, NST_TF_OFFLINE="1")
    dry = subprocess.run(
        [sys.executable, script, "--size=4096", "--tile=1024", "--dry_run", f"--output={tmp_path / 'x.png'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr
    last = dry.stdout.splitlines()[3]
    assert last.split()[1].startswith("4096x") and last.split()[4] == "1024", dry.stdout
    bad = subprocess.run(
        [sys.executable, script, "--tile=huge", f"--output={tmp_path / 'x.png'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("nst-tf: error: tile must be"), (
        bad.stderr
    )
    assert not (tmp_path / "x.png").exists()


# -- a network's tiled painting (nst_tf.networks.tiled) ----------------------------------------


@pytest.mark.slow
def test_the_network_reach_is_its_measured_receptive_field():
    """With every norm layer's statistics held fixed, an output pixel's gradient reaches at most
    `reach` input pixels away, and exactly that far for one of the four pixels of a stride cell."""
    from nst_tf.networks import models, tiled

    tf.keras.utils.set_random_seed(0)
    transform = models.build_transform(alpha=0.25)
    image = tf.constant(np.random.default_rng(0).random((1, 200, 200, 3)), tf.float32)
    embedding = tf.random.normal([1, models.EMBEDDING], seed=1)
    fixed = lambda layer, x: (tf.zeros([1, 1, 1, 1]), tf.ones([1, 1, 1, 1]))  # noqa: E731
    farthest = 0
    for p in range(100, 104):
        with tf.GradientTape() as tape:
            tape.watch(image)
            with models.norm_moments(fixed):
                chosen = tf.reduce_sum(transform([image, embedding])[0, p, p])
        rows = np.nonzero(np.abs(tape.gradient(chosen, image).numpy()).sum(axis=(0, 2, 3)))[0]
        farthest = max(farthest, p - rows.min(), rows.max() - p)
    assert tiled.reach(transform) == farthest == 57
    # the planner's estimate tiles the default network as its painting does (width does not change the reach)
    assert planner.NETWORK_GEOMETRY == tiled.geometry_of(transform) == tiled.geometry_of(models.build_transform())
    assert planner.NETWORK_GEOMETRY.halo == -(-farthest // models.MULTIPLE) * models.MULTIPLE


@pytest.mark.slow
def test_a_network_painted_tile_by_tile_equals_the_untiled_painting(embedded_weights):
    """Uneven tiles (and an image that is not a multiple of 4) give the untiled forward pass within
    float32 rounding of the norm layers' statistics; the progress hook sees every pass and tile."""
    from nst_tf.networks import tiled, use

    painter = use.NetworkPainter("three_styles", weights="embedded")
    assets = os.path.join(REPO, "nst_tf", "assets")
    content = image_io.load_image(os.path.join(assets, "photos", "boston.jpg"), 170)  # 170 x 113
    style = os.path.join(assets, "paintings", "the_scream.jpg")
    embedding = painter.embedding(painter.prepare([style]))
    whole = painter.network([tf.constant(content[None]), embedding])[0].numpy()
    seen = []
    # 4 tiles of 100 px, the last row and column narrower
    part = tiled.paint_tiled(painter.network.transform, content, embedding, 100, lambda *a: seen.append(a))
    assert np.abs(part - whole).max() < 1e-4
    assert seen[-1] == ("pass 17/17", 4, 4) and len(seen) == 17 * 4
    # Painter.paint: "auto" stays untiled where it fits, a tile side tiles; the same PNG within 1 level.
    untiled = painter.paint(content, style, size=None)
    assert np.abs(untiled.astype(int) - painter.paint(content, style, size=None, tile=96).astype(int)).max() <= 1


def test_the_planner_tiles_a_network_painting_only_when_it_does_not_fit():
    hw = (5488, 8192)
    untiled = planner.network_bytes(hw)
    assert planner.choose_network_tile(hw, "auto", available=untiled) == 0
    side = planner.choose_network_tile(hw, "auto", available=4 * planner.GIB)
    assert side in planner.AUTO_TILES and planner.network_bytes(hw, 1.0, side) <= 4 * planner.GIB < untiled
    assert planner.choose_network_tile(hw, 1024) == 1024 and planner.choose_network_tile((300, 400), "512") == 0
    assert planner.choose_network_tile(hw, "off", available=1) == 0
    with pytest.raises(NstError, match="tile must be"):
        planner.choose_network_tile(hw, "huge")


@pytest.mark.slow
def test_the_command_line_plans_a_network_painting(tmp_path):
    script = os.path.join(REPO, "scripts", "stylize.py")
    dry = subprocess.run(
        [
            sys.executable,
            script,
            "--network=three_styles",
            "--size=8192",
            "--tile=2048",
            "--dry_run",
            f"--output={tmp_path / 'x.png'}",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, NST_TF_OFFLINE="1"),
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("network painting 8192x5488: tile 2048, peak 5.50 GiB"), dry.stdout
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_tiled_network_painting_with_one_line_and_no_file(tmp_path):
    out = tmp_path / "x.png"
    command = [sys.executable, os.path.join(REPO, "scripts", "stylize.py"), "--network=three_styles", "--size=1536"]
    process = subprocess.Popen(
        [*command, "--tile=256", "--progress", f"--output={out}"],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NST_TF_OFFLINE="1"),
        # A suite started in the background by a non-interactive shell inherits SIGINT ignored,
        # and Python then keeps it ignored: the child gets Ctrl-C's default, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    while "pass 1/17, tile 1/" not in seen:  # the first tile is painted
        char = process.stderr.read(1)
        assert char, seen
        seen += char
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert (
        "Traceback" not in stderr
        and stderr.splitlines()[-1] == "nst-tf: error: stopped while painting; nothing written"
    )
    assert not out.exists() and os.listdir(tmp_path) == []
