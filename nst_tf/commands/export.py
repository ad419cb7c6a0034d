"""nst-tf-export: the whole optimisation as a SavedModel for TF Serving.

    nst-tf-export --export_dir=models/nst --size=512 --steps=100

Writes <export_dir>/<version>/ (signatures serving_default, serving_rest, stylize_tensor); every
stylise option sets the default a request falls back on. Loadable without nst_tf installed.
"""

import time

from absl import flags

from nst_tf import export, files
from nst_tf import plan as plan_lib
from nst_tf.commands import common
from nst_tf.errors import NstError

NAME = "nst-tf-export"


def define_export_flags(default_version: int = 1):
    """The flags every SavedModel export shares (the export base, `nst_tf.export`)."""
    flags.DEFINE_string("export_dir", None, "Model base path: the SavedModel goes to <export_dir>/<version>/.")
    flags.DEFINE_integer("version", default_version, "Model version (TF Serving serves the highest).", lower_bound=1)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version folder.")
    flags.DEFINE_boolean("verbose", False, "Show TensorFlow's own log lines while exporting.")


def define():
    limits = export.Limits()
    common.define_flags(images=False)
    define_export_flags()
    flags.DEFINE_integer(
        "max_pixels", limits.max_pixels, "Largest output (height x width) a request may ask for.", lower_bound=1
    )
    flags.DEFINE_integer("max_steps", limits.max_steps, "Most steps per scale a request may ask for.", lower_bound=1)
    flags.DEFINE_integer(
        "max_input_pixels", limits.max_input_pixels, "Largest encoded input, read from its header.", lower_bound=1
    )


def main(argv) -> int:
    """Writes the SavedModel (`nst_tf.export_saved_model`) and prints where, its size and limits."""
    fv = flags.FLAGS
    common.no_arguments(argv)
    cfg = common.config_from_flags(fv)
    if not fv.export_dir:
        raise NstError("--export_dir is required (TF Serving's model base path)")
    export.version_path(fv.export_dir, fv.version, fv.overwrite)  # an existing version: before any work
    limits = export.Limits(fv.max_pixels, fv.max_steps, fv.max_input_pixels).check()
    common.import_tensorflow_quietly()
    from nst_tf import serving  # loads TensorFlow: not at import

    plan = plan_lib.resolve(cfg, fv.autotune, export=True)
    start = time.perf_counter()
    with common.native_stderr_quiet(not fv.verbose):
        path = serving.export_saved_model(fv.export_dir, fv.version, plan, limits=limits, overwrite=fv.overwrite)
    seconds = time.perf_counter() - start
    print(
        f"wrote {path} ({files.folder_bytes(path) / 1e6:.1f} MB in {seconds:.0f} s; limits: "
        f"{limits.max_pixels} output pixels, {limits.max_steps} steps per scale, {limits.max_input_pixels} input pixels)"
    )
    return 0


def run():
    common.run(NAME, main, define, __doc__)
