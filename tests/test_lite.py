"""The one pass on LiteRT (`nst_tf.networks.lite`): the Keras network converted, painting what the Keras
painter paints within a level, and the command line painting without importing TensorFlow."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from nst_tf import config, image_io, painters, painting
from nst_tf.networks import lite

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def converted():
    return lite.convert("demo")  # into the suite's own cache folder (conftest)


@pytest.mark.parametrize(
    "options",
    [
        dict(size=128),
        dict(size=96, strength=0.6, style_blend=(1.0, 3.0)),
        dict(size=100, preserve_colors="luminance"),
        dict(size=80, preserve_colors="histogram", strength=0.8),
    ],
)
def test_litert_paints_what_the_keras_network_paints(converted, options):
    photo = image_io.example_path("boston")
    styles = [image_io.example_path("the_scream")] + (
        [image_io.example_path("shipwreck")] if "style_blend" in options else []
    )
    got = image_io.to_uint8(lite.paint(photo, styles, painting.Options(**options))).astype(int)
    plan = painters.plan_lib.resolve(config.Config(network="demo", precision="float32", **options))
    want = image_io.to_uint8(painters.paint(plan, photo, styles)[0]).astype(int)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_what_litert_cannot_honour_goes_to_tensorflow():
    base = dict(network="demo")

    def refusal(**changes):
        cfg = config.Config(**{**base, **changes})
        return lite.refusal(cfg.network, painting.Options.of(cfg), cfg.square)

    assert refusal() == ""
    for changes, why in [
        (dict(style_mask=("m.png",)), "--style_mask"),
        (dict(adapt_steps=3), "--adapt_steps"),
        (dict(tile="256"), "--tile"),
        (dict(style_size=300), "--style_size"),
        (dict(network="universal"), "not the bundled arbitrary network"),
        (dict(size=4096), "over 2048 px"),
    ]:
        assert why in refusal(**changes), changes


def test_the_one_pass_command_never_imports_tensorflow(converted, tmp_path):
    out = tmp_path / "painted.png"
    code = (
        "import sys; sys.argv = ['nst-tf', '--network=demo', '--size=96', '--output=' + sys.argv[1]]\n"
        "from nst_tf.commands import stylize\n"
        "try:\n    stylize.run()\nexcept SystemExit as e:\n    code = e.code\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and "on LiteRT" in done.stdout and done.stderr == "", done.stderr
    tf_out = tmp_path / "tf.png"
    again = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "stylize.py"), "--network=demo", "--size=96", "--nolite"]
        + [f"--output={tf_out}", "--noprogress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "LiteRT" not in again.stdout, again.stderr
    diff = np.abs(image_io.load_image(str(out)) - image_io.load_image(str(tf_out))) * 255
    assert diff.max() <= 2.01, diff.max()
