"""What every command shares at its door: flags made from the options, one-line errors that name the
command, `--help` that lists the command's own flags, and TensorFlow kept quiet until it is needed.

A command module defines its flags in `define()`, does its work in `main(argv)` and starts with
`run(NAME, main, define, __doc__)`. Every user error (an `NstError`, a bad flag) ends as one line on
stderr, `<command>: error: ...`, and exit status 2.
"""

import dataclasses
import functools
import os
import sys

# TensorFlow's C++ lines (start-up probes, "failed call to cuInit", kernel fallbacks) stay hidden unless
# the user asks for them: --verbose (or their own TF_CPP_MIN_LOG_LEVEL). Set before TensorFlow loads.
# (`run` takes --verbose off the command line for commands that do not define it as a flag.)
VERBOSE = "--verbose" in sys.argv
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if VERBOSE else "3")

from absl import app, flags  # noqa: E402

from nst_tf import autotune, files  # noqa: E402  (no TensorFlow until a measurement runs)
from nst_tf import config as config_lib  # noqa: E402
from nst_tf import image_io  # noqa: E402  (Pillow only: no TensorFlow yet)
from nst_tf.errors import NstError  # noqa: E402
from nst_tf.files import native_stderr_quiet  # noqa: E402, F401  (re-exported: the commands use it)
from nst_tf.networks import options  # noqa: E402

# The command whose errors these are (set by `run`; the Python API's callers see nst-tf's).
command = "nst-tf"


def define_flags(fv=flags.FLAGS, images: bool = True, exclude=()):
    """Defines the stylize flags on `fv` (defaults from `Config`); `images=False` leaves out the
    input, output and progress flags (for the SavedModel export, which takes only options);
    `exclude`: options a command does not take (they keep their defaults)."""
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
    define_field_flags([f for f in dataclasses.fields(config_lib.Config) if f.name not in exclude], fv)


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


def config_from_flags(fv=flags.FLAGS, kind=config_lib.Config, exclude=()):
    """The parsed flags as a validated `kind` (`Config`, or one group such as `Objective`); options
    a command does not define, or `exclude`s (a flag of the same name meaning something else),
    keep their defaults."""
    names = [f.name for f in dataclasses.fields(kind) if f.name in fv and f.name not in exclude]
    return kind(**{name: fv[name].value for name in names})


def _number(value) -> str:
    """A value as a flag writes it: floats short (0.7, 5) where that reads back exactly, else in full."""
    if not isinstance(value, float):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def flag_args(cfg, names) -> list:
    """`config_from_flags`' inverse: the flags (`--name=value`, lists comma-joined, `--name` /
    `--noname` for booleans) that set each of `names` to its value in `cfg` (a `Config`), for the
    options whose value is not their default. What a door shows as "the command that makes this"."""
    fields = {f.name: f for f in dataclasses.fields(type(cfg))}
    args = []
    for name in names:
        value, default = getattr(cfg, name), fields[name].default
        if value == default:
            continue
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, (tuple, list)):
            args.append(f"--{name}=" + ",".join(_number(v) for v in value))
        elif isinstance(value, float):
            args.append(f"--{name}={_number(value)}")
        else:
            args.append(f"--{name}={value}")
    return args


def import_tensorflow_quietly():
    """Imports TensorFlow (and discovers its devices) with its start-up lines hidden, and sets its
    Python loggers to errors only: a command line prints only its own lines."""
    tf = files.import_tensorflow_quietly(VERBOSE)
    tf.get_logger().setLevel("ERROR")
    from absl import logging

    logging.set_verbosity(logging.ERROR)  # e.g. the checkpoint writer logs each save at INFO
    return tf


def fail(message) -> int:
    sys.stderr.write(f"{command}: error: {message}\n")
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


def no_arguments(argv):
    if len(argv) > 1:
        raise NstError(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag (see --help)")


HELP = ("--help", "-help", "-h", "--helpshort", "-?")


def parse(argv):
    """absl's parse, with a bad flag as one line (`<command>: error: ...`, exit status 2), and
    `--help` as the command's summary and its own flags, exit status 0."""
    if any(arg in HELP for arg in argv[1 : (argv + ["--"]).index("--")]):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        message = str(err).replace("ERROR:: ", "").strip()
        sys.exit(fail(message.splitlines()[0] if message else type(err).__name__))


def run(name: str, main, define, doc: str):
    """Runs a command: `define()` its flags, then `main(argv)` under absl, with its errors named
    `name` and its `--help` giving `doc` and its own flags (absl's lists only flags that the
    program's __main__ module defines; `--helpfull` still lists absl's own as well)."""
    global command
    command = name
    define()
    if VERBOSE and "verbose" not in flags.FLAGS:  # the TensorFlow log switch, not one of the command's flags
        sys.argv.remove("--verbose")
    for module, flag_list in flags.FLAGS.flags_by_module_dict().items():
        if module.startswith("nst_tf."):  # the command's own flags, not absl's
            for flag in flag_list:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    main_doc = getattr(sys.modules["__main__"], "__doc__", None) or doc
    sys.modules["__main__"].__doc__ = (
        main_doc.rstrip() + "\n\n--verbose shows TensorFlow's own log lines (hidden otherwise).\n"
    )
    app.run(exits_2(main), flags_parser=parse)


def check_network(spec):
    """A network spec (a bundled name or a .keras path) checked at the door, before TensorFlow loads."""

    options.check_network_file(spec)
