"""The command line: absl flags at the door, a `Config` inside.

    nst-tf --content=photo.jpg --style=painting.jpg --output=out.png
    nst-tf --flagfile=configs/tutorial.cfg --content=photo.jpg --style=painting.jpg

With no flags it stylises the bundled example into stylized.png. Every user error ends with one
line on stderr and exit status 2; no output file is written unless the run succeeds.
"""

import dataclasses
import functools
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

from absl import app, flags, logging  # noqa: E402

from nst_tf import autotune  # noqa: E402  (no TensorFlow until a measurement runs)
from nst_tf import config as config_lib  # noqa: E402
from nst_tf import export, files, image_io  # noqa: E402  (Pillow only: no TensorFlow yet)
from nst_tf.errors import Interrupted, NstError  # noqa: E402


def define_flags(fv=flags.FLAGS, images: bool = True):
    """Defines the stylize flags on `fv` (defaults from `Config`); `images=False` leaves out the
    input, output and progress flags (for the SavedModel export, which takes only options)."""
    if images:
        flags.DEFINE_string("content", image_io.example_path("boston"), "Content image (the photo).", flag_values=fv)
        flags.DEFINE_list(
            "style",
            [image_io.example_path("the_scream")],
            "Style image (the painting), or several, comma-separated.",
            flag_values=fv,
        )
        flags.DEFINE_string(
            "output", "stylized.png", "Output image (.png, .jpg, ...), written atomically.", flag_values=fv
        )
        flags.DEFINE_boolean("progress", True, "Show a progress bar on stderr.", flag_values=fv)
        flags.DEFINE_boolean(
            "dry_run", False, "Print the plan (sizes per scale, estimated memory and time) and exit.", flag_values=fv
        )
    define_autotune_flag(fv)
    define_field_flags(dataclasses.fields(config_lib.Config), fv)


def define_autotune_flag(fv=flags.FLAGS):
    flags.DEFINE_enum(
        "autotune",
        None,  # unset: $NST_TF_AUTOTUNE, read (and checked) when the run resolves "auto"
        autotune.MODES,
        "How --precision=auto and --jit=auto are chosen: cached (time each candidate once per machine, "
        f"then reuse), remeasure, off (float32 without XLA, no timing). Default: ${autotune.ENV}, else cached.",
        flag_values=fv,
    )


def define_field_flags(fields, fv=flags.FLAGS):
    """A flag for each dataclass field made by `config.option` (its help, choices and type)."""
    for field in fields:
        name, default, help_, choices = field.name, field.default, field.metadata["help"], field.metadata["choices"]
        if choices:
            flags.DEFINE_enum(name, default, choices, help_, flag_values=fv)
        elif "Tuple[" in field.type:
            flags.DEFINE_list(name, None if default is None else list(default), help_, flag_values=fv)
        elif field.type == "bool":
            flags.DEFINE_boolean(name, default, help_, flag_values=fv)
        elif field.type in ("int", "Optional[int]"):
            flags.DEFINE_integer(name, default, help_, flag_values=fv)
        elif field.type in ("float", "Optional[float]"):
            flags.DEFINE_float(name, default, help_, flag_values=fv)
        else:
            flags.DEFINE_string(name, default, help_, flag_values=fv)


def config_from_flags(fv=flags.FLAGS) -> config_lib.Config:
    """The parsed flags as a validated `Config`."""
    return config_lib.Config(**{name: fv[name].value for name in config_lib.field_names()})


def _import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 pointed at /dev/null.

    TensorFlow's C++ start-up (CUDA probes on CPU machines) writes to stderr before its logging is
    initialised, so TF_CPP_MIN_LOG_LEVEL cannot hide it; a command line should print only its own
    lines. Python errors raised by the import still reach the user: stderr is restored first.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def fail(message) -> int:
    sys.stderr.write(f"nst-tf: error: {message}\n")
    return 2


