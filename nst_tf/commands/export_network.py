"""nst-tf-export-network: a network for TF Serving (a SavedModel) and for devices (TF Lite).

    nst-tf-export-network --network=universal --export_dir=models/painter
    nst-tf-export-network --network=universal --tflite_dir=tflite/
    nst-tf-export-network --network=universal --tfjs_dir=tfjs/      (TensorFlow.js; make tfjs)

The SavedModel's serving_default takes content and style bytes (JPEG or PNG), strength and size
and returns the painting (image, png); the TF Lite pair is style_predict.tflite and
style_transform.tflite (Magenta's shapes); the TensorFlow.js pair is the graph models
style_predict/ and style_transform/ (any content size), converted by tensorflowjs_converter from
its own environment (make tfjs-converter), for nst-tf-app --tfjs_dir to paint in the browser.
"""

import os

from absl import flags

from nst_tf import config as config_lib
from nst_tf import export, files
from nst_tf.commands import common
from nst_tf.commands.export import define_export_flags
from nst_tf.errors import NstError
from nst_tf.networks.options import QUANTIZATIONS

NAME = "nst-tf-export-network"


def define():

    flags.DEFINE_string("network", None, "The network (.keras from nst-tf-train, or universal, demo, three_styles).")
    define_export_flags()
    flags.DEFINE_integer("size", 512, "Default longest side of the painting (a request may ask another).")
    flags.DEFINE_integer(
        "max_output_pixels",
        2048 * 2048,
        "The SavedModel refuses a request whose painting would have more pixels than this.",
        lower_bound=256,
    )
    flags.DEFINE_string("tflite_dir", None, "Folder for style_predict.tflite and style_transform.tflite.")
    flags.DEFINE_string("tfjs_dir", None, "Folder for the TensorFlow.js pair (the universal painter).")
    flags.DEFINE_string("tfjs_converter", None, "tensorflowjs_converter to run (default: .venv-tfjs's).")
    flags.DEFINE_enum("quantization", "float16", QUANTIZATIONS, "TF Lite and TF.js weights: float32, float16, int8.")
    flags.DEFINE_string("weights", "auto", config_lib.option_help("weights"))


def main(argv) -> int:
    """Writes a network's SavedModel (--export_dir), its TF Lite pair (--tflite_dir) and/or its
    TensorFlow.js pair (--tfjs_dir)."""
    fv = flags.FLAGS
    common.no_arguments(argv)
    if not fv.network or not (fv.export_dir or fv.tflite_dir or fv.tfjs_dir):
        raise NstError("--network and one of --export_dir, --tflite_dir, --tfjs_dir are required")
    common.check_network(fv.network)
    if fv.export_dir:
        export.version_path(fv.export_dir, fv.version, fv.overwrite)  # an existing version: before any work
    common.import_tensorflow_quietly()
    from nst_tf.networks import export as network_export  # loads TensorFlow: not at import
    from nst_tf import painters  # loads TensorFlow: not at import

    network = painters.load_network(fv.network)
    with common.native_stderr_quiet(not fv.verbose):  # the converter's C++ lines (E0000 ... Truncate) are not ours
        if fv.export_dir:
            path = network_export.export_saved_model(
                network,
                fv.export_dir,
                fv.version,
                fv.weights,
                fv.size,
                overwrite=fv.overwrite,
                max_output_pixels=fv.max_output_pixels,
            )
        paths = (
            network_export.export_tflite(network, fv.tflite_dir, fv.weights, fv.quantization) if fv.tflite_dir else {}
        )
        if fv.tfjs_dir:
            converter = fv.tfjs_converter
            paths.update(network_export.export_tfjs(network, fv.tfjs_dir, fv.weights, fv.quantization, converter))
    if fv.export_dir:
        print(f"wrote {path} ({files.folder_bytes(path) / 1e6:.1f} MB)")
    for path in paths.values():
        size = files.folder_bytes(path) if os.path.isdir(path) else os.path.getsize(path)
        print(f"wrote {path} ({size / 1e6:.2f} MB)")
    return 0


def run():
    common.run(NAME, main, define, __doc__)
