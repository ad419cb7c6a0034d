#!/usr/bin/env python3
"""Train a style network, the same as `nst-tf-train`.

    python scripts/train.py --flagfile=configs/train_three_styles.cfg
    python scripts/train.py --contents=photos/ --styles=paintings/ --mode=predict --output=mine.keras

Writes the network (.keras), its report (.report.json, with the evaluate report of --held_out
images), checkpoints (--checkpoint_dir, --resume) and TensorBoard logs (--logdir).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nst_tf.cli import run_train  # noqa: E402

if __name__ == "__main__":
    run_train()
