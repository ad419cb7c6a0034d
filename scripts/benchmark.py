#!/usr/bin/env python3
"""Seconds per optimisation step at several output sizes (median of timed steps, after warm-up).

    python scripts/benchmark.py --sizes=256,384,512 --steps=8

Prints a table; compare figures from one run (timings on shared machines are noisy).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_list("sizes", ["256", "384", "512"], "Output sizes (longest side).")
flags.DEFINE_integer("steps", 8, "Timed steps per size (after 2 warm-up steps).")
flags.DEFINE_string("weights", "auto", "Weights spec.")
FLAGS = flags.FLAGS


def main(argv):
    import nst_tf

    content, style = nst_tf.example_path("boston"), nst_tf.example_path("the_scream")
    print(f"{'size':>6} {'HxW':>9} {'s/step':>8} {'steps/min':>9}")
    model = None
    for size in (int(s) for s in FLAGS.sizes):
        run = nst_tf.StyleTransfer(content, style, size=size, weights=FLAGS.weights, model=model)
        model = run.model
        run.run(2)  # trace and warm up
        times = []
        for _ in range(FLAGS.steps):
            start = time.perf_counter()
            loss, _ = run.loop()
            float(loss)
            times.append(time.perf_counter() - start)
        h, w = run.content.shape[:2]
        median = float(np.median(times))
        print(f"{size:>6} {h:>4}x{w:<4} {median:>8.3f} {60 / median:>9.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