def exits_2(main):
    """`main` with an `NstError` (a user's mistake) turned into one line on stderr and exit status 2:
    every command's main goes through this."""

    @functools.wraps(main)
    def wrapped(*args):
        try:
            return main(*args)
        except NstError as err:
            return fail(err)

    return wrapped


def _interrupted(err, output, progress) -> int:
    """Saves the interrupted run's last image to `output` (atomically); exit status 128 + signal."""
    if progress:
        sys.stderr.write("\n")
    run = err.transfer
    try:
        image_io.save_image(output, run.image_uint8())
    except NstError as save_err:
        fail(f"{err}; could not save the image: {save_err}")
        return 128 + err.signum
    sys.stderr.write(
        f"nst-tf: {err} after step {run.step_count} at {run.content.shape[1]}x{run.content.shape[0]}: "
        f"wrote the image so far to {output}\n"
    )
    return 128 + err.signum


def _no_arguments(argv):
    if len(argv) > 1:
        raise NstError(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag (see --help)")


def _parse(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        message = str(err).replace("ERROR:: ", "").strip()
        sys.exit(fail(message.splitlines()[0] if message else type(err).__name__))


@exits_2
def main(argv) -> int:
    fv = flags.FLAGS
    try:
        _no_arguments(argv)
        # Flags, output folder and input files are checked before TensorFlow loads.
        cfg = config_from_flags(fv)
        output = image_io.check_output_path(fv.output)
        if not fv.style:
            raise NstError("--style is required: one style image, or several comma-separated")
        if not (cfg.network and cfg.init != "network" and not fv["style"].present):
            cfg.check_styles(len(fv.style))  # (a network's blend may weigh its fixed styles instead)
        image_io.check_not_an_input(output, [fv.content, *fv.style, *(cfg.style_mask or ()), cfg.init])
        content, styles = image_io.load_image(fv.content), [image_io.load_image(path) for path in fv.style]
        if cfg.network and cfg.init != "network":  # one forward pass
            from nst_tf import planner

            if fv.dry_run:
                from nst_tf.networks import options

                hw = image_io.load_image(fv.content, cfg.size).shape[:2]
                universal = options.is_universal_file(cfg.network)
                print(planner.describe_network(hw, cfg.tile, estimate=planner.universal_bytes if universal else None))
                return 0
            _import_tensorflow_quietly()
            from nst_tf import callbacks
            from nst_tf.networks import use

            start, on_tile = time.perf_counter(), callbacks.TileProgress() if fv.progress else None
            try:
                image = use.paint_with_config(
                    cfg, content, styles, default_styles=not fv["style"].present, on_tile=on_tile
                )
            except KeyboardInterrupt:  # Ctrl-C: a painting has no image so far to keep
                image = None
            finally:
                if on_tile:
                    on_tile.close()
            if image is None:
                fail("stopped while painting; nothing written")
                return 130
            image_io.save_image(output, image)
            print(
                f"wrote {output} ({image.shape[1]}x{image.shape[0]}, painted by {cfg.network} in "
                f"{time.perf_counter() - start:.1f} s)"
            )
            return 0
        masks = [image_io.load_image(path) for path in cfg.style_mask or ()] or None
        if cfg.init not in config_lib.INITS:
            image_io.load_init_image(cfg.init)  # a bad start image fails here, before any work
        from nst_tf import callbacks, planner

        if fv.dry_run:
            print(planner.describe(planner.plan(cfg, content.shape[:2], [s.shape[:2] for s in styles]), cfg))
            print(autotune.describe_cached(cfg.precision, cfg.jit, cfg.style_loss, fv.autotune))
            return 0

        callbacks.check_outputs(cfg)

        _import_tensorflow_quietly()
        from nst_tf import transfer

        cfg, choice = autotune.concrete(cfg, fv.autotune)

        start = time.perf_counter()
        with callbacks.StopOnSignal() as stop:
            image = transfer.stylize(content, styles, cfg, progress=fv.progress, masks=masks, callbacks=[stop])
        seconds = time.perf_counter() - start
        image_io.save_image(output, image)
    except Interrupted as err:
        return _interrupted(err, output, fv.progress)
    except KeyboardInterrupt:  # a signal before the run started, or a second one
        fail("stopped before a step finished; nothing written")
        return 130
    steps = sum(steps for _, _, steps in cfg.scale_plan())
    print(
        f"wrote {output} ({image.shape[1]}x{image.shape[0]}, {steps} steps in {seconds:.0f} s, "
        f"peak memory {planner.peak_memory_bytes() / 2**30:.1f} GiB; {choice.describe()})"
    )
    return 0


def run():
    """Console entry point (`nst-tf`)."""
    define_flags()
    app.run(main, flags_parser=_parse)


@exits_2
def evaluate_main(argv) -> int:
    """Prints `nst_tf.evaluate`'s JSON report for --image against --content and --style."""
    import json

    fv = flags.FLAGS
    _no_arguments(argv)
    for name in ("image", "content", "style"):
        if not fv[name].value:
            raise NstError(f"--{name} is required")
    images = [image_io.load_image(fv[name].value) for name in ("image", "content", "style")]
    _import_tensorflow_quietly()
    from nst_tf import metrics

    report = metrics.evaluate(*images, weights=fv.weights)
    print(json.dumps(report, indent=2))
    return 0


def run_evaluate():
    """Console entry point (`nst-tf-evaluate`)."""
    flags.DEFINE_string("image", None, "The stylised image.")
    flags.DEFINE_string("content", None, "Its content image.")
    flags.DEFINE_string("style", None, "Its style image.")
    flags.DEFINE_string("weights", "auto", config_lib.option_help("weights"))
    app.run(evaluate_main, flags_parser=_parse)


@exits_2
def export_main(argv) -> int:
    """Writes the SavedModel (`nst_tf.export_saved_model`) and prints where, its size and limits."""
    fv = flags.FLAGS
    _no_arguments(argv)
    cfg = config_from_flags(fv)
    if not fv.export_dir:
        raise NstError("--export_dir is required (TF Serving's model base path)")
    export.version_path(fv.export_dir, fv.version, fv.overwrite)  # an existing version: before any work
    _import_tensorflow_quietly()
    import tensorflow as tf

    from nst_tf import serving

    tf.get_logger().setLevel("ERROR")  # the SavedModel writer logs each step at INFO
    cfg, _ = autotune.concrete(cfg.replace(jit="on" if cfg.jit == "on" else "off"), fv.autotune)
    limits = export.Limits(fv.max_pixels, fv.max_steps, fv.max_input_pixels)
    start = time.perf_counter()
    path = serving.export_saved_model(fv.export_dir, fv.version, cfg, limits=limits, overwrite=fv.overwrite)
    seconds = time.perf_counter() - start
    print(
        f"wrote {path} ({files.folder_bytes(path) / 1e6:.1f} MB in {seconds:.0f} s; limits: "
        f"{limits.max_pixels} output pixels, {limits.max_steps} steps per scale, {limits.max_input_pixels} input pixels)"
    )
    return 0


def run_export():
    """Console entry point (`nst-tf-export`)."""
    limits = export.Limits()
    define_flags(images=False)
    flags.DEFINE_string("export_dir", None, "Model base path: the SavedModel goes to <export_dir>/<version>/.")
    flags.DEFINE_integer("version", 1, "Model version (TF Serving serves the highest).", lower_bound=1)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version folder.")
    flags.DEFINE_integer(
        "max_pixels", limits.max_pixels, "Largest output (height x width) a request may ask for.", lower_bound=1
    )
    flags.DEFINE_integer("max_steps", limits.max_steps, "Most steps per scale a request may ask for.", lower_bound=1)
    flags.DEFINE_integer(
        "max_input_pixels", limits.max_input_pixels, "Largest encoded input, read from its header.", lower_bound=1
    )
    app.run(export_main, flags_parser=_parse)


@exits_2
def batch_main(argv) -> int:
    """Stylises every --contents image with every --styles image into --output_dir
    (`nst_tf.batch.run_batch`), skipping outputs that exist."""
    fv = flags.FLAGS
    try:
        _no_arguments(argv)
        cfg = config_from_flags(fv)
        from nst_tf import batch

        if not fv.output_dir:
            raise NstError("--output_dir is required")
        jobs, todo, groups = batch.plan(fv.contents, fv.styles, fv.output_dir, cfg, fv.batch_size)
        for path in sorted({p for job in todo for p in (job.content, job.style)}):
            image_io.load_image(path)  # every input decodes, before any work
        print(
            f"{len(jobs)} outputs: {len(jobs) - len(todo)} exist (skipped), {len(todo)} to make in {len(groups)} "
            f"batch(es) of up to {fv.batch_size}" + (f" across {fv.devices} devices" if fv.devices > 1 else ""),
            flush=True,
        )
        if not todo:
            return 0
        _import_tensorflow_quietly()
        import tensorflow as tf

        from nst_tf import callbacks

        tf.get_logger().setLevel("ERROR")  # MirroredStrategy logs its devices at INFO
        cfg, _ = autotune.concrete(cfg, fv.autotune)
        with callbacks.StopOnSignal() as stop:
            result = batch.run_batch(
                fv.contents,
                fv.styles,
                fv.output_dir,
                cfg,
                fv.batch_size,
                fv.devices,
                evaluate=fv.evaluate,
                progress=fv.progress,
                callbacks=[stop],
            )
    except Interrupted as err:
        if fv.progress:
            sys.stderr.write("\n")
        sys.stderr.write(
            f"nst-tf-batch: {err}: the batch under way is dropped; the outputs written are kept and "
            "listed in the manifest; run the same command again to go on\n"
        )
        return 128 + err.signum
    except KeyboardInterrupt:
        fail("stopped; run the same command again to go on")
        return 130
    rate = result["written"] / result["seconds"] * 60 if result["seconds"] else 0.0
    print(
        f"wrote {result['written']} image(s) to {fv.output_dir} in {result['seconds']:.0f} s ({rate:.2f} images/min); "
        f"manifest: {os.path.join(fv.output_dir, batch.MANIFEST)}"
    )
    return 0


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


def run_batch():
    """Console entry point (`nst-tf-batch`)."""
    define_flags(images=False)
    define_batch_flags()
    flags.DEFINE_integer(
        "devices", 1, "Split each batch across this many devices (GPUs, or logical CPU devices).", lower_bound=1
    )
    flags.DEFINE_boolean("progress", True, "Show a progress bar on stderr.")
    flags.mark_flags_as_required(["contents", "styles", "output_dir"])
    app.run(batch_main, flags_parser=_parse)


# The objective's options that a training run takes from `Config` (the rest are TrainConfig's).
TRAIN_OBJECTIVE = (
    "content_layers",
    "style_layers",
    "style_layer_weights",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_loss",
    "gram_norm",
    "loss_norm",
    "tv_loss",
    "weights",
    "backbone",
    "precision",
    "jit",
    "pooling",
)


@exits_2
def train_main(argv) -> int:
    """Trains a network (`nst_tf.networks.train_network`), writes it and its report (JSON)."""

    fv = flags.FLAGS
    try:
        _no_arguments(argv)
        objective = config_lib.Config(**{name: fv[name].value for name in TRAIN_OBJECTIVE})
        from nst_tf.networks.options import TrainConfig

        values = {f.name: fv[f.name].value for f in dataclasses.fields(TrainConfig) if f.name != "objective"}
        values.update({k: tuple(v) for k, v in values.items() if isinstance(v, list)})
        tc = TrainConfig(objective=objective, **values)
        image_io.check_output_path(tc.output, (".keras",))
        from nst_tf import planner

        if fv.memory_check:
            planner.check_training(tc)
        _import_tensorflow_quietly()
        import tensorflow as tf

        from nst_tf import callbacks, distribute
        from nst_tf.networks import train

        tf.get_logger().setLevel("ERROR")
        logging.set_verbosity(logging.ERROR)  # the checkpoint writer logs each save at INFO
        if os.environ.get("TF_CONFIG"):  # several machines (or processes): one worker each
            if tc.devices > 1:
                raise NstError("--devices splits one machine; with TF_CONFIG each worker trains on its own devices")
            strategy = distribute.multi_worker_strategy()  # before any other TensorFlow operation
        else:
            strategy = distribute.strategy(tc.devices) if tc.devices > 1 else None
        tc = dataclasses.replace(tc, objective=autotune.concrete(objective, fv.autotune)[0])
        with callbacks.StopOnSignal() as stop:
            report = train.train_network(tc, progress=fv.progress, callbacks=[stop], strategy=strategy)
    except Interrupted as err:
        sys.stderr.write(f"\nnst-tf-train: {err}: saved a checkpoint (if --checkpoint_dir) and the network so far\n")
        return 128 + err.signum
    except KeyboardInterrupt:
        fail("stopped before a step finished; nothing written")
        return 130
    report_path = os.path.splitext(tc.output)[0] + ".report.json"
    train.write_report(report, report_path)
    print(
        f"wrote {tc.output} after {report['steps']} steps ({report['seconds_per_step']} s/step, "
        f"{report['images_per_second']} images/s); report: {report_path}"
    )
    return 0


def run_train():
    """Console entry point (`nst-tf-train`)."""
    from nst_tf.networks.options import TrainConfig

    define_field_flags([f for f in dataclasses.fields(TrainConfig) if f.name != "objective"])
    define_field_flags([f for f in dataclasses.fields(config_lib.Config) if f.name in TRAIN_OBJECTIVE])
    define_autotune_flag()
    flags.DEFINE_boolean("progress", True, "Show a progress line on stderr.")
    flags.DEFINE_boolean("memory_check", True, "Refuse training that will not fit the available memory.")
    app.run(train_main, flags_parser=_parse)


@exits_2
def export_network_main(argv) -> int:
    """Writes a network's SavedModel (--export_dir) and/or its TF Lite pair (--tflite_dir)."""
    fv = flags.FLAGS
    _no_arguments(argv)
    if not fv.network or not (fv.export_dir or fv.tflite_dir):
        raise NstError("--network and one of --export_dir, --tflite_dir are required")
    _import_tensorflow_quietly()
    import tensorflow as tf

    from nst_tf.networks import export, use

    tf.get_logger().setLevel("ERROR")
    network = use.load_network(fv.network)
    if fv.export_dir:
        path = export.export_saved_model(network, fv.export_dir, fv.version, fv.weights, fv.size)
        print(f"wrote {path} ({files.folder_bytes(path) / 1e6:.1f} MB)")
    if fv.tflite_dir:
        for name, path in export.export_tflite(network, fv.tflite_dir, fv.weights, fv.quantization).items():
            print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    return 0


def run_export_network():
    """Console entry point (`nst-tf-export-network`)."""
    from nst_tf.networks.options import QUANTIZATIONS

    flags.DEFINE_string("network", None, "The network (.keras from nst-tf-train, or universal, demo, three_styles).")
    flags.DEFINE_string("export_dir", None, "SavedModel base path: the model goes to <export_dir>/<version>/.")
    flags.DEFINE_integer("version", 1, "Model version.", lower_bound=1)
    flags.DEFINE_integer("size", 512, "Default longest side of the painting (a request may ask another).")
    flags.DEFINE_string("tflite_dir", None, "Folder for style_predict.tflite and style_transform.tflite.")
    flags.DEFINE_enum("quantization", "float16", QUANTIZATIONS, "TF Lite weights: float32, float16, int8.")
    flags.DEFINE_string("weights", "auto", config_lib.option_help("weights"))
    app.run(export_network_main, flags_parser=_parse)


if __name__ == "__main__":
    run()
