"""The feature model: names, shapes, truncation, preprocessing, errors."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf import features, vgg
from nst_tf.errors import NstError

# Channels of each block's convolutions.
CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


@pytest.mark.parametrize("backbone,convs", [("vgg19", (2, 2, 4, 4, 4)), ("vgg16", (2, 2, 3, 3, 3))])
def test_names_and_shapes(backbone, convs):
    names = vgg.layer_names(backbone)
    assert len(names) == sum(convs) + 5
    model = features.build_feature_model(names, backbone, weights="random")
    assert sorted(model.output.keys()) == sorted(names)
    out = model(tf.zeros((2, 48, 64, 3)))
    h, w = 48, 64
    for block, n in enumerate(convs, start=1):
        for k in range(1, n + 1):
            assert tuple(out[f"block{block}_conv{k}"].shape) == (2, h, w, CHANNELS[block])
        h, w = h // 2, w // 2
        assert tuple(out[f"block{block}_pool"].shape) == (2, h, w, CHANNELS[block])
    # keras.applications agrees on the layer list
    assert tuple(layer.name for layer in vgg.build_backbone(backbone).layers[1:]) == names


def test_truncated_at_deepest_requested_layer():
    model = features.build_feature_model(["block2_conv1", "block1_conv2"], weights="random")
    conv_names = [layer.name for layer in model.layers if "conv" in layer.name]
    assert conv_names == ["block1_conv1", "block1_conv2", "block2_conv1"]
    assert list(model.output.keys()) == ["block2_conv1", "block1_conv2"]


def test_frozen():
    model = features.build_feature_model(["block1_conv1"], weights="random")
    assert model.trainable_weights == []


def test_unknown_layer_lists_valid_ones():
    with pytest.raises(NstError) as err:
        features.build_feature_model(["block1_conv9"], weights="random")
    assert "block1_conv9" in str(err.value) and "block5_conv4" in str(err.value)
    with pytest.raises(NstError, match="block4_conv3"):  # VGG16 has no block4_conv4 but lists its own
        features.build_feature_model(["block4_conv4"], "vgg16", weights="random")


def test_preprocessing_is_folded_in(embedded_weights, rng):
    """block1_conv1 of RGB [0, 1] equals ReLU(conv(caffe-preprocessed BGR) + b), computed in NumPy."""
    model = features.build_feature_model(["block1_conv1"], layer_weights=embedded_weights)
    rgb = rng.uniform(size=(1, 6, 5, 3)).astype(np.float32)
    bgr = rgb[..., ::-1] * 255.0 - np.array(vgg.MEAN_BGR, np.float32)
    kernel, bias = embedded_weights["block1_conv1"]
    padded = np.pad(bgr[0], ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((6, 5, 64))
    for i in range(6):
        for j in range(5):
            ref[i, j] = np.einsum("hwc,hwco->o", padded[i : i + 3, j : j + 3], kernel) + bias
    np.testing.assert_allclose(model(rgb)["block1_conv1"].numpy()[0], np.maximum(ref, 0), rtol=1e-4, atol=1e-3)


def test_real_features_tell_images_apart(vgg19, small_pair):
    """With real weights, deep features of the photo and the painting differ far more than those of
    the photo and a slightly noisy copy (random weights would not separate them this way)."""
    content, style = small_pair
    noisy = np.clip(content + np.random.default_rng(0).normal(0, 0.02, content.shape), 0, 1).astype(np.float32)
    f = lambda x: vgg19(x[None])["block4_conv1"].numpy().ravel()  # noqa: E731
    style_resized = tf.image.resize(style[None], content.shape[:2])[0].numpy()
    a, b, c = f(content), f(noisy), f(style_resized)
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    assert cos(a, b) > 0.9 > cos(a, c)
