"""The run plan: a run's options resolved once, at the door, into what the code below acts on.

Every door (the command lines, `stylize` and `StyleTransfer`, the batch runner, Beam, the exports,
the trainer) calls `resolve` once; the code below it takes the `Plan` and never calls `autotune` or
re-tests option combinations:

- `painter`: which product paints: "optimisation", "network" (one forward pass of `--network`) or
  "warm" (the optimisation started from the network's painting);
- `config`: the options with "auto" precision and XLA replaced by this machine's measured choice
  (`nst_tf.autotune`; for a network, its encoder's precision without XLA; for an export, XLA
  only when asked for, since TF Serving on CPU runs XLA only with a server flag);
- `choice`: what was chosen and why;
- `scales`: each scale's size, steps, estimated memory and time, and tile (`nst_tf.planner`),
  once the images' sizes are known (`with_scales`);
- `devices`: how many devices a batch is split across.
"""

from __future__ import annotations

import sys
from typing import NamedTuple, Optional, Sequence, Tuple

from nst_tf import autotune
from nst_tf.networks import options as network_options
from nst_tf.config import Config, make_config
from nst_tf import planner

PAINTERS = ("optimisation", "network", "warm")


def painter_of(cfg: Config) -> str:
    """Which product paints with these options (see the module docstring)."""
    if cfg.init == "network":
        return "warm"
    return "network" if cfg.network else "optimisation"


class Plan(NamedTuple):
    config: Config
    choice: autotune.Choice
    painter: str
    devices: int = 1
    scales: Optional[Tuple] = None  # planner.ScalePlan per scale, from `with_scales`

    def with_scales(self, content_hw, style_hws: Sequence = (), batch: int = 1, available=None) -> "Plan":
        """The plan with each scale's size, memory, time and tile for a content image of (height,
        width) `content_hw` (and styles of `style_hws`; `batch` contents of that size together),
        the tiles chosen against the memory `available` (default: what the run's device has free,
        `device_bytes`)."""

        available = device_bytes() if available is None else available
        return self._replace(scales=tuple(planner.plan_scales(self.config, content_hw, style_hws, batch, available)))


def gpu_free_bytes() -> Optional[int]:
    """Bytes the first GPU can still give TensorFlow (its allocator's limit less what it holds), or
    None without TensorFlow loaded or without a GPU."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not tf.config.list_physical_devices("GPU"):
        return None
    from tensorflow.python.client import device_lib  # the allocator's limit per device (no public API)

    limit = next((d.memory_limit for d in device_lib.list_local_devices() if d.device_type == "GPU"), None)
    if limit is None:
        return None
    return max(0, int(limit) - int(tf.config.experimental.get_memory_info("GPU:0")["current"]))


def device_bytes() -> Optional[int]:
    """The memory a run's tiles are chosen against: the GPU's free memory where the run computes on a
    GPU (`gpu_free_bytes`), else the host's available memory (`planner.available_bytes`). The
    estimates are fitted to a CPU's peak resident memory; on a GPU they count the same tensors."""

    gpu = gpu_free_bytes()
    return gpu if gpu is not None else planner.available_bytes()


def network_precision(precision: str, weights: str = "auto", mode: Optional[str] = None) -> str:
    """A network painter's VGG precision: `precision`, or for "auto" this machine's choice as a door's
    plan makes it for a network (`autotune`, measured once): for painters built outside a door."""
    if precision != "auto":
        return precision
    return autotune.resolve("auto", "off", "gram", mode, weights).precision


def resolve(config=None, mode: Optional[str] = None, export: bool = False, devices: int = 1, **options) -> Plan:
    """The plan of a run with `config` (a `Config`, or a `Plan`, returned as it is when no `options`
    change it) and `options` (any `Config` field by name). mode: how "auto" is chosen (autotune's
    cached, remeasure or off; default `$NST_TF_AUTOTUNE`). export: for a SavedModel (XLA only when
    jit="on")."""
    if isinstance(config, Plan):
        if not options:
            return config
        config = config.config
    cfg = make_config(config, **options)
    painter = painter_of(cfg)
    if painter == "network" and not network_options.runs_vgg(cfg.network, cfg.adapt_steps):
        # One pass of a network without a VGG (Magenta's, not adapting; a fixed-style network): nothing
        # to tune, so nothing is measured and no VGG is built.
        choice = autotune.Choice(
            "float32" if cfg.precision == "auto" else cfg.precision, False, "one pass: no VGG to tune"
        )
    elif painter == "network":  # the encoder's precision; the forward pass runs without XLA
        choice = autotune.resolve(cfg.precision, "off", "gram", mode, cfg.weights)
    else:
        jit = ("on" if cfg.jit == "on" else "off") if export else cfg.jit
        choice = autotune.resolve(cfg.precision, jit, cfg.style_loss, mode, cfg.weights)
    jit = "on" if choice.xla else "off"
    if (cfg.precision, cfg.jit) != (choice.precision, jit):
        cfg = cfg.replace(precision=choice.precision, jit=jit)
    return Plan(cfg, choice, painter, devices)
