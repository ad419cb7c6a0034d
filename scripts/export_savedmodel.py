#!/usr/bin/env python3
"""Export the style transfer as a SavedModel for TF Serving (`nst_tf.export_saved_model`); the
same as the installed `nst-tf-export` command. The option flags are stylize's (and its
flagfiles work); they set the defaults a request falls back on.

    python scripts/export_savedmodel.py --export_dir=models/nst --version=1 --weights=embedded
    python scripts/export_savedmodel.py --flagfile=configs/default.cfg --export_dir=models/nst --max_steps=300
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nst_tf.cli import run_export  # noqa: E402

if __name__ == "__main__":
    run_export()
