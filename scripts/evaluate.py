#!/usr/bin/env python3
"""Print a JSON report of a stylised image's style and content errors (`nst_tf.evaluate`);
the same as the installed `nst-tf-evaluate` command. Lower is better on both.

    python scripts/evaluate.py --image=stylized.png --content=photo.jpg --style=painting.jpg
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nst_tf.cli import run_evaluate  # noqa: E402

if __name__ == "__main__":
    run_evaluate()
