"""The run, end to end on the embedded VGG19 weights at small sizes."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

import nst_tf
from nst_tf import cli, config, image_io
from nst_tf.errors import NstError

from conftest import REPO

PRESETS = ["default", "tutorial", "seed_vgg16", "seed_vgg19_noise", "neural_style"]


def preset(name, **overrides) -> config.Config:
    """A preset flagfile parsed the way the command line parses it."""
    fv = flags.FlagValues()
    cli.define_flags(fv)
    fv(["nst-tf", f"--flagfile={os.path.join(REPO, 'configs', name + '.cfg')}"])
    return cli.config_from_flags(fv).replace(**overrides)


@pytest.fixture(scope="module")
def content_style():
    return image_io.example_path("boston"), image_io.example_path("the_scream")


def test_default_preset_is_the_config_default():
    assert preset("default") == config.Config()


@pytest.mark.parametrize("name", PRESETS)
def test_presets_parse_to_valid_configs(name):
    cfg = preset(name)
    assert cfg.style_layers == config.DEFAULT_STYLE_LAYERS
    if name == "tutorial":
        assert (cfg.size, cfg.effective_style_size, cfg.steps, cfg.learning_rate, cfg.beta_1, cfg.epsilon) == (
            512,
            512,
            1000,
            0.02,
            0.99,
            0.1,
        )
        assert (cfg.content_weight, cfg.style_weight, cfg.tv_weight, cfg.gram_norm) == (1e4, 1e-2, 30, "hw")
    if name == "seed_vgg16":
        assert (cfg.backbone, cfg.size, cfg.style_size, cfg.square, cfg.learning_rate, cfg.steps, cfg.init) == (
            "vgg16",
            384,
            256,
            True,
            0.01,
            1000,
            "content",
        )
    if name == "seed_vgg19_noise":
        assert cfg.init == "noise" and len(cfg.content_layers) > 1 and cfg.tv_weight == 0
    if name == "neural_style":
        assert (cfg.optimizer, cfg.steps, cfg.lbfgs_memory, cfg.init, cfg.size, cfg.effective_style_size) == (
            "lbfgs",
            1000,
            100,
            "noise",
            512,
            512,
        )
        assert (cfg.content_layers, cfg.content_weight, cfg.gram_norm) == (("block4_conv2",), 5, "chw")
        # Lua sums 5 style layers at weight 100; its TV 1e-3 is on 0..255 pixels.
        assert (cfg.style_weight, cfg.tv_loss, cfg.tv_weight) == (500, "squared", pytest.approx(1e-3 * 255**2))


@pytest.mark.slow
def test_default_style_loss_falls_80_percent_in_50_steps(vgg19, content_style):
    """The default objective and optimiser at one size (measured: to 13.6% of the start)."""
    history = nst_tf.History()
    run = nst_tf.StyleTransfer(*content_style, size=96, model=vgg19)
    out = run.run(50, callbacks=[history])
    start = history.terms["style"][0]  # the content image's style loss, before any update
    _, end = run.evaluate()
    assert end["style"] <= 0.2 * start, (start, end["style"])
    assert out.shape == run.content.shape == (64, 96, 3) and out.dtype == np.uint8
    gray = lambda x: np.asarray(x, np.float64).mean(axis=-1).ravel()  # noqa: E731
    assert np.corrcoef(gray(out), gray(run.content))[0, 1] > 0.5  # the photo is still recognisable
    print(f"style loss {start:.4g} -> {end['style']:.4g} ({end['style'] / start:.1%}) in 50 steps")


def test_step_traces_once(vgg19, content_style):
    run = nst_tf.StyleTransfer(*content_style, size=48, model=vgg19)
    run.run(20)
    run.run(5)
    assert run.compiled.trace_count == 1
    assert run.step_count == 25


def test_a_retargeted_run_paints_a_new_content_as_a_fresh_run_does_with_one_trace(vgg19, content_style):
    """A clip's later frames share one run: `retarget` to another picture of the same size gives the
    fresh run's image on it (same start, same steps), with the targets in variables and no new trace;
    with preserve_colors the styles' colours follow the new content too."""
    content, style = content_style
    first = image_io.load_image(content, 64)
    second = np.ascontiguousarray(first[::-1, ::-1])  # another picture, the same size
    for colors in ("none", "histogram"):
        options = dict(size=64, model=vgg19, steps=6, preserve_colors=colors, precision="float32", jit="off")
        held = nst_tf.StyleTransfer(first, style, retargetable=True, **options)
        held.run()
        held.retarget(second, init_image=first)
        again = held.run()
        fresh = nst_tf.StyleTransfer(second, style, init_image=first, **options).run()
        assert held.compiled.trace_count == 1 and held.step_count == 6
        np.testing.assert_allclose(again.astype(int), fresh.astype(int), atol=1)
    with pytest.raises(NstError, match="of the run's size"):
        held.retarget(first[:, :32])  # another shape at the run's size


