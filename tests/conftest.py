import os

import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite gives the same results on any CPU: precision="auto" and jit="auto" take the safe rule
# (float32, XLA on) rather than this machine's measurement, and nothing reads or writes the user's
# cache (the subprocesses the CLI tests start inherit both). tests/test_autotune.py measures.
os.environ["NST_TF_AUTOTUNE"] = "off"
os.environ["NST_TF_CACHE_DIR"] = tempfile.mkdtemp(prefix="nst_tf-test-cache-")

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
