"""`--budget=SECONDS`: the best picture a whole-process time budget allows on this machine.

The frontier (style error against whole-process seconds, `scripts/frontier.py`, docs/performance.md)
says what wins at each budget on the tuning pairs: the one pass first (Magenta's arbitrary network, on
LiteRT from the command line: 0.6 s whole process), and once TensorFlow, VGG19 and the first traced
step fit, L-BFGS steps at the requested size started from that one-pass painting, as many as fit. So:

- under `REFINE_FROM` seconds (or when this machine's refine has been measured not to fit): the one pass;
- otherwise: the one pass, then the warm-started optimisation at one scale, stopped by `Deadline` when
  the next step (at the rate measured on the steps so far) and the writing would not fit.

Nothing is measured before the run (no autotune: its cached choice if there is one, else float32), so
the budget is never spent on calibration. The choice and the steps taken are printed.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

from nst_tf import autotune
from nst_tf.callbacks import Callback
from nst_tf.config import Config
from nst_tf.errors import TimeUp

# Whole-process seconds below which refining cannot take a step on the tuning machine (2-core AVX-512
# BF16, 512 px: TensorFlow's import, VGG19, the network and the first traced L-BFGS step took 9-10 s).
REFINE_FROM = 12.0
WRITE_SECONDS = 1.2  # saving the PNG and leaving the process (measured 1.1 s from the last step to exit)
MAX_STEPS = 1000  # a refine's cap: the deadline ends it long before on a CPU


class Choice(NamedTuple):
    """What a budget buys: `one_pass` (the network's painting), then, when `refine`, the
    optimisation `config` started from it (`init="network"`; a door holding the one pass's picture
    may start from that instead)."""

    refine: bool
    one_pass: Config
    config: Config
    reason: str


def choose(cfg: Config, elapsed: float) -> Choice:
    """The run `cfg.budget` buys when `elapsed` seconds of it are already spent."""
    left = cfg.budget - elapsed
    one_pass = cfg.replace(network="demo", init="content", scales=1, adapt_steps=0, strength=1.0)
    if left < REFINE_FROM:
        reason = f"{left:.1f} s left: the one pass (refining needs about {REFINE_FROM:g} s)"
        return Choice(False, one_pass, one_pass, reason)
    refine = cfg.replace(network="demo", init="network", scales=1, steps=MAX_STEPS, adapt_steps=0, strength=1.0)
    return Choice(
        True, one_pass, refine, f"{left:.1f} s left: the one pass, then L-BFGS steps from it until the budget"
    )


def autotune_mode(mode=None):
    """How a budgeted run resolves "auto" precision: the cached measurement if this machine has one
    (`mode` as the door was given it), else the rule without measuring ("off")."""
    return mode if autotune.cached_entries() else "off"


def process_seconds() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere since nst_tf was imported)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


class Deadline(Callback):
    """Stops a run (`TimeUp`, which holds it: its picture is the result) after the step after which
    another step and the writing would pass `deadline` (a `time.perf_counter()` time). A step's cost
    is the slowest of the last three after the first (which traces and compiles); after the first,
    `step_estimate` (seconds: from the cached calibration's rate) or half the first step's time."""

    def __init__(self, deadline: float, write_seconds: float = WRITE_SECONDS, step_estimate: float = 0.0):
        self.deadline, self.write_seconds, self.step_estimate = deadline, write_seconds, step_estimate
        self.durations, self.steps = [], 0

    def on_run_begin(self, transfer, steps):
        self.last = time.perf_counter()

    def on_step_end(self, transfer, step, loss, terms):
        now = time.perf_counter()
        self.durations.append(now - self.last)
        self.last, self.steps = now, step
        recent = self.durations[1:][-3:]
        step = max(recent) if recent else (self.step_estimate or self.durations[0] / 2)
        if now + step + self.write_seconds > self.deadline:
            raise TimeUp(transfer)
