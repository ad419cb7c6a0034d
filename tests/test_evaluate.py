"""The evaluate report against a NumPy computation: VGG19 run in NumPy on a tiny image."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nst_tf import image_io, metrics
from nst_tf.vgg import layer_names

from conftest import REPO


def numpy_vgg19(rgb, weights, wanted):
    """VGG19 activations of one `[H, W, 3]` RGB image in [0, 1], written from the paper's recipe:
    Caffe input (BGR, x255, ImageNet means subtracted), 3x3 'same' convolutions with ReLU, 2x2 max
    pooling (odd edges dropped, as Keras' 'valid' pooling does)."""
    x = rgb[..., ::-1].astype(np.float64) * 255.0 - np.array([103.939, 116.779, 123.68])
    out = {}
    for name in layer_names("vgg19"):
        if name.endswith("pool"):
            h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
            x = x[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).max(axis=(1, 3))
        else:
            kernel, bias = weights[name]
            padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            patches = np.stack(
                [padded[i : i + x.shape[0], j : j + x.shape[1]] for i in range(3) for j in range(3)], axis=2
            )
            x = np.maximum(
                np.einsum("hwkc,kcd->hwd", patches, np.asarray(kernel, np.float64).reshape(9, *kernel.shape[2:]))
                + bias,
                0,
            )
        if name in wanted:
            out[name] = x
        if set(out) == set(wanted):
            return out


def test_report_matches_numpy(embedded_weights, rng):
    image = rng.uniform(0, 1, (24, 36, 3)).astype(np.float32)  # the "stylised" output, 24x36
    content = rng.uniform(0, 1, (48, 72, 3)).astype(np.float32)  # resized to the output's size
    style = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)  # resized to max side 36

    report = metrics.evaluate(image, content, style, model=metrics.feature_model(weights="embedded"))

    wanted = list(metrics.STYLE_LAYERS) + [metrics.CONTENT_LAYER]
    fx = numpy_vgg19(image, embedded_weights, wanted)
    fc = numpy_vgg19(image_io.resize(content, (24, 36)), embedded_weights, wanted)
    fs = numpy_vgg19(image_io.load_image(style, 36), embedded_weights, wanted)

    def gram(f):
        flat = f.reshape(-1, f.shape[-1])
        return flat.T @ flat / flat.shape[0]

    def rel(a, b):
        return np.sum((a - b) ** 2) / np.sum(b**2)

    assert report["size"] == [24, 36]
    for name in metrics.STYLE_LAYERS:
        assert report["style"][name] == pytest.approx(rel(gram(fx[name]), gram(fs[name])), rel=1e-3)
    assert report["style"]["mean"] == pytest.approx(np.mean([report["style"][n] for n in metrics.STYLE_LAYERS]))
    expected = rel(fx["block4_conv2"], fc["block4_conv2"])
    assert report["content"]["block4_conv2"] == pytest.approx(expected, rel=1e-3)


def test_identical_images_score_zero(embedded_weights, small_pair):
    content, style = small_pair
    model = metrics.feature_model(weights="embedded")
    report = metrics.evaluate(content, content, content, model=model)
    assert report["content"]["block4_conv2"] == 0 and report["style"]["mean"] == 0
    assert metrics.evaluate(content, content, style, model=model)["style"]["mean"] > 0.1


def _cli(*args):
    env = dict(os.environ, NST_TF_OFFLINE="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "evaluate.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_prints_json(embedded_weights, tmp_path):
    image = tmp_path / "out.png"
    image_io.save_image(str(image), image_io.to_uint8(image_io.load_image(image_io.example_path("boston"), 48)))
    done = _cli(
        f"--image={image}",
        f"--content={image_io.example_path('boston')}",
        f"--style={image_io.example_path('the_scream')}",
        "--weights=embedded",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["style"]) == set(metrics.STYLE_LAYERS) | {"mean"}
    assert report["content"]["block4_conv2"] < 0.05  # the content itself, resized twice


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--image is required"),
        (["--image=/nonexistent.png", "--content=/x.png", "--style=/y.png"], "/nonexistent.png"),
    ],
)
def test_cli_bad_input(args, message):
    done = _cli(*args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
