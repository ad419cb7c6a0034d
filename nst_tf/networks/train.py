"""Training a `StyleNetwork` or Magenta's arbitrary network (`mode="arbitrary"`: fine-tuning the
published weights, or a fresh transform, on your photos and paintings) with nst_tf's own objective,
or the universal painter's decoders (`mode="decoder"`: each level reconstructs the photo,
`universal.reconstruction_loss`), through the same driver as an optimisation.

The loss of a batch is `losses.objective` on the frozen VGG19 (content, any style statistic, TV),
with each image's content target from its own content crop and its style target from its own style
crop: one implementation for optimising an image and for training a network. The step (a
`tf.function`, XLA and the VGG's precision as this machine's `auto` chose, or as pinned) computes
the gradient of the transform network and the embedding source, and applies it only when the loss
and every gradient are finite; `nst_tf.driver.drive` runs it with callbacks (progress, TensorBoard,
checkpoints, signal stop) and counts the skipped steps as recoveries. Across devices a
`tf.distribute` strategy runs the step on each replica's share of the batch.

Checkpoints (`tf.train.CheckpointManager`: the network, the optimiser, the step) every
`checkpoint_every` steps and on Ctrl-C; `resume=True` continues from the latest, and the data
stream (`data.batches(start=step)`) gives the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from nst_tf import callbacks as callbacks_lib, driver, features, files, image_io, losses
from nst_tf import weights as weights_lib
from nst_tf.errors import NstError, Interrupted
from nst_tf.networks import arbitrary, data, models, universal
from nst_tf.networks.options import MODES, TrainConfig  # noqa: F401  (re-exported)
from nst_tf import plan as plan_lib
from nst_tf.config import Config
from nst_tf import metrics
from nst_tf import distribute
from nst_tf.networks import use


class Trainer:
    """One training run: the network, its optimiser, the data and the compiled step. `state` is
    the driver's `RunState` (image: the last batch's outputs; step: steps taken)."""

    def __init__(self, tc: TrainConfig, strategy=None, plan=None):
        self.tc = tc
        plan = plan or plan_for(tc.objective)
        # The objective and the precision / XLA the plan resolved: all the run reads of the plan's config.
        self.spec, self.runtime, self.choice = plan.config.objective, plan.config.runtime, plan.choice
        self.contents = data.scan(tc.contents, "content")
        self.styles = data.scan(tc.styles, "style") if tc.styles else None
        if tc.mode == "table" and not self.styles.files:
            raise NstError("a table of styles needs style image files (TFRecords have no style index)")
        self.strategy = strategy or tf.distribute.get_strategy()
        keras.utils.set_random_seed(tc.seed)  # the initial weights follow the seed (so do Python's and NumPy's)
        with self.strategy.scope():
            if tc.mode == "decoder":
                self.network = universal.UniversalNetwork(range(1, tc.levels + 1), width=tc.alpha)
            elif tc.mode == "arbitrary":
                self.network = arbitrary_start(tc.start)
            else:
                names = tuple(os.path.splitext(os.path.basename(p))[0] for p in self.styles.files)
                self.network = models.StyleNetwork(
                    num_styles=len(self.styles.files) if tc.mode == "table" else 0,
                    predict=tc.mode == "predict",
                    alpha=tc.alpha,
                    style_names=names if tc.mode == "table" else (),
                )
            # Keras' loss-scale wrapper skips an update whose gradients are not finite (on every
            # replica alike); at scale 1 and no growth it changes nothing else.
            self.optimizer = keras.optimizers.LossScaleOptimizer(
                keras.optimizers.Adam(tc.rate), initial_scale=1.0, dynamic_growth_steps=2**31 - 1
            )
            self.optimizer.build(self.network.trainable_variables)
            self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        if tc.mode == "decoder":  # VGG19 to each level: the targets in one pass, each output to its own level
            arrays = weights_lib.load(self.spec.weights, "vgg19")
            self.vgg = universal.Encoder(arrays, self.network.levels, self.runtime.precision)
        else:
            layers = list(self.spec.content_layers) + list(self.spec.style_layers)
            arrays = weights_lib.load(self.spec.weights, self.spec.backbone)  # read and decoded once
            self.vgg = features.build_feature_model(
                layers,
                self.spec.backbone,
                layer_weights=arrays,
                precision=self.runtime.precision,
                pooling=self.spec.pooling,
            )
        self.statistics = None
        if tc.mode == "predict":  # the predict head's VGG19 (the loss's arrays when it is VGG19 too)
            vgg19 = arrays if self.spec.backbone == "vgg19" else weights_lib.load(self.spec.weights, "vgg19")
            self.statistics = models.style_statistics(layer_weights=vgg19)
        self.checkpoint = tf.train.Checkpoint(network=self.network, optimizer=self.optimizer, step=self.step_var)

        self.chief = distribute.is_chief(self.strategy)
        self.manager = None
        if tc.checkpoint_dir:
            # Under several workers every one saves (saving may hold collectives); only the chief's
            # checkpoints are kept, the others' go to a scratch folder.
            folder = tc.checkpoint_dir if self.chief else tempfile.mkdtemp(prefix="nst_tf_worker_checkpoints_")
            self.manager = tf.train.CheckpointManager(self.checkpoint, folder, max_to_keep=2)
            if tc.resume and self.manager.latest_checkpoint:
                self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        self.state = driver.RunState(image=None, opt_state=(), step=int(self.step_var.numpy()))
        self.recoveries = []
        self._step = self._compiled_step()

    @functools.cached_property
    def painter(self):
        """The network being trained, ready to paint (for TensorBoard and the held-out report)."""
        if self.tc.mode == "arbitrary":
            return arbitrary.ArbitraryPainter(self.network)
        return use.NetworkPainter(self.network, self.statistics)

    def embedding(self, style, label):
        if self.tc.mode == "arbitrary":  # the predictor sees the style crop whole (256 px as published)
            return self.network.predict_net(style)
        if self.network.table is not None:
            return tf.gather(tf.convert_to_tensor(self.network.table), label)
        return self.network.head(self.statistics(style))

    def loss(self, content, style=None, label=None):
        if self.tc.mode == "decoder":
            targets = self.vgg.levels(content)
            outputs = self.network(targets)
            total, terms = universal.reconstruction_loss(self.vgg, content, targets, outputs, self.tc.feature_weight)
            return outputs[self.network.levels[-1]], total, terms
        output = self.network([content, self.embedding(style, label)])
        targets = losses.compute_targets(self.vgg, content, style, self.spec)
        total, terms = losses.objective(self.vgg, targets, self.spec, output)
        return output, total, terms

    def _replica_step(self, *batch):
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            output, total, terms = self.loss(*batch)
            scaled = self.optimizer.scale_loss(total / self.strategy.num_replicas_in_sync)
        grads = tape.gradient(scaled, variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads] + [tf.math.is_finite(total)])
        self.optimizer.apply_gradients(zip(grads, variables))  # skipped when not finite
        self.step_var.assign_add(tf.cast(finite, tf.int64))
        return output, total, terms, finite

    def _compiled_step(self):
        if self.strategy.num_replicas_in_sync == 1:
            return tf.function(self._replica_step, jit_compile=self.runtime.jit == "on", autograph=False)
        # The whole strategy.run in one tf.function: the gradients' all-reduce is a
        # synchronisation point, which a nested tf.function may not hold.
        return tf.function(lambda *batch: self.strategy.run(self._replica_step, batch), autograph=False)

    def dataset(self):
        tc = self.tc
        ds = data.batches(self.contents, self.styles, tc.batch_size, tc.size, tc.style_size, tc.seed, self.state.step)
        return self.strategy.experimental_distribute_dataset(ds) if self.strategy.num_replicas_in_sync > 1 else ds

    def to_host(self, value):
        if self.strategy.num_replicas_in_sync > 1:
            parts = self.strategy.experimental_local_results(value)
            return np.concatenate([np.atleast_1d(np.asarray(p)) for p in parts])
        return np.asarray(value)

    def stepper(self) -> driver.Stepper:
        batches = iter(self.dataset())

        def step(image, opt_state):
            output, total, terms, finite = self._step(*next(batches))
            return output, opt_state, total, terms, finite

        return driver.Stepper(step, self.to_host, lambda opt_state: (opt_state, "skipped that batch's update"))

    def run(self, callbacks=()) -> driver.RunState:
        remaining = self.tc.steps - self.state.step
        if remaining > 0:
            driver.drive(self, remaining, self.stepper(), callbacks)
        return self.state

    def save_checkpoint(self):
        if self.manager:
            self.manager.save(checkpoint_number=self.state.step)

    def save_network(self, path: Optional[str] = None) -> str:
        """The network (trainable parts only) as a `.keras` file, written atomically."""
        path = path or self.tc.output
        if not self.chief:  # the chief writes the network of a multi-worker run
            return path
        return files.write_file(path, self.network.save)


class TrainingCheckpoints(callbacks_lib.Callback):
    """Saves the trainer's checkpoint every `every` steps."""

    def __init__(self, every: int):
        self.every = every

    def on_step_end(self, trainer, step, loss, terms):
        if trainer.state.step % self.every == 0:
            trainer.save_checkpoint()


