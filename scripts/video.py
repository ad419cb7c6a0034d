#!/usr/bin/env python3
"""Paint a clip, the same as `nst-tf-video`.

python scripts/video.py --input=clip.mp4 --style=painting.jpg --output=painted.mp4 --network=universal
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nst_tf.cli import run_video  # noqa: E402

if __name__ == "__main__":
    run_video()
