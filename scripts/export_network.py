#!/usr/bin/env python3
"""Export a trained network: a SavedModel for TF Serving and/or the TF Lite pair, the same as
`nst-tf-export-network`.

    python scripts/export_network.py --network=demo --export_dir=models/painter --tflite_dir=tflite/
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nst_tf.cli import run_export_network  # noqa: E402

if __name__ == "__main__":
    run_export_network()
