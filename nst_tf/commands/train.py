"""nst-tf-train: train a network that paints in one forward pass.

    nst-tf-train --flagfile=configs/train_universal.cfg --resume
    nst-tf-train --contents=photos/ --styles=paintings/ --mode=predict --output=mine.keras
    nst-tf-train --contents=photos/ --styles=paintings/ --mode=arbitrary --output=mine.keras  # Magenta's network, fine-tuned

Writes the network (.keras), its report beside it (mine.keras -> mine.report.json, with the
evaluate report of --held_out images), checkpoints (--checkpoint_dir, --resume) and TensorBoard
logs (--logdir). The loss takes the stylise command's objective flags (layers, weights, style
statistic, VGG weights); --precision and --jit as there.
"""

import dataclasses
import os
import sys

from absl import flags

from nst_tf import config as config_lib
from nst_tf.commands import common
from nst_tf.errors import Interrupted, NstError
from nst_tf.networks.options import TrainConfig
from nst_tf import image_io, planner

NAME = "nst-tf-train"


def define():

    common.define_field_flags([f for f in dataclasses.fields(TrainConfig) if f.name != "objective"])
    common.define_field_flags(dataclasses.fields(config_lib.Objective))
    common.define_field_flags([f for f in dataclasses.fields(config_lib.Config) if f.name in ("precision", "jit")])
    common.define_autotune_flag()
    flags.DEFINE_boolean("progress", True, "Show a progress line on stderr.")
    flags.DEFINE_boolean("memory_check", True, "Refuse training that will not fit the available memory.")


def report_path(output: str) -> str:
    """Where the training report goes: beside the network, `mine.keras` -> `mine.report.json`."""
    return os.path.splitext(output)[0] + ".report.json"


def main(argv) -> int:
    """Trains a network (`nst_tf.networks.train_network`), writes it and its report (JSON)."""
    fv = flags.FLAGS
    try:
        common.no_arguments(argv)

        values = {f.name: fv[f.name].value for f in dataclasses.fields(TrainConfig) if f.name != "objective"}
        values.update({k: tuple(v) for k, v in values.items() if isinstance(v, list)})
        tc = TrainConfig(objective=common.config_from_flags(fv, config_lib.Objective), **values)
        config_lib.make_config(precision=fv.precision, jit=fv.jit)  # checked with the rest, before any work

        image_io.check_output_path(tc.output, (".keras",))
        if fv.memory_check:
            planner.check_training(tc)
        common.import_tensorflow_quietly()
        from nst_tf import callbacks, distribute  # loads TensorFlow: not at import
        from nst_tf.networks import train  # loads TensorFlow: not at import

        if os.environ.get("TF_CONFIG"):  # several machines (or processes): one worker each
            if tc.devices > 1:
                raise NstError("--devices splits one machine; with TF_CONFIG each worker trains on its own devices")
            strategy = distribute.multi_worker_strategy()  # before any other TensorFlow operation
        else:
            strategy = distribute.strategy(tc.devices) if tc.devices > 1 else None
        plan = train.plan_for(tc.objective, fv.precision, fv.jit, fv.autotune)
        with callbacks.StopOnSignal() as stop:
            report = train.train_network(tc, progress=fv.progress, callbacks=[stop], strategy=strategy, plan=plan)
    except Interrupted as err:
        sys.stderr.write(f"\n{NAME}: {err}: saved a checkpoint (if --checkpoint_dir) and the network so far\n")
        return 128 + err.signum
    except KeyboardInterrupt:
        common.fail("stopped before a step finished; nothing written")
        return 130
    path = report_path(tc.output)
    train.write_report(report, path)
    print(
        f"wrote {tc.output} after {report['steps']} steps ({report['seconds_per_step']} s/step, "
        f"{report['images_per_second']} images/s); report: {path}"
    )
    return 0


def run():
    common.run(NAME, main, define, __doc__)
