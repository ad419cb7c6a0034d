"""Checkpoint and resume (`tf.train.Checkpoint`): the image, the optimiser state, the step, the
scale, and a hash of the settings and input images, so a run can continue where it stopped.

A checkpoint is written every `checkpoint_every` steps, at the end of each scale and when a run is
interrupted by a signal. Resuming restores the latest one into the run at its scale and takes the
remaining steps: the optimiser state is restored exactly, so on CPU the result is the one an
uninterrupted run gives.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf

from nst_tf.callbacks import Callback
from nst_tf import config as config_lib
from nst_tf.errors import NstError

MAX_TO_KEEP = 2


# Bumped when what a checkpoint holds changes shape (2: the L-BFGS state gained a batch axis), so
# an older checkpoint is refused as made with other settings rather than failing to restore.
FORMAT = 2


def settings_hash(settings: dict, images) -> str:
    """`config.settings_hash` of the settings that shape the result (`config.result_settings`),
    the checkpoint format, and the input images (arrays: content, styles, masks)."""
    blobs = []
    for image in images:
        image = np.ascontiguousarray(image, np.float32)
        blobs.append(str(image.shape).encode() + image.tobytes())
    return config_lib.settings_hash({"format": FORMAT, **settings}, blobs)


def _tracked(state, optimizer, settings: str = ""):
    """What a checkpoint holds: the run state (`nst_tf.driver.RunState`) as variables, the
    settings hash, and the optimiser's learning-rate variable (which recoveries change)."""
    values = {
        "variables": [tf.Variable(v) for v in [state.image] + tf.nest.flatten(state.opt_state)],
        "step": tf.Variable(state.step, dtype=tf.int64),
        "scale": tf.Variable(state.scale, dtype=tf.int64),
        "settings": tf.Variable(settings),
    }
    rate = getattr(optimizer, "learning_rate", None)
    if isinstance(rate, tf.Variable):
        values["learning_rate"] = rate
    return values


class Checkpoints(Callback):
    """Saves the run into `directory` every `every` steps and at the end of each scale."""

    def __init__(self, directory: str, every: int, settings: str):
        self.directory, self.every, self.settings = directory, every, settings
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as err:
            raise NstError(f"cannot create the checkpoint folder {directory}: {err.strerror}") from None

    def save(self, transfer) -> str:
        checkpoint = tf.train.Checkpoint(**_tracked(transfer.state, transfer.optimizer, self.settings))
        manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=MAX_TO_KEEP)
        return manager.save(checkpoint_number=_number(transfer))

    def on_step_end(self, transfer, step, loss, terms):
        if step % self.every == 0:
            self.save(transfer)

    def on_run_end(self, transfer):
        self.save(transfer)


def _number(transfer) -> int:
    """Checkpoints are numbered by scale and step, so the latest is the furthest along."""
    return transfer.scale_index * 10**7 + transfer.step_count


class Resume(NamedTuple):
    """The latest checkpoint in a folder: its path, scale index and step within that scale."""

    path: str
    scale: int
    step: int

    def restore(self, transfer) -> None:
        """Loads the checkpoint's run state (image, optimiser state, step) into `transfer` (a run at
        its scale, whose state has the checkpoint's shapes)."""
        tracked = _tracked(transfer.state, transfer.optimizer)
        del tracked["settings"]
        try:
            tf.train.Checkpoint(**tracked).restore(self.path).assert_existing_objects_matched()
        except (ValueError, AssertionError, tf.errors.OpError) as err:
            raise NstError(
                f"cannot restore {self.path} into this run ({str(err).splitlines()[0]}); "
                "resume with the settings it was made with, or choose another --checkpoint_dir"
            ) from None
        image, *opt_state = [v.read_value() for v in tracked["variables"]]
        transfer.state = transfer.state._replace(
            image=image,
            opt_state=tf.nest.pack_sequence_as(transfer.state.opt_state, opt_state),
            step=int(tracked["step"].numpy()),
        )


def for_run(outputs, settings: dict, images) -> Tuple[Checkpoints, Optional[Resume]]:
    """A run's checkpoints, in `outputs.checkpoint_dir` (`outputs`: `config.Outputs`): the saver
    (a callback) for the run with the result-shaping `settings` (`config.result_settings`) on
    `images` (content, styles, masks: arrays), and with `outputs.resume` the checkpoint to resume
    from (None: from the start)."""
    digest = settings_hash(settings, images)
    resume = latest(outputs.checkpoint_dir, digest, outputs.force) if outputs.resume else None
    if outputs.resume and resume is None:
        sys.stderr.write(f"nst-tf: no checkpoint in {outputs.checkpoint_dir} yet: starting from the beginning\n")
    return Checkpoints(outputs.checkpoint_dir, outputs.checkpoint_every, digest), resume


def latest(directory: str, settings: str, force: bool = False) -> Optional[Resume]:
    """The latest checkpoint in `directory` (None if there is none); an `NstError` if it was made
    with other settings or images, unless `force`."""
    path = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    if path is None:
        return None
    try:
        reader = tf.train.load_checkpoint(path)
        saved = reader.get_tensor("settings/.ATTRIBUTES/VARIABLE_VALUE").decode()
        scale = int(reader.get_tensor("scale/.ATTRIBUTES/VARIABLE_VALUE"))
        step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError) as err:
        raise NstError(f"{path} is not an nst_tf checkpoint ({str(err).splitlines()[0]})") from None
    if saved != settings and not force:
        raise NstError(
            f"the checkpoint {path} was made with other settings or input images (hash {saved}, now "
            f"{settings}); resume with the same flags and images, pass --force, or use another --checkpoint_dir"
        )
    return Resume(path, scale, step)