class TrainProgress(callbacks_lib.Callback):
    """One line on stderr, rewritten: step, loss, images/s and ETA."""

    def __init__(self, batch_size: int, stream=None, min_interval: float = 0.5):
        self.batch_size, self.stream, self.min_interval = batch_size, stream or sys.stderr, min_interval

    def on_run_begin(self, trainer, steps):
        self.steps, self.start, self.last, self.first = steps, time.perf_counter(), 0.0, trainer.state.step

    def on_step_end(self, trainer, step, loss, terms):
        now = time.perf_counter()
        if now - self.last < self.min_interval and step < self.steps:
            return
        self.last, elapsed = now, now - self.start
        rate = step * self.batch_size / elapsed
        eta = (self.steps - step) * elapsed / step
        self.stream.write(
            f"\rstep {trainer.state.step}/{self.first + self.steps}  loss {loss:.4g}  {rate:.1f} images/s  "
            f"elapsed {elapsed:.0f} s  eta {eta:.0f} s "
        )
        self.stream.flush()

    def on_run_end(self, trainer):
        self.stream.write("\n")


class TrainBoard(callbacks_lib.Callback):
    """TensorBoard: the loss terms every `every` steps; the held-back contents styled with the
    first style (a table's first row, or the first style file) every `image_every` steps."""

    def __init__(self, logdir: str, every: int, held_out, image_every: int):
        self.writer = tf.summary.create_file_writer(logdir)
        self.every, self.image_every, self.held_out = every, image_every, held_out

    def on_step_end(self, trainer, step, loss, terms):
        n = trainer.state.step
        with self.writer.as_default(step=n):
            if n % self.every == 0:
                for name, value in [("total", loss)] + list(terms.items()):
                    callbacks_lib.write_scalar(f"loss/{name}", value, n)
            if self.held_out and n % self.image_every == 0:
                for k, image in enumerate(sample_outputs(trainer, self.held_out)):
                    callbacks_lib.write_image(f"held_out/{k}", image, n)
        self.writer.flush()