def _tutorial_reference(content, style, layer_weights, steps):
    """The TensorFlow tutorial's loop, written from the published algorithm (keras.applications VGG19,
    preprocess_input, keras.optimizers.Adam), independent of nst_tf's model, losses and optimiser."""
    style_layers = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
    content_layers = ["block5_conv2"]
    vgg = keras.applications.VGG19(include_top=False, weights=None)
    for layer in vgg.layers:
        if layer.get_weights():
            layer.set_weights(list(layer_weights[layer.name]))
    vgg.trainable = False
    model = keras.Model([vgg.input], [vgg.get_layer(n).output for n in style_layers + content_layers])

    def gram_matrix(t):
        result = tf.linalg.einsum("bijc,bijd->bcd", t, t)
        shape = tf.shape(t)
        return result / tf.cast(shape[1] * shape[2], tf.float32)

    def extract(inputs):
        outputs = model(keras.applications.vgg19.preprocess_input(inputs * 255.0))
        return (
            {n: gram_matrix(o) for n, o in zip(style_layers, outputs[:5])},
            {n: o for n, o in zip(content_layers, outputs[5:])},
        )

    style_targets = extract(tf.constant(style[None]))[0]
    content_targets = extract(tf.constant(content[None]))[1]

    def total_loss(image):
        s, c = extract(image)
        style_loss = tf.add_n([tf.reduce_mean((s[n] - style_targets[n]) ** 2) for n in s]) * 1e-2 / 5
        content_loss = tf.add_n([tf.reduce_mean((c[n] - content_targets[n]) ** 2) for n in c]) * 1e4 / 1
        return style_loss + content_loss + 30 * tf.image.total_variation(image)

    image = tf.Variable(content[None])
    opt = keras.optimizers.Adam(learning_rate=0.02, beta_1=0.99, epsilon=1e-1)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = total_loss(image)
        opt.apply_gradients([(tape.gradient(loss, image), image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))

    for _ in range(steps):
        train_step()
    return float(tf.squeeze(total_loss(image))), image.numpy()[0]


@pytest.mark.slow
def test_tutorial_preset_matches_the_tutorial_loop(embedded_weights, content_style):
    """At a size other than the preset's 512 px: the style image follows --size, as in the tutorial.
    Both loops run float32 without XLA (the reference's own setting), so only the order of sums
    differs. Adam's first steps move each pixel by about +-lr whatever its gradient's size, so a
    pixel whose gradient is near zero can take the other sign from rounding alone: the image is held
    to the loop's on average and loosely at its worst (measured: mean 3.1e-4, max 7.3e-3)."""
    content = image_io.load_image(content_style[0], 64)
    style = image_io.load_image(content_style[1], 64)
    ref_loss, ref_image = _tutorial_reference(content, style, embedded_weights, 30)
    cfg = preset("tutorial", size=64, weights="embedded", precision="float32", jit="off")
    assert cfg.effective_style_size == 64
    run = nst_tf.StyleTransfer(image_io.example_path("boston"), image_io.example_path("the_scream"), cfg)
    np.testing.assert_array_equal(run.style, style)
    run.run(30)
    loss, _ = run.evaluate()
    diff = np.abs(run.image - ref_image)
    print(
        f"tutorial preset loss {loss:.6g} vs reference loop {ref_loss:.6g} (rel {abs(loss / ref_loss - 1):.2e}); "
        f"image diff mean {diff.mean():.2e}, max {diff.max():.2e}"
    )
    assert loss == pytest.approx(ref_loss, rel=2e-3)
    assert diff.mean() < 1e-3 and diff.max() < 0.05  # the same path, not just the same loss


@pytest.mark.slow
def test_stylize_accepts_paths_pil_and_arrays(vgg19, content_style):
    from_path = nst_tf.stylize(*content_style, size=48, steps=3, weights="embedded")
    content_pil = Image.open(content_style[0])
    style_array = np.asarray(Image.open(content_style[1]))
    from_objects = nst_tf.stylize(content_pil, style_array, size=48, steps=3, weights="embedded")
    assert from_path.shape == from_objects.shape == (32, 48, 3) and from_path.dtype == np.uint8
    np.testing.assert_array_equal(from_path, from_objects)


@pytest.mark.parametrize("init", ["content", "noise", "style", "path"])
def test_inits(vgg19, content_style, init, tmp_path):
    if init == "path":
        path = str(tmp_path / "start.png")
        image_io.save_image(path, np.full((10, 20, 3), 0.5, np.float32))
        init = path
    run = nst_tf.StyleTransfer(*content_style, size=48, init=init, model=vgg19)
    start = run.image
    assert start.shape == (32, 48, 3)
    if init == "content":
        np.testing.assert_array_equal(start, run.content)
    elif init == "noise":
        again = nst_tf.StyleTransfer(*content_style, size=48, init="noise", model=vgg19).image
        np.testing.assert_array_equal(start, again)  # seeded
        other = nst_tf.StyleTransfer(*content_style, size=48, init="noise", seed=1, model=vgg19).image
        assert not np.array_equal(start, other) and 0.45 < start.mean() < 0.55
    elif init == "style":
        assert np.abs(start.mean(axis=(0, 1)) - run.style.mean(axis=(0, 1))).max() < 0.02
    else:
        np.testing.assert_allclose(start, 0.5, atol=1 / 255)


def test_style_size_and_square(vgg19, content_style):
    run = nst_tf.StyleTransfer(*content_style, size=64, style_size=32, model=vgg19)
    assert max(run.style.shape[:2]) == 32 and max(run.content.shape[:2]) == 64
    run = nst_tf.StyleTransfer(*content_style, size=48, style_size=32, square=True, model=vgg19)
    assert run.content.shape == (48, 48, 3) and run.style.shape == (32, 32, 3)


def test_snapshots_and_progress(vgg19, content_style, tmp_path, capsys):
    import io

    stream = io.StringIO()
    run = nst_tf.StyleTransfer(*content_style, size=32, model=vgg19)
    run.run(4, callbacks=[nst_tf.Snapshots(2, str(tmp_path / "snaps")), nst_tf.ProgressBar(stream, min_interval=0)])
    assert sorted(os.listdir(tmp_path / "snaps")) == ["step_00002.png", "step_00004.png"]
    assert Image.open(tmp_path / "snaps" / "step_00004.png").size == (32, 21)
    text = stream.getvalue()
    assert "4/4" in text and "loss" in text and "ETA" in text


@pytest.mark.parametrize(
    "options,match",
    [
        ({"steps": 0}, "steps"),
        ({"size": -5}, "size"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"style_layers": ("block1_conv1", "nope")}, "unknown vgg19 layer"),
        ({"style_layer_weights": (1.0, 2.0)}, "one weight per layer"),
        ({"init": "no_such_file.png"}, "init"),
        ({"colour": "blue"}, "unknown option"),
        ({"save_every": 5}, "snapshot_dir"),
        ({"style_layers": ("block1_conv1", "block1_conv1")}, "twice"),
        ({"precision": "float8"}, "precision"),
        ({"jit": "maybe"}, "jit"),
        ({"tv_loss": "huber"}, "tv_loss"),
        ({"lbfgs_memory": 0}, "lbfgs_memory"),
        ({"start_size": 100, "scales": 1}, "scales of 2 or more"),
        ({"scales": 2, "start_size": 400, "size": 300}, "smaller than size"),
        ({"scales": 3, "scale_steps": (10, 10)}, "one per scale"),
        ({"scales": 2, "scale_steps": (10, 0)}, "positive integers"),
        ({"scales": 2, "start_size": 8}, "16 or more"),
    ],
)
def test_bad_options_are_nst_errors(options, match, content_style):
    with pytest.raises(NstError, match=match):
        nst_tf.stylize(*content_style, **options)


