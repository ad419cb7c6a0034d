"""nst_tf: neural style transfer (Gatys et al.) for TensorFlow and Keras.

Public API:
- `stylize(content, style, **options) -> uint8 [H, W, 3]`: the one-call API.
- `StyleTransfer`: step-level control with `Callback`s (`ProgressBar`, `Snapshots`, `History`).
- `Config`, `make_config`: every knob with its default; options are named like the flags.
- `build_feature_model`: the frozen VGG feature `tf.keras.Model` (RGB in [0, 1] -> activations).
- `load_image`, `save_image`: image I/O (float32 RGB in [0, 1]); `example_path`: bundled images.
- `NstError`: the one exception type a user can cause.
"""

from nst_tf.config import Config, make_config
from nst_tf.errors import NstError
from nst_tf.features import build_feature_model, layer_names
from nst_tf.image_io import load_image, save_image
from nst_tf.transfer import Callback, History, ProgressBar, Snapshots, StyleTransfer, example_path, stylize

__version__ = "0.1.0"

__all__ = [
    "Callback", "Config", "History", "NstError", "ProgressBar", "Snapshots", "StyleTransfer",
    "build_feature_model", "example_path", "layer_names", "load_image", "make_config", "save_image", "stylize",
]
