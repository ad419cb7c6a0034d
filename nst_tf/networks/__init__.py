"""Feed-forward style networks: a style transform network driven by a style embedding from a
learned table of fixed styles or from the predict head, trained by nst_tf's own objective
(`train`), used in one forward pass (`use`), exported for TF Serving and TF Lite (`export`).
Names load on first use (TensorFlow too): `nst_tf.networks.options` stays TensorFlow-free."""

import importlib

_EXPORTS = {
    "StyleNetwork": "models",
    "build_transform": "models",
    "style_statistics": "models",
    "TrainConfig": "options",
    "train_network": "train",
    "Painter": "use",
    "load_network": "use",
    "paint": "use",
    "export_saved_model": "export",
    "export_tflite": "export",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"nst_tf.networks.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst_tf.networks' has no attribute {name!r}")
