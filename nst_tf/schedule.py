"""The coarse-to-fine schedule and the output size, written once for two number systems.

`stylize` and the planner need them on Python numbers (`--dry_run` loads no TensorFlow); the
SavedModel export needs them on tensors, because a request chooses its size. Each function here
takes `ops`, `PY` or `TF`, and does the same arithmetic in both: float64 products and powers,
rounding half to even (Python's `round` and `tf.round` alike), so a served scale plan is the local
one. A leaf: no nst_tf imports, TensorFlow only inside `TF`'s operations.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Tuple

# Coarse to fine skips scales smaller than this unless start_size asks for them.
MIN_SCALE_SIZE = 64


class Ops(NamedTuple):
    """The few operations the schedule needs: `real(x)` (float64), `whole(x)` (round half to
    even, to an integer), `at_least_1(n)`, `largest(values)`."""

    real: Any
    whole: Any
    at_least_1: Any
    largest: Any


PY = Ops(real=float, whole=round, at_least_1=lambda n: max(1, n), largest=max)


def _tf():
    import tensorflow as tf

    return tf


TF = Ops(
    real=lambda x: _tf().cast(x, _tf().float64),
    whole=lambda x: _tf().cast(_tf().round(x), _tf().int32),
    at_least_1=lambda n: _tf().maximum(1, n),
    largest=lambda values: _tf().reduce_max(_tf().stack(values)),
)


def fit_size(hw, max_side, ops: Ops = PY) -> Tuple[Any, Any]:
    """(height, width) scaled so the longest side is `max_side`, aspect kept."""
    h, w = ops.real(hw[0]), ops.real(hw[1])
    scale = ops.real(max_side) / ops.largest([h, w])
    return ops.at_least_1(ops.whole(h * scale)), ops.at_least_1(ops.whole(w * scale))


class Scale(NamedTuple):
    """One scale of a coarse-to-fine run: the output's longest side, the style's (None: the same
    as the output's), the steps, and whether it runs (a coarse scale under `MIN_SCALE_SIZE` px
    does not, unless start_size asked for it)."""

    size: Any
    style_size: Any
    steps: int
    runs: Any


def scale_plan(painting, opt, size, ops: Ops = PY) -> List[Scale]:
    """The scales of the optimisation options `opt` (`config.Optimisation`) for an output of
    longest side `size` (`painting.size` locally; a request's in the export): `opt.scales` sizes
    growing geometrically from `opt.start_size` (default: size / 2**(scales-1)) to `size`, each
    style side in proportion (`painting`: `config.Picture`, its style size or scale)."""
    n = opt.scales
    size_f = ops.real(size)
    if opt.start_size:
        start = ops.real(opt.start_size)
    else:
        start = ops.real(ops.at_least_1(ops.whole(size_f / 2.0 ** (n - 1))))
    plan = []
    for i in range(n):
        if i == n - 1:
            scale_size, runs = size, True
        else:
            scale_size = ops.whole(start * (size_f / start) ** (i / (n - 1)))
            runs = True if opt.start_size else scale_size >= MIN_SCALE_SIZE
        if painting.style_size is not None:
            style_size = ops.at_least_1(ops.whole(painting.style_size * ops.real(scale_size) / painting.size))
        elif painting.style_scale != 1:
            style_size = ops.at_least_1(ops.whole(ops.real(scale_size) * painting.style_scale))
        else:
            style_size = None
        plan.append(Scale(scale_size, style_size, opt.scale_steps[i] if opt.scale_steps else opt.steps, runs))
    return plan
