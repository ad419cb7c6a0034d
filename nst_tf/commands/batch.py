"""nst-tf-batch: every content image with every style image, into one folder, resumably.

    nst-tf-batch --contents=photos/ --styles=paintings/ --output_dir=out/ --size=512
    nst-tf-batch --contents=photos/ --styles=paintings/ --output_dir=out/ --network=universal

Writes <content>__<style>.png for each pair and a manifest (manifest.jsonl: settings, losses,
nst-tf-evaluate's report); outputs that exist are skipped, so running the same command again
after a stop goes on where it stopped. Every input is decoded before the first painting; a bad
one is named (one line each) and its pairs are listed in the manifest with the error, the good
ones are painted, and the command ends with a one-line summary and exit status 2
(--nokeep_going: refuse the whole batch, naming every bad input, before any painting).
"""

import os
import sys

from absl import flags

from nst_tf import plan as plan_lib
from nst_tf.commands import common
from nst_tf.errors import Interrupted, NstError
from nst_tf import batch
from nst_tf import callbacks

NAME = "nst-tf-batch"


def define_batch_flags(fv=flags.FLAGS):
    """The flags of a batch of jobs, for `nst-tf-batch` and the Beam pipeline alike."""
    flags.DEFINE_list(
        "contents", None, "Content images: folders, glob patterns or files, comma-separated.", flag_values=fv
    )
    flags.DEFINE_list("styles", None, "Style images: folders, glob patterns or files, comma-separated.", flag_values=fv)
    flags.DEFINE_string(
        "output_dir",
        None,
        "Folder (every worker can write) for <content>__<style>.png and manifest.jsonl.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "batch_size", 4, "Content images of one size optimised together per style.", lower_bound=1, flag_values=fv
    )
    flags.DEFINE_boolean(
        "evaluate", True, "Add nst-tf-evaluate's report for each output to the manifest.", flag_values=fv
    )
    flags.DEFINE_boolean(
        "keep_going",
        True,
        "Paint the pairs whose inputs are good when some are bad (each bad one named, exit status 2 at the end); "
        "--nokeep_going: paint nothing if any input is bad.",
        flag_values=fv,
    )


def define():
    common.define_flags(images=False)
    define_batch_flags()
    flags.DEFINE_integer(
        "devices", 1, "Split each batch across this many devices (GPUs, or logical CPU devices).", lower_bound=1
    )
    flags.DEFINE_boolean("progress", True, "Show a progress bar on stderr.")


def main(argv) -> int:
    """Stylises every --contents image with every --styles image into --output_dir
    (`nst_tf.batch.run_batch`), skipping outputs that exist."""
    fv = flags.FLAGS
    try:
        common.no_arguments(argv)
        for name in ("contents", "styles", "output_dir"):
            if not fv[name].value:
                raise NstError(f"--{name} is required")
        cfg = common.config_from_flags(fv)
        if cfg.network:
            common.check_network(cfg.network)

        planned = batch.plan(fv.contents, fv.styles, fv.output_dir, cfg, fv.batch_size)
        jobs, todo, groups, bad, failed_inputs = planned
        for reason in bad.values():  # one line each (the message names the file)
            sys.stderr.write(f"{NAME}: {'skipped' if fv.keep_going else 'bad input'}: {reason}\n")
        if bad and not fv.keep_going:
            raise NstError(f"{len(bad)} input(s) cannot be read (above); nothing painted (--nokeep_going)")
        print(
            f"{len(jobs)} outputs: {len(jobs) - len(todo)} exist (skipped), {len(todo) - len(failed_inputs)} to make in "
            f"{len(groups)} batch(es) of up to {fv.batch_size}"
            + (f" across {fv.devices} devices" if fv.devices > 1 else "")
            + (f", {len(failed_inputs)} with a bad input" if failed_inputs else ""),
            flush=True,
        )
        if not todo:
            return 0
        common.import_tensorflow_quietly()

        plan = plan_lib.resolve(cfg, fv.autotune, devices=fv.devices)
        with callbacks.StopOnSignal() as stop:
            result = batch.run_batch(
                fv.contents,
                fv.styles,
                fv.output_dir,
                plan,
                fv.batch_size,
                plan.devices,
                evaluate=fv.evaluate,
                progress=fv.progress,
                callbacks=[stop],
                planned=planned,
            )
    except Interrupted as err:
        if fv.progress:
            sys.stderr.write("\n")
        sys.stderr.write(
            f"{NAME}: {err}: the batch under way is dropped; the outputs written are kept and "
            "listed in the manifest; run the same command again to go on\n"
        )
        return 128 + err.signum
    except KeyboardInterrupt:
        common.fail("stopped; run the same command again to go on")
        return 130
    rate = result["written"] / result["seconds"] * 60 if result["seconds"] else 0.0
    manifest = os.path.join(fv.output_dir, batch.MANIFEST)
    print(
        f"wrote {result['written']} image(s) to {fv.output_dir} in {result['seconds']:.0f} s ({rate:.2f} images/min); "
        f"manifest: {manifest}"
    )
    failed = result["failed"]
    if failed:
        named = {job.output for job, _ in failed_inputs}  # named above, by their bad input
        for output, reason in failed:
            if output not in named:  # failed while painting: one line each
                sys.stderr.write(f"{NAME}: not painted: {output}: {reason}\n")
        common.fail(
            f"{len(failed)} of {len(todo)} output(s) not painted ({', '.join(o for o, _ in failed[:5])}"
            f"{', ...' if len(failed) > 5 else ''}): their errors are above and in {manifest}"
        )
        return 2
    return 0


def run():
    common.run(NAME, main, define, __doc__)