def sample_outputs(trainer: Trainer, contents, size: int = 256):
    if trainer.tc.mode == "decoder":  # the deepest decoder's reconstruction of each held-out photo
        deepest = trainer.network.levels[-1]
        return [
            universal.reconstruct(trainer.network, trainer.vgg, image_io.load_image(c, size))[deepest] for c in contents
        ]
    painter = trainer.painter
    style = trainer.styles.files[0] if trainer.styles.files else None
    return [painter.paint(c, style if painter.takes_paintings else None, size=size) for c in contents]


def arbitrary_start(start: str) -> arbitrary.ArbitraryNetwork:
    """Arbitrary mode's network before its first step (`TrainConfig.start`): the published weights
    (or a network file) to fine-tune, or for "scratch" a fresh transform and projection (seeded)
    on the published MobileNetV2. Only the MobileNetV2 is frozen: its batch norms stay in inference."""
    network = arbitrary.load_arbitrary(arbitrary.BUNDLED_NAME if start == "scratch" else start)
    if start == "scratch":
        fresh = arbitrary.ArbitraryNetwork()
        base = [layer for layer in network.predict_net.layers if isinstance(layer, keras.Model)][0]
        fresh_base = [layer for layer in fresh.predict_net.layers if isinstance(layer, keras.Model)][0]
        fresh_base.set_weights(base.get_weights())
        network = fresh
    for layer in network.predict_net.layers:
        if isinstance(layer, keras.Model):
            layer.trainable = False
    return network


