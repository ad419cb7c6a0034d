#!/usr/bin/env python3
"""Stylise folders of images: every content with every style, the same as `nst-tf-batch`.

    python scripts/batch.py --contents=photos/ --styles=paintings/ --output_dir=out/
    python scripts/batch.py --flagfile=configs/default.cfg --contents='frames/*.png' --styles=a.jpg --output_dir=out/

Outputs are <content>__<style>.png; existing ones are skipped, so a re-run resumes; each output
has a line in out/manifest.jsonl.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nst_tf.cli import run_batch  # noqa: E402

if __name__ == "__main__":
    run_batch()