def test_too_small_images_are_refused(content_style):
    with pytest.raises(NstError, match="the photo is 20x13 at size 20: a photo needs 16 px or more"):
        nst_tf.StyleTransfer(*content_style, size=20, weights="random")
    with pytest.raises(NstError, match="the style image is .* at this size; VGG needs at least 16 px"):
        nst_tf.StyleTransfer(*content_style, size=64, style_size=10, weights="random")


def test_shared_model_must_have_the_layers(content_style):
    small = nst_tf.build_feature_model(["block1_conv1"], weights="random")
    with pytest.raises(NstError, match="lacks layer"):
        nst_tf.StyleTransfer(*content_style, size=32, model=small)


def test_comma_strings_become_layer_tuples():
    cfg = config.Config(style_layers="block1_conv1, block2_conv1", style_layer_weights=[1, 3])
    assert cfg.style_layers == ("block1_conv1", "block2_conv1") and cfg.layer_weights == (0.25, 0.75)


def test_list_options_parse_alike_from_text_flag_lists_and_numbers():
    # One parser: a caller's "1,3", a flag's ["1", "3"] and numbers give the same config.
    for given in ("1, 3", ["1", "3"], (1, 3), [1.0, 3.0]):
        cfg = config.Config(style_layers=("block1_conv1", "block2_conv1"), style_layer_weights=given)
        assert cfg.style_layer_weights == (1.0, 3.0)
    assert config.Config(scales=2, scale_steps=["5", "7"]).scale_steps == (5, 7)
    with pytest.raises(NstError, match="style_blend must be numbers, got '1,x'"):
        config.Config(style_blend="1,x")
    with pytest.raises(NstError, match="scale_steps must be whole numbers, got '1.5,2'"):
        config.Config(scales=2, scale_steps=["1.5", "2"])


