"""The feed-forward networks: shapes, conditional instance norm, embeddings, training, resume,
devices, exports and bad input."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import files, image_io
from nst_tf.config import Objective
from nst_tf.errors import NstError
from nst_tf import Options, NetworkPainter, StyleNetwork, TrainConfig, train_network
from nst_tf.networks import export, models, train
from nst_tf.networks.models import build_transform

from conftest import REPO, serve_painting

ASSETS = os.path.join(REPO, "nst_tf", "assets")
SCRIPT = os.path.join(REPO, "scripts", "stylize.py")
CONTENTS = (os.path.join(ASSETS, "photos", "boston.jpg"), os.path.join(ASSETS, "photos", "rocket.jpg"))
STYLES = (os.path.join(ASSETS, "paintings", "the_scream.jpg"), os.path.join(ASSETS, "paintings", "shipwreck.jpg"))
OBJECTIVE = Objective(weights="embedded")  # float32 without XLA: the suite runs with NST_TF_AUTOTUNE=off


def tiny(tmp_path, **changes):
    options = dict(
        contents=CONTENTS,
        styles=STYLES,
        output=str(tmp_path / "net.keras"),
        objective=OBJECTIVE,
        mode="table",
        steps=6,
        batch_size=2,
        size=32,
        style_size=32,
        alpha=0.25,
        learning_rate=2e-3,
    )
    options.update(changes)
    return TrainConfig(**options)


@pytest.mark.parametrize("hw", [(37, 53), (16, 17), (64, 48)])
def test_transform_keeps_any_size_odd_included(hw):
    net = build_transform(alpha=0.25)
    out = net([tf.random.uniform([2, *hw, 3], seed=1), tf.random.normal([2, models.EMBEDDING], seed=2)])
    assert out.shape == (2, *hw, 3)
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


def test_conditional_instance_norm_of_a_one_hot_row_is_instance_norm_with_that_rows_gamma_and_beta(rng):
    styles, channels = 4, 6
    x = rng.normal(size=(1, 5, 7, channels)).astype(np.float32) * 3 + 1
    gammas, betas = rng.normal(size=(styles, channels)), rng.normal(size=(styles, channels))
    layer = models.ConditionalInstanceNorm()
    layer.build(((None, None, None, channels), (None, styles)))
    layer.gamma.set_weights([gammas.astype(np.float32), np.zeros(channels, np.float32)])  # Dumoulin's table
    layer.beta.set_weights([betas.astype(np.float32), np.zeros(channels, np.float32)])
    for k in range(styles):
        out = layer([tf.constant(x), tf.constant(np.eye(styles, dtype=np.float32)[k : k + 1])]).numpy()
        mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
        expected = (x - mean) / np.sqrt(var + models.EPSILON) * gammas[k] + betas[k]
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def predict_painter(embedded_weights):
    net = StyleNetwork(num_styles=2, predict=True, alpha=0.25)
    return NetworkPainter(net, models.style_statistics(layer_weights=embedded_weights))


@pytest.mark.slow
def test_blend_one_zero_is_the_single_style(predict_painter, small_pair):
    content, style = small_pair
    other = image_io.load_image(STYLES[1], 64)
    embedding, prepare = predict_painter.embedding, predict_painter.prepare
    single = embedding(prepare([style])).numpy()
    np.testing.assert_allclose(
        embedding(prepare([style, other]), Options(style_blend=(1, 0))).numpy(), single, atol=1e-6
    )
    table = embedding(prepare(None), Options(style_blend=(1, 0))).numpy()
    np.testing.assert_array_equal(table, embedding(prepare(None), Options(style_index=0)).numpy())
    a = predict_painter.paint(content, style, size=48)
    np.testing.assert_array_equal(a, predict_painter.paint(content, [style, other], size=48, style_blend=(1, 0)))


def test_strength_zero_is_the_contents_own_embedding(predict_painter, small_pair):
    content, style = small_pair
    own = predict_painter.network.head(predict_painter.statistics(image_io.load_image(content, 256, square=True)[None]))
    prepared = predict_painter.prepare([style])
    mixed = predict_painter.embedding(prepared, Options(strength=0.0), content)
    np.testing.assert_allclose(mixed.numpy(), own.numpy(), atol=1e-6)
    half = predict_painter.embedding(prepared, Options(strength=0.5), content).numpy()
    full = predict_painter.embedding(prepared, Options(), content).numpy()
    np.testing.assert_allclose(half, 0.5 * own.numpy() + 0.5 * full, atol=1e-5)


class Losses:
    def __init__(self):
        self.values = []

    def on_run_begin(self, owner, steps):
        pass

    def on_step_end(self, owner, step, loss, terms):
        self.values.append(loss)

    def on_run_end(self, owner):
        pass


@pytest.mark.slow
def test_thirty_training_steps_lower_the_loss(tmp_path):
    # One content and one style, so that every batch asks the same: the loss must fall.
    tc = tiny(tmp_path, contents=CONTENTS[:1], styles=STYLES[:1], steps=30, learning_rate=5e-3)
    losses = Losses()
    report = train_network(tc, progress=False, callbacks=[losses])
    assert report["steps"] == 30 and len(losses.values) == 30
    assert np.mean(losses.values[-5:]) < 0.7 * np.mean(losses.values[:5]), losses.values


def _weights(path):
    from nst_tf import load_network

    return [w.numpy() for w in load_network(path).weights]


@pytest.mark.slow
def test_killed_and_resumed_training_ends_with_the_uninterrupted_weights(tmp_path):
    whole = tiny(tmp_path / "a", output=str(tmp_path / "a.keras"), checkpoint_dir=str(tmp_path / "a"), steps=4)
    train_network(whole, progress=False)
    resumed = tiny(tmp_path / "b", output=str(tmp_path / "b.keras"), checkpoint_dir=str(tmp_path / "b"), steps=2)
    train_network(resumed, progress=False)  # stops after 2 steps: as if killed after its checkpoint
    report = train_network(resumed.__class__(**{**resumed.__dict__, "steps": 4, "resume": True}), progress=False)
    assert report["steps"] == 4
    for a, b in zip(_weights(tmp_path / "a.keras"), _weights(tmp_path / "b.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # measured: equal to the last bit here


@pytest.mark.slow
def test_two_logical_devices_train_as_one(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, tensorflow as tf
        sys.path.insert(0, {os.path.join(REPO, "tests")!r})
        from nst_tf import distribute
        from nst_tf import train_network, load_network
        from test_networks import tiny
        import pathlib
        tmp = pathlib.Path({str(tmp_path)!r})
        two = distribute.strategy(2)
        train_network(tiny(tmp, output=str(tmp / "one.keras"), steps=4), progress=False)
        train_network(tiny(tmp, output=str(tmp / "two.keras"), steps=4), progress=False, strategy=two)
        a, b = (np.concatenate([w.numpy().ravel() for w in load_network(str(tmp / n)).weights]) for n in ("one.keras", "two.keras"))
        print(float(np.max(np.abs(a - b))), float(np.median(np.abs(a - b))))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    # Adam moves a weight by up to lr * (1 - beta_1) / sqrt(1 - beta_2) ~ 3.2 lr per step whatever its
    # gradient's size (Kingma and Ba, 2.1), so a near-zero gradient whose sign rounds differently
    # (the all-reduce adds in another order) can part a weight by that much. A typical weight parts
    # by what rounding does to its gradient's direction over the 4 steps, which depends on the CPU's
    # kernels: median 2.1e-6 (0.1% of lr) on AVX-512 kernels, 6.9e-5 (3.5% of lr) on AVX2 ones.
    # A wrong reduction parts typical weights by about lr: training on one replica's half of each
    # batch (batch_size 1 on one device) measured median 2.2e-3 (1.1 lr) from this run. The median is
    # held to a tenth of lr.
    lr = 2e-3
    worst, median = map(float, out.stdout.split()[-2:])
    assert worst <= 4 * 3.2 * lr and median <= 0.1 * lr, (worst, median)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    tc = tiny(tmp, mode="predict", steps=2, output=str(tmp / "predict.keras"))
    train_network(tc, progress=False)
    return tmp / "predict.keras"


@pytest.mark.slow
def test_tflite_pair_matches_the_keras_model(trained, tmp_path, rng):
    painter = NetworkPainter(str(trained), weights="embedded")
    style = rng.uniform(size=export.PREDICT_SHAPE).astype(np.float32)
    content = rng.uniform(size=export.TRANSFORM_SHAPE).astype(np.float32)
    bottleneck = painter.network.head(painter.statistics(style)).numpy().reshape(1, 1, 1, -1)
    expected = painter.network([content, bottleneck.reshape(1, -1)]).numpy()
    sizes = {}
    for quantization, tolerance in (("float32", 1e-4), ("float16", 0.02), ("int8", 0.08)):
        paths = export.export_tflite(str(trained), str(tmp_path / quantization), "embedded", quantization)
        sizes[quantization] = {k: os.path.getsize(p) for k, p in paths.items()}
        got_b = export.run_tflite(paths["style_predict"], style)
        assert got_b.shape == (1, 1, 1, models.EMBEDDING)
        assert np.max(np.abs(got_b - bottleneck)) <= tolerance * (1 + np.max(np.abs(bottleneck)))
        got = export.run_tflite(paths["style_transform"], content, bottleneck)
        assert got.shape == export.TRANSFORM_SHAPE
        assert np.mean(np.abs(got - expected)) <= tolerance, quantization
    assert sizes["int8"]["style_transform"] < 0.4 * sizes["float32"]["style_transform"]


@pytest.mark.slow
def test_saved_model_paints_without_nst_tf_as_the_keras_model_does(trained, tmp_path):
    path = export.export_saved_model(str(trained), str(tmp_path / "served"), weights="embedded", size=64)
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    image_io.save_image(str(content), image_io.load_image(CONTENTS[0], 64))
    image_io.save_image(str(style), image_io.load_image(STYLES[0], 256, square=True))
    served = serve_painting(path, content, style, 0.7, tmp_path)
    expected = NetworkPainter(str(trained), weights="embedded").paint(str(content), str(style), size=None, strength=0.7)
    assert served.shape == expected.shape
    assert np.max(np.abs(served.astype(int) - expected.astype(int))) <= 1


@pytest.mark.slow
def test_network_file_round_trips_through_keras(trained, small_pair):
    painter = NetworkPainter(str(trained), weights="embedded")
    again = NetworkPainter(painter.network, painter.statistics)
    content, style = small_pair
    np.testing.assert_array_equal(painter.paint(content, style, 48), again.paint(content, style, 48))


@pytest.mark.parametrize(
    "call, message",
    [
        (dict(style_index=2), "out of range: this network has 2"),
        (dict(strength=1.5), r"strength must be in \[0, 1\]"),
        (dict(style_blend=(1, 1, 1)), "needs 2 non-negative"),
    ],
)
def test_bad_painting_options_are_refused(predict_painter, small_pair, call, message):
    with pytest.raises(NstError, match=message):
        predict_painter.paint(small_pair[0], None, 48, **call)


def test_content_too_small_for_the_network_is_refused(predict_painter):
    with pytest.raises(NstError, match="needs 16 px"):
        predict_painter.paint(np.zeros((8, 40, 3), np.float32), None, None)


def test_unreadable_training_files_are_skipped_and_counted(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "bad.jpg").write_text("not an image")
    (folder / "notes.txt").write_text("hello")
    image_io.save_image(str(folder / "good.png"), image_io.load_image(CONTENTS[0], 40))
    source = train.data.scan([str(folder)], "content")
    assert source.files == (str(folder / "good.png"),) and len(source.skipped) == 2
    (folder / "good.png").unlink()
    with pytest.raises(NstError, match="no readable content image"):
        train.data.scan([str(folder)], "content")


# The command line: nst-tf-train writes a network, nst-tf paints with it; bad input exits 2.
TRAIN = os.path.join(REPO, "scripts", "train.py")
TINY_TRAIN = ["--size=32", "--style_size=32", "--steps=3", "--batch_size=2", "--alpha=0.25", "--weights=embedded"]


def run_script(script, args, cwd):
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=str(cwd), timeout=600)


@pytest.fixture(scope="module")
def table_network(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    args = [f"--contents={CONTENTS[0]}", f"--styles={','.join(STYLES)}", "--output=styles.keras", "--noprogress"]
    args += ["--logdir=logs", "--log_every=1", f"--held_out={CONTENTS[1]}"]
    result = run_script(TRAIN, args + TINY_TRAIN, tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp / "styles.report.json").read_text())
    assert report["steps"] == 3 and report["skipped_files"] == 0
    # the evaluate report of the held-out photo with each style, and TensorBoard's events
    assert [row["style_image"] for row in report["held_out"]] == list(STYLES)
    assert all(row["style"]["mean"] > 0 and row["content"]["block4_conv2"] > 0 for row in report["held_out"])
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp / "logs"))
    return tmp / "styles.keras"


@pytest.mark.slow
def test_cli_paints_with_a_fixed_style_network(table_network, tmp_path):
    result = run_script(
        SCRIPT, [f"--network={table_network}", "--style_index=1", "--size=40", "--output=o.png"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "painted by" in result.stdout
    assert image_io.load_image(str(tmp_path / "o.png")).shape == (27, 40, 3)


@pytest.mark.slow
def test_cli_paints_with_the_bundled_network_and_the_bundled_painting(tmp_path):
    # make demo-network: the demo is the arbitrary network; the style defaults to the bundled painting
    result = run_script(SCRIPT, ["--network=demo", "--size=40", "--output=o.png", "--weights=embedded"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert image_io.load_image(str(tmp_path / "o.png")).shape == (27, 40, 3)


def _network_bad_files(tmp_path):
    (tmp_path / "notes.keras").write_text("not a network")
    image_io.save_image(str(tmp_path / "thin.png"), np.zeros((8, 40, 3), np.float32))
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "readme.txt").write_text("hello")
    (tmp_path / "empty").mkdir()


NETWORK_BAD = [
    (SCRIPT, ["--style_index=5"], "style_index 5 is out of range: this network has 2"),
    (SCRIPT, [f"--style={STYLES[0]}"], "cannot take a style image"),
    (SCRIPT, ["--strength=1.5"], "strength must be in [0, 1]"),
    (SCRIPT, ["--style_blend=1,1,1"], "needs 2 non-negative weights"),
    (SCRIPT, ["--strength=0.5"], "--strength is not honoured by the network painter"),
    (SCRIPT, ["--content=thin.png"], "needs 16 px or more"),
    (SCRIPT, ["--network=notes.keras"], "not a .keras network file"),
    (SCRIPT, ["--network=missing.keras"], "no such file"),
    (SCRIPT, ["--init=network", "--network="], "init=network needs network"),
    (TRAIN, ["--contents=no_images", f"--styles={STYLES[0]}"], "no readable content image"),
    (TRAIN, [f"--contents={CONTENTS[0]}", "--styles=empty"], "the style folder empty is empty"),
    (TRAIN, [f"--contents={CONTENTS[0]}", f"--styles={STYLES[0]}", "--size=8"], "size and style_size must be 16"),
    (
        TRAIN,
        [f"--contents={CONTENTS[0]}", f"--styles={STYLES[0]}", "--output=net.png"],
        "a network file ends in .keras",
    ),
    (TRAIN, [f"--contents={CONTENTS[0]}", f"--styles={STYLES[0]}", "--batch_size=3", "--devices=2"], "does not split"),
    (TRAIN, [f"--contents={CONTENTS[0]}", f"--styles={STYLES[0]}", "--batch_size=4096"], "training needs about"),
    (
        TRAIN,
        [f"--contents={CONTENTS[0]}", f"--styles={STYLES[0]}", "--mode=arbitrary", "--start=missing.keras"],
        "start=missing.keras: no such network file",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("script,args,match", NETWORK_BAD, ids=[" ".join(a) for _, a, _ in NETWORK_BAD])
def test_bad_network_input_exits_2_with_one_line(table_network, tmp_path, script, args, match):
    _network_bad_files(tmp_path)
    common = [f"--network={table_network}", "--output=out.png"] if script == SCRIPT else ["--output=net.keras"]
    result = run_script(script, common + args + ["--size=40"] * (script == SCRIPT), tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    command = "nst-tf" if script == SCRIPT else "nst-tf-train"  # each command names itself
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: ") and match in lines[0], result.stderr
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "net.keras").exists()


@pytest.mark.slow
def test_batch_command_paints_with_a_predict_network(trained, tmp_path):
    batch_script = os.path.join(REPO, "scripts", "batch.py")
    args = [f"--network={trained}", f"--contents={','.join(CONTENTS)}", f"--styles={STYLES[0]}", "--size=40"]
    result = run_script(batch_script, args + ["--output_dir=out", "--noprogress", "--weights=embedded"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["output"] for r in records) == ["boston__the_scream.png", "rocket__the_scream.png"]
    painter = NetworkPainter(str(trained), weights="embedded")
    expected = painter.paint(CONTENTS[0], STYLES[0], 40)
    np.testing.assert_array_equal(
        image_io.to_uint8(image_io.load_image(str(tmp_path / "out" / "boston__the_scream.png"))), expected
    )


def test_tfrecord_shards_feed_the_same_stream_and_resume_skips_whole_batches(tmp_path):
    shard = str(tmp_path / "photos.tfrecord")
    with tf.io.TFRecordWriter(shard) as writer:
        for path in CONTENTS:
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[open(path, "rb").read()]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    contents = train.data.scan([shard], "content")
    styles = train.data.scan(list(STYLES), "style")
    assert contents.records == (shard,) and not contents.files
    first = list(train.data.batches(contents, styles, 2, 24, 32, seed=3).take(4))
    assert first[0][0].shape == (2, 24, 24, 3) and first[0][1].shape == (2, 32, 32, 3)
    assert first[0][2].numpy().tolist() != [-1, -1]  # style labels are file indices
    again = list(train.data.batches(contents, styles, 2, 24, 32, seed=3, start=2).take(2))
    for a, b in zip(first[2:], again):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


@pytest.mark.slow
def test_stylize_takes_a_network_path_or_model(trained, small_pair):
    import nst_tf

    content, style = small_pair
    painter = NetworkPainter(str(trained), weights="embedded")
    expected = painter.paint(content, style, 48)
    for network in (str(trained), painter.network):
        got = nst_tf.stylize(content, style, network=network, size=48, weights="embedded")
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_a_non_finite_training_step_leaves_the_weights_and_is_counted(tmp_path, monkeypatch):
    calls = tf.Variable(0)
    original = train.Trainer.loss

    def poisoned(self, content, style, label):  # the second step's loss is NaN
        output, total, terms = original(self, content, style, label)
        calls.assign_add(1)
        return output, tf.where(tf.equal(calls, 2), tf.constant(float("nan")), total), terms

    monkeypatch.setattr(train.Trainer, "loss", poisoned)
    report = train_network(tiny(tmp_path, steps=3), progress=False)
    assert report["steps"] == 3 and report["skipped_steps"] == 1 and int(calls.numpy()) == 4
    assert all(np.all(np.isfinite(w)) for w in _weights(tmp_path / "net.keras"))


def test_a_network_paints_tiled_as_whole_and_its_export_serves_the_same(predict_painter, small_pair, tmp_path):
    """The fast tier's network doors in this process (an untrained predict network; training itself
    is the slow tier's): tiled painting (uneven tiles) equals the whole forward pass to float32
    rounding of the norm statistics; the SavedModel export, loaded here, paints what the Painter
    paints (within 1 level: one forward pass in float32 either way)."""
    from nst_tf.networks import tiled

    content, style = small_pair
    embedding = predict_painter.embedding(predict_painter.prepare([style]))
    whole = predict_painter.network([tf.constant(content[None]), embedding])[0].numpy()
    seen = []
    part = tiled.paint_tiled(predict_painter.network.transform, content, embedding, 24, lambda *a: seen.append(a))
    assert np.abs(part - whole).max() < 1e-4 and seen[-1][1:] == (6, 6)  # 3 x 2 tiles of 24 px over 64 x 43
    path = export.export_saved_model(predict_painter.network, str(tmp_path / "served"), weights="embedded", size=48)
    # the export base's permissions: a model server running as another user can read the version folder
    assert os.stat(path).st_mode & 0o777 == 0o777 & ~files.umask()
    # uint8 at their sizes, as the PNGs hold them: nothing is resized or rounded on one side only
    content = image_io.to_uint8(image_io.load_image(CONTENTS[0], 48))
    style = image_io.to_uint8(image_io.load_image(STYLES[0], 256, square=True))
    served = (
        tf.saved_model.load(path)
        .signatures["serving_default"](
            content=tf.constant([tf.io.encode_png(content).numpy()]),
            style=tf.constant([tf.io.encode_png(style).numpy()]),
            strength=tf.constant(0.7),
            size=tf.constant(-1),
        )["image"]
        .numpy()
    )
    expected = predict_painter.paint(content, style, size=None, strength=0.7)
    assert served.shape == expected.shape == (32, 48, 3)
    assert np.abs(served.astype(int) - expected.astype(int)).max() <= 1
