"""nst-tf: stylise a photo with one or more paintings.

    nst-tf --content=photo.jpg --style=painting.jpg --output=out.png
    nst-tf --flagfile=configs/tutorial.cfg --content=photo.jpg --style=painting.jpg
    nst-tf --network=demo --content=photo.jpg --style=painting.jpg   (one forward pass)

With no flags it stylises the bundled example into stylized.png. The bundled one-pass network
(--network=demo) paints on the LiteRT interpreter, without TensorFlow, when its options allow
(--nolite: always TensorFlow; nst_tf/networks/lite.py says what differs). Every user error ends with one
line on stderr and exit status 2; no output file is written unless the run succeeds.
"""

import os
import sys
import time

import numpy as np

from absl import flags

from nst_tf import autotune, budget, image_io, painting
from nst_tf import config as config_lib
from nst_tf import plan as plan_lib
from nst_tf.commands import common
from nst_tf.errors import Interrupted, NstError
from nst_tf import planner
from nst_tf import callbacks
from nst_tf.networks import lite, options

NAME = "nst-tf"


def define(fv=flags.FLAGS):
    common.define_flags(fv)
    flags.DEFINE_boolean(
        "lite",
        True,
        "Paint --network=demo's one pass on the LiteRT interpreter (no TensorFlow: 0.6 s in all at 512 px on 2 cores) when the "
        "options allow, and the one pass --init=network and --budget start from; --nolite: TensorFlow's Keras network.",
        flag_values=fv,
    )


def main(argv) -> int:
    fv = flags.FLAGS
    try:
        common.no_arguments(argv)
        # Flags, output folder, network and input files are checked before TensorFlow loads.
        cfg = common.config_from_flags(fv)
        deadline = choice = None
        if cfg.budget:  # the whole process's seconds, from its start: what they buy, said once
            spent = budget.process_seconds()
            choice = budget.choose(cfg, spent, fv.autotune)
            cfg, deadline = choice.config, time.perf_counter() + cfg.budget - spent
            print(f"{NAME}: --budget={cfg.budget:g}: {choice.reason}", flush=True)
        painter = plan_lib.painter_of(cfg)
        output = image_io.check_output_path(fv.output)
        if not fv.style:
            raise NstError("--style is required: one style image, or several comma-separated")
        if cfg.network:
            common.check_network(cfg.network)
        if not (painter == "network" and not fv["style"].present):
            cfg.check_styles(len(fv.style))  # (a network's blend may weigh its fixed styles instead)
        image_io.check_not_an_input(output, [fv.content, *fv.style, *(cfg.style_mask or ()), cfg.init])
        content, styles = image_io.load_image(fv.content), [image_io.load_image(path) for path in fv.style]
        if painter == "network":
            return _paint(fv, cfg, output, content, styles)
        masks = [image_io.load_image(path) for path in cfg.style_mask or ()] or None
        if cfg.init not in config_lib.INITS:
            image_io.load_init_image(cfg.init)  # a bad start image fails here, before any work

        if fv.dry_run:
            rate = autotune.cached_rate(cfg.precision, cfg.jit, cfg.style_loss, fv.autotune)
            scales = planner.plan_scales(cfg, content.shape[:2], [s.shape[:2] for s in styles], rate=rate)
            print(planner.describe(scales, cfg, rate))
            print(autotune.describe_cached(cfg.precision, cfg.jit, cfg.style_loss, fv.autotune))
            return 0
        callbacks.check_outputs(cfg.outputs)
        starts = _lite_start(cfg, fv, choice, content, styles)
        if starts is not None:
            cfg = cfg.replace(init="content", network=None)
        common.import_tensorflow_quietly()
        from nst_tf import painters  # after the checks above: TensorFlow loads here

        mode = choice.autotune if choice is not None else fv.autotune
        plan = plan_lib.resolve(cfg, mode)
        existed = os.path.exists(output)  # a finished picture an interruption must not replace
        start = time.perf_counter()
        timer = []
        if deadline is not None:
            rate = autotune.cached_rate(plan.config.precision, plan.config.jit, cfg.style_loss, mode)
            pixels = float(np.prod(image_io.fit_size(content.shape[:2], cfg.size)))
            timer = [budget.Deadline(deadline, step_estimate=rate.seconds * pixels * 1.5 if rate else 0.0)]
        with callbacks.StopOnSignal() as stop:
            image = painters.stylize(
                content,
                styles,
                plan,
                progress=fv.progress and not timer,
                masks=masks,
                callbacks=[stop, *timer],
                starts=starts,
            )
        seconds = time.perf_counter() - start
        image_io.save_image(output, image)
        if timer and timer[0].first_step_end is not None:  # what the next budget's rule reads
            budget.remember_first_step(timer[0].first_step_end, cfg.size)
    except Interrupted as err:
        return _interrupted(err, output, fv.progress, existed)
    except KeyboardInterrupt:  # a signal before the run started, or a second one
        common.fail("stopped before a step finished; nothing written")
        return 130
    steps = timer[0].steps if timer else sum(steps for _, _, steps in plan.config.scale_plan())
    print(
        f"wrote {output} ({image.shape[1]}x{image.shape[0]}, {steps} steps in {seconds:.0f} s, "
        f"peak memory {planner.peak_memory_bytes() / 2**30:.1f} GiB; {plan.choice.describe()})"
    )
    return 0


