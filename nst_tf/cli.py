"""The command lines: one module per command under `nst_tf.commands`, each a thin door (absl flags
in, one resolved `nst_tf.plan.Plan` inside); these are their console entry points.

    nst-tf                  stylise a photo (optimisation, or one pass of --network)  commands/stylize.py
    nst-tf-batch            every content with every style, resumably                  commands/batch.py
    nst-tf-evaluate         style and content errors of a result                       commands/evaluate.py
    nst-tf-export           the optimisation as a SavedModel                           commands/export.py
    nst-tf-export-network   a network as a SavedModel and a TF Lite pair               commands/export_network.py
    nst-tf-train            train a network                                            commands/train.py
    nst-tf-video            paint a clip, frame to frame consistent                    commands/video.py
    nst-tf-app              a web page to paint with                                   commands/app.py
"""

import importlib

from nst_tf.commands.common import config_from_flags, define_flags, exits_2, fail  # noqa: F401  (the shared door)
from nst_tf.commands import stylize


def _command(module: str):
    def run():
        importlib.import_module(f"nst_tf.commands.{module}").run()

    run.__doc__ = f"Console entry point of nst_tf.commands.{module}."
    return run


run = _command("stylize")
run_batch = _command("batch")
run_evaluate = _command("evaluate")
run_export = _command("export")
run_export_network = _command("export_network")
run_train = _command("train")
run_video = _command("video")
run_app = _command("app")


def main(argv) -> int:
    """`nst-tf`'s main, for callers that parse the flags themselves."""

    return exits_2(stylize.main)(argv)


if __name__ == "__main__":
    run()
