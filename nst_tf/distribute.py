"""A batch split across devices with `tf.distribute`: each replica optimises its own images.

The images of a batch are independent problems (per-image losses, per-image L-BFGS state), so
the replicas share nothing but the network and the style targets: no gradient is all-reduced.
`MirroredStrategy` places one replica per GPU, or per logical CPU device (`strategy(n)` splits
the CPU into `n` of them when there is no GPU; this must happen before TensorFlow starts its
runtime, so call it first).

Each replica runs the same pure step as the one-device run (`optimize.make_step` over
`losses.objective`), carrying its image and optimiser state as tensors from call to call; a
replica's images therefore come out as they would in a one-device batch of the same images.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nst_tf import losses, optimize
from nst_tf.errors import NstError
from nst_tf import driver


def strategy(devices: int) -> tf.distribute.Strategy:
    """A `MirroredStrategy` over `devices` GPUs, or, with no GPU, over `devices` logical CPU
    devices (the CPU is split on first use)."""
    if devices < 1:
        raise NstError(f"--devices must be at least 1, got {devices}")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if devices > len(gpus):
            raise NstError(f"{devices} devices asked for, but this machine has {len(gpus)} GPU(s)")
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(devices)])
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        if devices > 1 and len(tf.config.get_logical_device_configuration(cpu) or ()) != devices:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:  # the runtime has started: what it has is what there is
        pass
    found = len(tf.config.list_logical_devices("CPU"))
    if found < devices:
        raise NstError(
            f"{devices} logical CPU devices asked for but TensorFlow has {found}: the CPU must be split "
            "before TensorFlow's first operation (nst_tf.distribute.strategy first)"
        )
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])


def multi_worker_strategy() -> tf.distribute.Strategy:
    """A `MultiWorkerMirroredStrategy` over the cluster that the `TF_CONFIG` environment variable
    describes (every worker runs the same command with its own `task`). Call it before any other
    TensorFlow operation."""
    import json
    import os

    try:
        spec = json.loads(os.environ["TF_CONFIG"])
        workers = spec["cluster"]["worker"]
        spec["task"]["index"]
    except (KeyError, TypeError, ValueError) as err:
        raise NstError(f"TF_CONFIG must be JSON with cluster.worker and task.index ({type(err).__name__}: {err})")
    if not workers:
        raise NstError("TF_CONFIG names no worker")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files: always, but under a multi-worker strategy only
    the chief (the task "chief", or worker 0 when the cluster has none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def split(state, strategy: tf.distribute.Strategy, model, targets, spec, opt, jit_compile: bool):
    """A run's batch split across `strategy`'s replicas (each gets consecutive images, at least
    one), for the one driver (`nst_tf.driver.drive`): given the run's state (`driver.RunState`), its
    feature model, targets, objective (`config.Objective`), optimisation options
    (`config.Optimisation`) and whether to compile with XLA, returns `(stepper, the split run state, join)`, where `join(state)` brings a split run
    state back into one.

    The optimiser starts afresh on the replicas. A non-finite step is an error here (the
    one-device run recovers from it: its Adam rate lives in a variable, which one XLA-compiled step
    per device cannot share).
    """

    images = state.image.numpy()
    replicas = strategy.num_replicas_in_sync
    if len(images) < replicas:
        raise NstError(
            f"{len(images)} image(s) for {replicas} devices: give each device at least one image "
            "(or use fewer --devices)"
        )
    optimizer = optimize.make_optimizer(opt)
    bounds = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(len(images)), replicas)])

    def shard(value):
        """A `[B, ...]` array as per-replica slices of the batch."""
        value = np.asarray(value)
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(
                value[bounds[ctx.replica_id_in_sync_group] : bounds[ctx.replica_id_in_sync_group + 1]]
            )
        )

    def gather(value) -> np.ndarray:
        """Per-replica values joined along the batch axis (a scalar, the same on each, once)."""
        parts = [v.numpy() for v in strategy.experimental_local_results(value)]
        return np.concatenate(parts) if parts[0].ndim else parts[0]

    def pure_step(image, state, content):
        mine = losses.Targets(content=content, styles=targets.styles)
        return optimize.make_step(lambda x: losses.objective(model, mine, spec, x, per_image=True), optimizer)(
            image, state
        )

    # XLA compiles each replica's step for its own device, as on one: one compiled step per
    # replica, so no compiled step reaches for another device's variables.
    compiled_steps = {}

    def replica_step(image, state, content):
        replica = int(tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group))
        if replica not in compiled_steps:
            compiled_steps[replica] = optimize.CompiledStep(pure_step, jit_compile=jit_compile)
        image, state, loss, terms, finite = compiled_steps[replica](image, state, content)
        return image, state, loss, terms, tf.reshape(finite, [1])  # [1]: each replica's, gathered

    content = {name: shard(value) for name, value in targets.content.items()}
    compiled = tf.function(lambda x, state: strategy.run(replica_step, args=(x, state, content)), autograph=False)

    def recover(opt_state):
        raise NstError(
            "the loss became non-finite in a run across devices; run it on one device (which recovers) "
            "or lower --learning_rate"
        )

    def join(state):
        return state._replace(
            image=tf.constant(gather(state.image)),
            opt_state=tf.nest.map_structure(lambda v: tf.constant(gather(v)), state.opt_state),
        )

    x = shard(images)
    opt_state = tf.function(lambda x: strategy.run(optimizer.init, args=(x,)), autograph=False)(x)
    return driver.Stepper(compiled, gather, recover), state._replace(image=x, opt_state=opt_state), join
