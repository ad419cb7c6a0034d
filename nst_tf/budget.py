"""`--budget=SECONDS`: the best picture a whole-process time budget allows on this machine.

The frontier (style error against whole-process seconds, `scripts/frontier.py`, docs/performance.md)
says what wins at each budget on the tuning pairs: the one pass first (Magenta's arbitrary network, on
LiteRT from the command line: 0.6 s whole process), and once TensorFlow, VGG19 and the first traced
step fit, L-BFGS steps at the requested size started from that one-pass painting, as many as fit. So:

- when the refine's first step and the writing would not fit: the one pass. What they need is measured
  on this machine (`refine_needs`: the slowest of its last budgeted refines' first steps, in seconds
  since the process started, scaled up for a larger picture, plus the writing and a margin); on a
  machine that has not run one yet, `REFINE_FROM` seconds (the tuning machine's, with room to spare);
- otherwise: the one pass, then the warm-started optimisation at one scale, stopped by `Deadline` when
  the next step (at the rate measured on the steps so far) and the writing would not fit.

Nothing is measured before the run (no autotune: its cached choice if there is one; else bfloat16 on a
CPU with bfloat16 instructions, which autotune chose on both such CPUs measured, and float32 elsewhere),
so the budget is never spent on calibration. The choice and the steps taken are printed.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple, Tuple

from nst_tf import autotune, files
from nst_tf.callbacks import Callback
from nst_tf.config import Config
from nst_tf.errors import TimeUp

# Whole-process seconds below which refining cannot take a step, where this machine has not measured
# it (the tuning machine, 2-core AVX-512 BF16 at 512 px: TensorFlow's import, VGG19, the network and
# the first traced L-BFGS step took 9-10 s on 2026-12-06; 5.2-5.9 s on an Intel Xeon with AMX since).
REFINE_FROM = 12.0
WRITE_SECONDS = 1.2  # saving the PNG and leaving the process (measured 1.1 s from the last step to exit)
MARGIN = 1.0  # seconds on top of the slowest first step remembered and the writing
KEPT_FIRST_STEPS = 5  # the last budgeted refines' first steps remembered per machine
MAX_STEPS = 1000  # a refine's cap: the deadline ends it long before on a CPU
# CPU flags under which an unmeasured machine refines in bfloat16 (`autotune.cpu_flags`: without those
# that ONEDNN_MAX_CPU_ISA forbids). Measured: autotune chose bfloat16 on the AMD EPYC (AVX-512 BF16) and
# the Intel Xeon (AMX; 0.113 s a step against float32's 0.320 at 192x129); `make demo`'s 45 s bought 124
# steps in bfloat16 against 33 in float32 there, style error 0.048 against 0.064 (Boston x The Scream).
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


class Choice(NamedTuple):
    """What a budget buys: `one_pass` (the network's painting), then, when `refine`, the
    optimisation `config` started from it (`init="network"`; a door holding the one pass's picture
    may start from that instead), its "auto" resolved with the autotune mode `autotune` (never one
    that measures)."""

    refine: bool
    one_pass: Config
    config: Config
    reason: str
    autotune: str = "off"


def choose(cfg: Config, elapsed: float, mode=None) -> Choice:
    """The run `cfg.budget` buys when `elapsed` seconds of it are already spent (`mode`: the door's
    autotune mode, None for `$NST_TF_AUTOTUNE`)."""
    left = cfg.budget - elapsed
    one_pass = cfg.replace(network="demo", init="content", scales=1, adapt_steps=0, strength=1.0)
    precision, resolve_mode, why = _without_measuring(cfg.precision, mode)
    needs, source = refine_needs(cfg.size)
    if left < needs:
        reason = f"{left:.1f} s left: the one pass (refining needs about {needs:.1f} s{source})"
        return Choice(False, one_pass, one_pass, reason, resolve_mode)
    refine = cfg.replace(
        network="demo", init="network", scales=1, steps=MAX_STEPS, adapt_steps=0, strength=1.0, precision=precision
    )
    reason = f"{left:.1f} s left: the one pass, then L-BFGS steps from it until the budget{why}"
    return Choice(True, one_pass, refine, reason, resolve_mode)


def _without_measuring(precision: str, mode=None) -> Tuple[str, str, str]:
    """`(precision, autotune mode, why)` a budget refines with, never measuring: this machine's cached
    measurement where it has one (`mode` as the door was given it); else the rule ("off"), in
    bfloat16 for "auto" on a CPU with `BFLOAT16_FLAGS` unless autotune was turned off (then float32,
    as asked)."""
    if autotune.cached_entries():
        return precision, mode, ""
    if precision == "auto" and autotune.resolved_mode(mode) != "off" and autotune.cpu_flags() & BFLOAT16_FLAGS:
        return "bfloat16", "off", " (bfloat16: this CPU has bfloat16 instructions and has not measured its choice)"
    return precision, "off", ""


FIRST_STEPS_FILE = "budget.json"  # in the cache folder: {machine key: [[seconds, size], ...]}


def _first_steps(data=None) -> list:
    """This machine's (CPU and TensorFlow: `autotune.cpu_key`) remembered first steps: `(seconds
    since the process started, picture size)`, the newest last; [] when none or damaged."""
    try:
        kept = (files.read_cache_json(FIRST_STEPS_FILE) if data is None else data).get(autotune.cpu_key(), [])
        return [(float(s), int(n)) for s, n in kept if float(s) > 0 and int(n) > 0]
    except (ValueError, TypeError):
        return []


def refine_needs(size: int) -> Tuple[float, str]:
    """Whole-process seconds a refine at `size` px needs for its first step and the writing, and
    where the figure comes from: the slowest remembered first step on this machine (scaled by the
    pixels where the picture is larger than the one measured), plus the writing and `MARGIN`; else
    `REFINE_FROM`."""
    kept = _first_steps()
    if not kept:
        return REFINE_FROM, "; not yet measured on this machine"
    first = max(seconds * max(1.0, (size / measured) ** 2) for seconds, measured in kept)
    return first + WRITE_SECONDS + MARGIN, f" on this machine: its first step ended {first:.1f} s in"


def remember_first_step(seconds: float, size: int) -> None:
    """Keeps a budgeted refine's first step (`seconds` since its process started, at `size` px)
    for `refine_needs`, with the last `KEPT_FIRST_STEPS` of this machine; a cache that cannot be
    written only leaves the rule as it was."""
    data = files.read_cache_json(FIRST_STEPS_FILE)
    kept = _first_steps(data) + [(round(seconds, 2), int(size))]
    data[autotune.cpu_key()] = [list(x) for x in kept[-KEPT_FIRST_STEPS:]]
    files.write_cache_json(FIRST_STEPS_FILE, data, "the refine's first step")


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
        self.first_step_end = None  # seconds since the process started, when the first step ended

    def on_run_begin(self, transfer, steps):
        self.last = time.perf_counter()

    def on_step_end(self, transfer, step, loss, terms):
        now = time.perf_counter()
        self.durations.append(now - self.last)
        self.last, self.steps = now, step
        if self.first_step_end is None:
            self.first_step_end = process_seconds()
        recent = self.durations[1:][-3:]
        step = max(recent) if recent else (self.step_estimate or self.durations[0] / 2)
        if now + step + self.write_seconds > self.deadline:
            raise TimeUp(transfer)
