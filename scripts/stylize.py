#!/usr/bin/env python3
"""Stylise an image from the command line: the same as the installed `nst-tf` command.

python scripts/stylize.py --content=photo.jpg --style=painting.jpg --output=out.png
python scripts/stylize.py --flagfile=configs/tutorial.cfg
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nst_tf.cli import run  # noqa: E402

if __name__ == "__main__":
    run()