def _paint(fv, cfg, output, content, styles) -> int:
    """One forward pass of --network."""

    if fv.dry_run:
        hw = image_io.load_image(fv.content, cfg.size).shape[:2]
        universal = options.is_universal_file(cfg.network)
        print(planner.describe_network(hw, cfg.tile, estimate=planner.universal_bytes if universal else None))
        return 0
    start = time.perf_counter()
    if not _lite_refusal(cfg, fv):
        if not lite.ready(cfg.network):  # converted once, by TensorFlow (quietly)
            common.import_tensorflow_quietly()
        try:
            image = image_io.to_uint8(lite.paint(content, styles, painting.Options.of(cfg), cfg.network))
        except KeyboardInterrupt:
            common.fail("stopped while painting; nothing written")
            return 130
        image_io.save_image(output, image)
        seconds = time.perf_counter() - start
        print(
            f"wrote {output} ({image.shape[1]}x{image.shape[0]}, painted by {cfg.network} on LiteRT in {seconds:.1f} s)"
        )
        return 0
    common.import_tensorflow_quietly()
    from nst_tf import callbacks, painters  # after the checks: TensorFlow loads here

    plan = plan_lib.resolve(cfg, fv.autotune)
    progress = [callbacks.ProgressBar()] if fv.progress else []
    try:
        if not (painters.kind(plan).takes_paintings or fv["style"].present):
            styles = None  # the bundled default painting is not for a network of fixed styles
        image = image_io.to_uint8(painters.paint(plan, content, styles, painting.Options.of(plan.config), progress)[0])
    except KeyboardInterrupt:  # Ctrl-C: a painting has no image so far to keep
        if any(getattr(bar, "written", False) for bar in progress):
            sys.stderr.write("\n")  # end the progress line
        common.fail("stopped while painting; nothing written")
        return 130
    image_io.save_image(output, image)
    print(
        f"wrote {output} ({image.shape[1]}x{image.shape[0]}, painted by {cfg.network} in "
        f"{time.perf_counter() - start:.1f} s)"
    )
    return 0


def _lite_start(cfg, fv, choice, content, styles):
    """The one pass the steps start from (`[picture]`), painted on LiteRT where it can be, so that no
    Keras network is built: a budget's, or --init=network's at its first scale's size (where the Keras
    network would paint it). The picture as painted, not rounded to 8 bits (from a rounded start
    bfloat16's L-BFGS stalled on a held-out pair). None: the run paints its own start, if any."""
    if choice is not None:
        one_pass = choice.one_pass
    elif cfg.init == "network":
        one_pass = cfg.replace(size=cfg.scale_plan()[0][0])
    else:
        return None
    if _lite_refusal(one_pass, fv):
        return None
    return [lite.paint(content, styles, painting.Options.of(one_pass), one_pass.network)]


def _lite_refusal(cfg, fv) -> str:
    """Why this one pass goes to TensorFlow rather than LiteRT ("" when it does not)."""
    return lite.refusal(cfg.network, painting.Options.of(cfg), cfg.square) if fv.lite else "--nolite"


def partial_path(output: str) -> str:
    """Where an interrupted run's picture goes when `output` already holds a finished one."""
    stem, ext = os.path.splitext(output)
    return f"{stem}.partial{ext}"


def _interrupted(err, output, progress, existed: bool) -> int:
    """Saves the interrupted run's last image (atomically) to `output`, or beside it when `output`
    held a finished picture before the run (`partial_path`: that one is kept); exit status 128 + signal."""
    if progress:
        sys.stderr.write("\n")
    run = err.run
    target = partial_path(output) if existed else output
    kept = f"kept {output} as it was; " if existed else ""
    try:
        image_io.save_image(target, run.image_uint8())
    except NstError as save_err:
        common.fail(f"{err}; could not save the image: {save_err}")
        return 128 + err.signum
    sys.stderr.write(
        f"{NAME}: {err} after step {run.step_count} at {run.content.shape[1]}x{run.content.shape[0]}: "
        f"{kept}wrote the image so far to {target}\n"
    )
    return 128 + err.signum


def run():
    common.run(NAME, main, define, __doc__)