def plan_for(objective, precision: str = "auto", jit: str = "auto", mode=None):
    """The run plan of a training run (`nst_tf.plan`): `objective`'s loss with this precision and XLA
    ("auto": this machine's measured choice)."""

    return plan_lib.resolve(Config(**vars(objective), precision=precision, jit=jit), mode)


def train_network(tc: TrainConfig, progress: bool = True, callbacks=(), strategy=None, plan=None) -> dict:
    """Trains (or resumes) the network `tc` describes, writes it to `tc.output`, and returns the
    report: steps, seconds, seconds per step, images/s, skipped files and steps, and the evaluate
    report of the held-back images (`nst_tf.metrics.evaluate` of each output). plan: precision and
    XLA as the door resolved them (`plan_for`; default: "auto" for both)."""
    trainer = Trainer(tc, strategy=strategy, plan=plan)
    skipped = trainer.contents.skipped + (trainer.styles.skipped if trainer.styles else ())
    for path, why in skipped:
        sys.stderr.write(f"nst-tf-train: skipped {path}: {why}\n")
    cbs = list(callbacks)
    if progress:
        cbs.append(TrainProgress(tc.batch_size))
    if trainer.manager:
        cbs.append(TrainingCheckpoints(tc.checkpoint_every))
    if tc.logdir:
        cbs.append(TrainBoard(tc.logdir, tc.log_every, tc.held_out, max(tc.log_every, tc.steps // 10)))
    first = trainer.state.step
    start = time.perf_counter()
    try:
        trainer.run(cbs)
    except (Interrupted, KeyboardInterrupt):
        trainer.save_checkpoint()
        trainer.save_network()
        raise
    seconds = time.perf_counter() - start
    trainer.save_checkpoint()
    trainer.save_network()
    steps = trainer.state.step - first
    report = {
        "network": tc.output,
        "steps": trainer.state.step,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(steps, 1), 4),
        "images_per_second": round(steps * tc.batch_size / seconds, 2) if seconds else None,
        "skipped_files": len(skipped),
        "skipped_steps": len(trainer.recoveries),
        "precision": trainer.runtime.precision,
        "held_out": evaluate_held_out(trainer, tc.held_out),
    }
    return report


def evaluate_held_out(trainer: Trainer, contents: Sequence[str], size: int = 256) -> list:
    """`nst_tf.metrics.evaluate` of the network's output for each held-back content with each style
    (decoders: each level's reconstruction error)."""
    if not contents:
        return []
    if trainer.tc.mode == "decoder":
        return [
            {"content_image": c, **universal.reconstruction_report(trainer.network, trainer.vgg, c, size)}
            for c in contents
        ]

    painter, model = trainer.painter, metrics.feature_model(trainer.spec.weights)  # one model for every row
    rows = []
    for content in contents:
        for k, style in enumerate(trainer.styles.files):
            kwargs = {} if painter.takes_paintings else {"style_index": k}
            image = painter.paint(content, style if painter.takes_paintings else None, size=size, **kwargs)
            report = metrics.evaluate(image, content, style, model=model)  # evaluate reads the files
            rows.append({"content_image": content, "style_image": style, **report})
    return rows


def write_report(report: dict, path: str) -> None:
    with files.atomic_file(path, "w") as f:
        json.dump(report, f, indent=2)
