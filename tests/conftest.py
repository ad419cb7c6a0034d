import functools
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite gives the same results on any CPU: precision="auto" and jit="auto" take the safe rule
# (float32, XLA off) rather than this machine's measurement, and nothing reads or writes the user's
# cache (the subprocesses the CLI tests start inherit both). tests/test_autotune.py measures.
os.environ["NST_TF_AUTOTUNE"] = "off"
os.environ["NST_TF_CACHE_DIR"] = tempfile.mkdtemp(prefix="nst_tf-test-cache-")
# Under pytest-xdist (make test runs a worker per core) each worker's TensorFlow computes an op on
# one thread: two workers of two threads each on two cores spend their time waiting on each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_DEFAULT_LAYERS = [
    "block4_conv2",
    "block5_conv2",
    "block1_conv1",
    "block2_conv1",
    "block3_conv1",
    "block4_conv1",
    "block5_conv1",
]


@functools.lru_cache(maxsize=None)
def onednn_refuses(dtype: str = "bfloat16") -> str:
    """Why `dtype` ("bfloat16" or "float16") convolutions cannot run here, or "" where they can.

    `ONEDNN_MAX_CPU_ISA=AVX2` on an AVX-512 BF16 (or FP16) CPU (how the suite imitates an AVX2
    machine's numerics) caps oneDNN below those kernels, but TensorFlow still reads the processor
    and sends such convolutions to oneDNN, which refuses them ("could not create a primitive
    descriptor"). A real AVX2 CPU runs them in TensorFlow's emulation. Only that cap excuses a
    failure: without it, this returns "" and the test runs (and fails if the dtype fails)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if not cap:
        return ""
    import tensorflow as tf

    kind = getattr(tf, dtype)
    try:
        tf.nn.conv2d(tf.zeros([1, 4, 4, 3], kind), tf.zeros([3, 3, 3, 4], kind), 1, "SAME")
    except tf.errors.OpError:
        return f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below the {dtype} kernels TensorFlow sends it here"
    return ""


def pytest_collection_modifyitems(config, items):
    for item in items:
        for dtype in ("bfloat16", "float16"):
            if item.get_closest_marker(dtype) and onednn_refuses(dtype):
                item.add_marker(pytest.mark.skip(reason=onednn_refuses(dtype)))


@pytest.fixture(scope="session")
def embedded_weights():
    """The real (8-bit) VGG19 weights; `make test` installs them."""
    from nst_tf import weights

    if weights.embedded_path() is None:
        pytest.fail(f"the embedded weights are not installed: {weights.INSTALL_EMBEDDED}")
    return weights.load_embedded()


@pytest.fixture(scope="session")
def vgg19(embedded_weights):
    """Feature model on the embedded weights, with every layer the default config and the tutorial use."""
    from nst_tf import features

    return features.build_feature_model(ALL_DEFAULT_LAYERS, "vgg19", layer_weights=embedded_weights)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def small_pair():
    """Bundled content and style, downscaled to 64 px."""
    from nst_tf import image_io

    return (
        image_io.load_image(image_io.example_path("boston"), 64),
        image_io.load_image(image_io.example_path("the_scream"), 64),
    )


def serve_painting(model_dir, content, style, strength: float, workdir) -> np.ndarray:
    """A network SavedModel's `serving_default` painting of the PNG files `content` and `style`, run in
    a process where importing nst_tf fails (as a model server meets the export): uint8 `[H, W, 3]`."""
    import subprocess
    import sys
    import textwrap

    out = os.path.join(str(workdir), "served.npy")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["nst_tf"] = None  # importing nst_tf fails here
        import numpy as np, tensorflow as tf
        model = tf.saved_model.load({str(model_dir)!r})
        out = model.signatures["serving_default"](content=tf.constant([open({str(content)!r}, "rb").read()]),
            style=tf.constant([open({str(style)!r}, "rb").read()]), strength=tf.constant({float(strength)!r}),
            size=tf.constant(-1))
        np.save({out!r}, out["image"].numpy())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(out)


def free_ports(n: int) -> list:
    """`n` localhost ports free now (for a cluster of worker processes)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def gram_of(features, norm: str = "hw", mask=None):
    """The Gram matrix as the objective computes it (`losses.Gram`'s sums over positions): `[B, c, c]`."""
    from nst_tf import losses

    return losses.Gram(norm).sums(losses.positions(features, mask))["gram"]


def content_of(features, targets, norm: str = "mean"):
    """The content term as the objective computes it: the mean over layers of `losses.layer_error`."""
    from nst_tf import losses

    return losses.content_loss_of([losses.layer_error(features[k], targets[k], norm) for k in targets])
