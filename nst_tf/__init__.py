"""nst_tf: neural style transfer (Gatys et al.) for TensorFlow and Keras.

Public API (imported on first use, so `import nst_tf` stays cheap until you need TensorFlow):
- `stylize(content, style, **options) -> uint8 [H, W, 3]`: the one-call API.
- `StyleTransfer`: step-level control with `Callback`s (`ProgressBar`, `Snapshots`, `History`,
  `TensorBoard`, `ContactSheet`, `LossPlot`).
- `Config`, `make_config`: every knob with its default; options are named like the flags, grouped as
  the code uses them (`Objective`, shared with `TrainConfig`; painting, optimisation, outputs, runtime).
- `resolve_plan(config) -> Plan`: the options resolved once (painter, precision, XLA, tiles per scale,
  devices), as every door does; pass the plan on and nothing below re-resolves it.
- `build_feature_model`, `layer_names`: the frozen VGG feature `tf.keras.Model`
  (RGB `[B, H, W, 3]` in [0, 1] -> `{layer: activation}`) and its valid layer names.
- `load_image`, `save_image`: image I/O (float32 RGB in [0, 1]); `example_path`: bundled images.
- `evaluate(image, content, style)`: scale-free style (Gram) and content errors of a result.
- `export_saved_model(export_dir, version, **options)`: the whole transfer as a SavedModel for TF
  Serving (signatures `serving_default`, `serving_rest`, `stylize_tensor`).
- `NstError`: the one exception type a user can cause.
- Feed-forward networks (`nst_tf.networks`): `train_network(TrainConfig(...)) -> report` trains a
  `StyleNetwork` (transform network + fixed-style table and/or predict head) on nst_tf's own
  objective; `NetworkPainter(network).paint(content, style) -> uint8 [H, W, 3]` paints in one forward pass
  (also `stylize(content, style, network=path)`); `load_network(path)`.
- The universal painter (`nst_tf.networks.universal`): `UniversalPainter().paint(content, style)`
  paints any painting in one pass (VGG19 encoder, whitening and colouring transform, decoders
  trained on photos only: `train_network(TrainConfig(mode="decoder", ...))`); `make_painter(network)`
  gives the right painter for any network file or bundled name.
- Painters (`nst_tf.painting`, `nst_tf.painters`): every door paints through one protocol.
  `for_plan(plan)` gives a run's painter (the optimisation, a network, or the warm start);
  `painter.paint(content, styles, size, **options)` paints with the `Options` every door knows
  (strength, style_blend, style_index, style_mask, preserve_colors, style_size, tile) and refuses
  with one line any the painter cannot honour; `prepare` + `render` keep a painting's
  representation for many contents.
- `stylize_video(clip, style, output, ...)`: a clip painted frame by frame, each frame held to the
  previous paintings along the optical flow (`nst_tf.video`; the optional extra `[video]`).
Quiet by default: TensorFlow's C++ start-up lines (device probes, "failed call to cuInit" on a
machine without a GPU) are hidden when nst_tf is the first to load TensorFlow; `NST_TF_VERBOSE=1`
shows them, and a `TF_CPP_MIN_LOG_LEVEL` you set is kept.
Also: `nst_tf.autotune.resolve()` says what `precision="auto"` and `jit="auto"` are on this machine
(each candidate timed once, cached; `Choice(precision, xla, reason)`).
"""

import importlib
import os
import sys

from nst_tf import files  # light (no TensorFlow): the quiet import below

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "nst_tf.config",
    "make_config": "nst_tf.config",
    "Objective": "nst_tf.config",
    "Plan": "nst_tf.plan",
    "resolve_plan": "nst_tf.plan",
    "NstError": "nst_tf.errors",
    "build_feature_model": "nst_tf.features",
    "layer_names": "nst_tf.vgg",
    "load_image": "nst_tf.image_io",
    "save_image": "nst_tf.image_io",
    "Callback": "nst_tf.callbacks",
    "ContactSheet": "nst_tf.callbacks",
    "History": "nst_tf.callbacks",
    "LossPlot": "nst_tf.callbacks",
    "ProgressBar": "nst_tf.callbacks",
    "Snapshots": "nst_tf.callbacks",
    "TensorBoard": "nst_tf.callbacks",
    "StyleTransfer": "nst_tf.transfer",
    "example_path": "nst_tf.image_io",
    "stylize": "nst_tf.painters",
    "stylize_video": "nst_tf.video.run",
    "evaluate": "nst_tf.metrics",
    "export_saved_model": "nst_tf.serving",
    "StyleNetwork": "nst_tf.networks.models",
    "TrainConfig": "nst_tf.networks.options",
    "train_network": "nst_tf.networks.train",
    "NetworkPainter": "nst_tf.networks.use",
    "load_network": "nst_tf.painters",
    "make_painter": "nst_tf.painters",
    "Options": "nst_tf.painting",
    "for_plan": "nst_tf.painters",
    "UniversalNetwork": "nst_tf.networks.universal",
    "UniversalPainter": "nst_tf.networks.universal",
}

__all__ = sorted(_EXPORTS)


_RENAMED = {"resolve_plan": "resolve"}
# Old public names: still given, with a one-line warning naming the new one.
_DEPRECATED = {"Painter": "NetworkPainter"}


# Modules that never load TensorFlow: everything else is imported with TensorFlow's C++ start-up
# lines hidden, unless $NST_TF_VERBOSE=1 (or TensorFlow was already imported: its lines are shown).
_LIGHT = {"nst_tf.config", "nst_tf.errors", "nst_tf.image_io", "nst_tf.plan", "nst_tf.networks.options"}
VERBOSE_ENV = "NST_TF_VERBOSE"


def __getattr__(name):
    if name in _DEPRECATED:
        import warnings

        new = _DEPRECATED[name]
        warnings.warn(f"nst_tf.{name} is now nst_tf.{new} (the painter of a StyleNetwork)", DeprecationWarning, 2)
        return __getattr__(new)
    if name in _EXPORTS:
        if _EXPORTS[name] not in _LIGHT and "tensorflow" not in sys.modules:
            files.import_tensorflow_quietly(os.environ.get(VERBOSE_ENV) == "1")
        value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
