"""The one loop around the compiled step: N steps over an explicit run state, with callbacks,
signal stop and non-finite recovery.

The run state (`RunState`, like Flax's `TrainState`) is the image, the optimiser's state, the steps
taken at this scale and the scale's index: tensors and numbers, nothing mutable. A `Stepper` says how
to take a step on some devices (one device: a `optimize.CompiledStep`; several: `nst_tf.distribute`
splits the batch), how to bring a value to the host, and how to recover the optimiser state after a
non-finite step. `drive` is the only Python loop that calls a compiled step; the SavedModel export
runs the same pure step in a `tf.while_loop`.

The run that owns the state (a `StyleTransfer`) is what callbacks receive: `drive` keeps
`owner.state` current after every step (so a callback, a checkpoint or an interruption sees the
image of the step just taken) and appends to `owner.recoveries`. A signal stops the run through
`callbacks.StopOnSignal`, which raises after the step under way (or, in a tiled step, after the
tile under way, leaving the state at the last step).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from nst_tf.errors import NstError

# Non-finite steps survived (each restored and retried more carefully) before a run gives up.
MAX_RECOVERIES = 5


class RunState(NamedTuple):
    """image: `[B, H, W, 3]` float32 in [0, 1] (per-replica values across devices); opt_state: the
    optimiser's NamedTuple of tensors; step: steps taken at this scale; scale: the scale's index in
    a coarse-to-fine run."""

    image: Any
    opt_state: Any
    step: int = 0
    scale: int = 0


class Stepper(NamedTuple):
    """How to take steps somewhere: `step(image, opt_state) -> (image, opt_state, loss, terms,
    finite)`; `to_host(value) -> np.ndarray` (replicas' values joined along the batch);
    `recover(opt_state) -> (opt_state, what was done)`."""

    step: Callable
    to_host: Callable
    recover: Callable


def drive(owner, steps: int, stepper: Stepper, callbacks: Iterable = ()) -> RunState:
    """Takes `steps` steps from `owner.state`; returns the new state (also left in `owner.state`).

    Callbacks get `owner`, the step within this call (from 1), and the loss and terms of the image
    before that step, averaged over the batch. A step whose loss or new image is not finite is
    undone: the state before it is kept, `stepper.recover` makes the optimiser more careful, and the
    step is taken again; after `MAX_RECOVERIES` such steps the run stops with an `NstError`.
    """
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.on_run_begin(owner, steps)
    done = 0
    while done < steps:
        state = owner.state
        image, opt_state, loss, terms, finite = stepper.step(state.image, state.opt_state)
        if not np.all(stepper.to_host(finite)):
            owner.state = _recover(owner, state, stepper)
            continue
        owner.state = state._replace(image=image, opt_state=opt_state, step=state.step + 1)
        done += 1
        if callbacks:
            mean = lambda value: float(np.mean(stepper.to_host(value)))  # noqa: E731
            loss, terms = mean(loss), {name: mean(value) for name, value in terms.items()}
            for cb in callbacks:
                cb.on_step_end(owner, done, loss, terms)
    for cb in callbacks:
        cb.on_run_end(owner)
    return owner.state


def _recover(owner, state: RunState, stepper: Stepper) -> RunState:
    if len(owner.recoveries) >= MAX_RECOVERIES:
        raise NstError(
            f"the loss or the image became non-finite {len(owner.recoveries) + 1} times (last after step "
            f"{state.step}); try --precision=float32, a smaller --learning_rate or smaller weights"
        )
    opt_state, action = stepper.recover(state.opt_state)
    owner.recoveries.append((state.step, action))
    sys.stderr.write(
        f"nst-tf: after step {state.step} the loss or the image became non-finite: restored that "
        f"step's image and {action} (retry {len(owner.recoveries)} of {MAX_RECOVERIES})\n"
    )
    return state._replace(opt_state=opt_state)