def test_file_options_are_checked_where_files_are_read(content_style):
    cfg = config.Config(init="missing.png", style_mask=("missing.png",))  # no file is opened here
    with pytest.raises(NstError, match="'missing.png' is neither"):
        nst_tf.StyleTransfer(*content_style, config=cfg.replace(style_mask=None), size=32, weights="random")


def test_scale_plan():
    assert config.Config(size=512, scales=3, steps=100).scale_plan() == (
        (128, None, 100),
        (256, None, 100),
        (512, None, 100),
    )
    plan = config.Config(size=512, style_size=256, scales=2, start_size=200, scale_steps=(50, 20)).scale_plan()
    assert plan == ((200, 100, 50), (512, 256, 20))
    assert config.Config(size=300, steps=7, scales=1).scale_plan() == ((300, None, 7),)
    # Scales under 64 px are skipped unless start_size asks for them.
    assert config.Config(size=256, scales=6, steps=5).scale_plan() == ((64, None, 5), (128, None, 5), (256, None, 5))
    assert config.Config(size=32, scales=3, steps=100).scale_plan() == ((32, None, 100),)
    assert config.Config(size=75, scales=3, start_size=19, steps=100).scale_plan()[0] == (19, None, 100)


@pytest.mark.slow
def test_coarse_to_fine_ends_at_the_exact_size(vgg19, content_style):
    """Each scale starts from the previous result upsampled, with content and style targets
    recomputed at its own size; the last scale is exactly the single-scale output's shape."""
    seen = []

    class Record(nst_tf.Callback):
        def on_run_begin(self, transfer, steps):
            seen.append(
                {
                    "content": transfer.content.shape,
                    "style": transfer.style.shape,
                    "steps": steps,
                    "start": transfer.image.copy(),
                    "targets": transfer.targets,
                }
            )

        def on_run_end(self, transfer):
            seen[-1]["end"] = transfer.image.copy()

    out = nst_tf.stylize(
        *content_style,
        size=75,
        scales=3,
        start_size=32,
        scale_steps=(3, 2, 2),
        model=vgg19,
        jit="off",
        callbacks=[Record()],
    )
    assert out.shape == image_io.load_image(content_style[0], 75).shape == (50, 75, 3)
    assert [s["content"][:2] for s in seen] == [(21, 32), (33, 49), (50, 75)]
    assert [max(s["style"][:2]) for s in seen] == [32, 49, 75]
    assert [s["steps"] for s in seen] == [3, 2, 2]
    for before, after in zip(seen, seen[1:]):
        np.testing.assert_allclose(after["start"], image_io.resize(before["end"], after["content"][:2]), atol=1e-6)
        coarse, fine = (
            before["targets"].styles[0].stats["block1_conv1"]["gram"],
            after["targets"].styles[0].stats["block1_conv1"]["gram"],
        )
        assert not np.allclose(coarse.numpy(), fine.numpy())  # recomputed from the resized style
