"""`precision="auto"` and `jit="auto"`, chosen by measurement once per machine and cached.

Which precision the convolutions run in and whether XLA compiles the step decide a run's speed, and
the fastest pair depends on the processor and the TensorFlow build, in ways no rule predicted:
on a 2-core AVX-512 BF16 CPU, bfloat16 without XLA took 0.53x float32's step and XLA slowed every
precision (1.2-2x); on a 2-core AVX2 CPU, bfloat16 without XLA took 9x float32's step and XLA sped
float32 up (docs/performance.md, Speed). So `auto` times the real step (the default objective, VGG19, Adam) on
the bundled images at `SIZE` px for each candidate, float32 / bfloat16 / float16 x XLA on / off,
and keeps the fastest one whose result is as good as float32's. The measurement takes about 20-40 s
and is cached per machine (CPU model, instruction flags, cores, GPU, TensorFlow version) in
`cache_path()`.

- Candidates that cannot win are not timed: on a CPU without bfloat16 (float16) instructions,
  bfloat16 (float16) without XLA runs TensorFlow's emulating kernels (measured 9x and 6-7x slower
  than float32). A candidate whose first step is over `GIVE_UP` times the best so far is stopped.
- Quality guard: a precision is eligible only if its image after the calibration steps, evaluated
  in float32, has a loss within `QUALITY_BOUND` of the float32 run's.
- Modes (`mode` argument, else the `NST_TF_AUTOTUNE` environment variable; the command line's
  `--autotune`): "cached" (default: measure once, then reuse), "remeasure" (measure now, replace the
  cached entry), "off" (never measure: the safe rule, float32 without XLA, which was the faster
  float32 setting on both CPU kinds measured and compiles nothing).
- What is pinned stays pinned: `precision="bfloat16", jit="auto"` picks the faster XLA setting for
  bfloat16. `style_loss="w2"` pins XLA off (its eigendecompositions ran 10x slower under XLA's CPU
  backend: 20 L-BFGS steps at 128 px, 97.7 s with XLA and 9.5 s without).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable, Dict, NamedTuple, Optional

from nst_tf import files
from nst_tf.errors import NstError
from nst_tf import weights as weights_lib
from nst_tf.config import Objective, Optimisation

ENV = "NST_TF_AUTOTUNE"
MODES = ("cached", "remeasure", "off")
PRECISIONS = ("float32", "bfloat16", "float16")
# float32 without XLA first: it is the quality reference for the others.
CANDIDATES = (
    ("float32", False),
    ("float32", True),
    ("bfloat16", False),
    ("bfloat16", True),
    ("float16", False),
    ("float16", True),
)
SIZE = 192  # the calibration image's longest side (the bundled boston.jpg: 192x128)
WARMUP_STEPS = 2  # after the first call, which traces and compiles
TIMED_STEPS = 5
QUALITY_BOUND = 0.02  # a precision's float32-evaluated loss within 2% of float32's after the steps
GIVE_UP = 3.0  # stop timing a candidate whose first step takes this many times the best median
CACHE_FORMAT = 1  # bumped when the calibration changes what it measures
_FAST_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
_FAST_F16 = frozenset({"avx512_fp16", "amx_fp16"})
_KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")
_RULE = "float32 without XLA where not given"  # what "auto" is without a measurement
_measured: Dict[str, dict] = {}  # this process's own measurements (so "remeasure" measures once)


class Choice(NamedTuple):
    """A resolved pair and why it was chosen."""

    precision: str
    xla: bool
    reason: str

    def describe(self) -> str:
        return f"{self.precision}, XLA {'on' if self.xla else 'off'} ({self.reason})"


def name(precision: str, xla: bool) -> str:
    """A candidate's key in the cache, e.g. "bfloat16/xla-off"."""
    return f"{precision}/xla-{'on' if xla else 'off'}"


# What oneDNN may use under `ONEDNN_MAX_CPU_ISA` (its own names), as the /proc/cpuinfo flags it leaves.
_ISA_CAPS = {
    "SSE41": frozenset(),
    "AVX": frozenset({"avx"}),
    "AVX2": frozenset({"avx", "avx2", "fma"}),
    "AVX2_VNNI": frozenset({"avx", "avx2", "fma", "avx_vnni"}),
    "AVX512_CORE": frozenset({"avx", "avx2", "fma", "avx512f"}),
    "AVX512_CORE_VNNI": frozenset({"avx", "avx2", "fma", "avx512f", "avx512_vnni"}),
}
_CAPPED = frozenset({"avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", *_FAST_BF16, *_FAST_F16, "amx_tile"})


def cpu_flags() -> frozenset:
    """The CPU's instruction-set flags (Linux /proc/cpuinfo; empty elsewhere), less those that
    `ONEDNN_MAX_CPU_ISA` forbids oneDNN (the convolutions' and matmuls' kernels) to use: with
    `ONEDNN_MAX_CPU_ISA=AVX2` an AVX-512 BF16 CPU runs them as an AVX2 one does, and is timed and
    keyed as one."""
    flags = frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = frozenset(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    cap = _ISA_CAPS.get(os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper())
    return flags if cap is None else flags - (_CAPPED - cap)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _tensorflow_version() -> str:
    from importlib import metadata

    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def cpu_key() -> str:
    """This machine's CPU part of the cache key (no TensorFlow needed: `--dry_run` reads it)."""
    flags = " ".join(f for f in _KEY_FLAGS if f in cpu_flags())
    return f"cpu={cpu_name()} [{flags}] x{os.cpu_count()}; tensorflow={_tensorflow_version()}"


def gpu_name() -> Optional[str]:
    """The first GPU TensorFlow sees (name and compute capability), or None."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{details.get('device_name', gpus[0].name)} cc{'.'.join(map(str, details.get('compute_capability', ())))}"


def machine_key(gpu: Optional[str]) -> str:
    return f"{cpu_key()}; gpu={gpu or 'none'}"


cache_dir = files.cache_dir  # (the folder of every cache nst_tf keeps)


CACHE_FILE = "autotune.json"


def cache_path() -> str:
    """The autotune cache: `autotune.json` in `cache_dir()`."""
    return os.path.join(cache_dir(), CACHE_FILE)


def _read_cache() -> dict:
    data = files.read_cache_json(CACHE_FILE)
    return data if data.get("format") == CACHE_FORMAT else {}


def _write_cache(key: str, entry: dict) -> None:
    """Adds `entry` under `key`, atomically; a cache that cannot be written only costs a re-measure."""
    data = _read_cache() or {"format": CACHE_FORMAT, "entries": {}}
    data.setdefault("entries", {})[key] = entry
    files.write_cache_json(CACHE_FILE, data, "the measurement")


def cached_entries() -> Dict[str, dict]:
    """The cached measurements made on this CPU with this TensorFlow (any GPU), by machine key."""
    prefix = cpu_key() + ";"
    return {k: v for k, v in _read_cache().get("entries", {}).items() if k.startswith(prefix)}


class Rate(NamedTuple):
    """Seconds per output pixel per step, and where the figure comes from."""

    seconds: float
    source: str


def cached_rate(precision: str = "auto", jit: str = "auto", style_loss: str = "gram", mode=None) -> Optional[Rate]:
    """The step time per pixel of what these settings run, from this machine's cached calibration
    (no TensorFlow: `--dry_run` reads it): the chosen candidate's median step over the calibration
    image's pixels. None without a cached measurement (or with autotune off and "auto" left to the
    rule). The calibration times the default objective's step (about 200 px); per pixel it
    predicted a 512 px default run (3 scales, 60 L-BFGS steps each) within 5 % on a 2-core
    AVX-512 BF16 CPU (2.26 against 2.37 microseconds per pixel-step)."""
    entries = cached_entries()
    entry = entries.get(machine_key(None)) or next(iter(entries.values()), None)
    if entry is None or not entry.get("seconds"):
        return None
    choice = choose(entry, precision, jit, style_loss)
    if resolved_mode(mode) == "off" and (precision == "auto" or jit == "auto"):
        choice = resolve(precision, jit, style_loss, "off")
    seconds = entry["seconds"].get(name(choice.precision, choice.xla))
    if seconds is None:
        return None
    width, height = (int(v) for v in str(entry["size"]).split("x"))
    source = f"this machine's calibration ({choice.precision}, XLA {'on' if choice.xla else 'off'})"
    return Rate(seconds / (width * height), source)


def skip_reason(precision: str, xla: bool, flags: frozenset, gpu: Optional[str]) -> Optional[str]:
    """Why a candidate cannot win on this machine (so it is not timed), or None."""
    if gpu or xla:
        return None
    if precision == "bfloat16" and not flags & _FAST_BF16:
        return "no bfloat16 instructions: TensorFlow's bfloat16 CPU kernels ran 9x float32's step on AVX2"
    if precision == "float16" and not flags & _FAST_F16:
        return "no float16 instructions: TensorFlow's float16 CPU kernels ran 6-7x float32's step"
    return None


def measure(weights: str = "auto", log: Callable[[str], None] = None) -> dict:
    """Times each candidate's step on this machine; returns the cache entry (not written).

    The entry: "seconds" per candidate (median s/step at SIZE px), "loss_ratio" (its image's loss
    after the steps, evaluated in float32, over float32's), "skipped" (candidate: why), "compile_seconds",
    "calibration_seconds", "gpu", "measured" (UTC time), "size", "steps".
    weights: the VGG19 weights to time with (any spec `nst_tf.weights.load` takes); if they cannot
    be loaded, random weights (the timing is the same; the quality guard is then on random features).
    """
    import warnings

    import tensorflow as tf

    from nst_tf import features, image_io, losses, optimize  # loads TensorFlow: not at import

    log = log or (lambda line: sys.stderr.write(line + "\n"))
    start = time.perf_counter()
    gpu = gpu_name()
    spec = Objective(weights=weights)  # the default objective
    layers = list(spec.content_layers) + list(spec.style_layers)
    try:
        layer_weights = weights_lib.load(weights, "vgg19")
    except NstError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer_weights = weights_lib.load("random", "vgg19")
    content, style = (
        tf.constant(image_io.load_image(image_io.example_path(n), SIZE)[None]) for n in ("boston", "the_scream")
    )
    entry = {
        "seconds": {},
        "loss_ratio": {},
        "skipped": {},
        "compile_seconds": {},
        "gpu": gpu,
        "size": f"{content.shape[2]}x{content.shape[1]}",
        "steps": WARMUP_STEPS + TIMED_STEPS,
    }
    reference = None  # (float32 loss function, its loss after the steps)
    flags = cpu_flags()
    for precision, xla in CANDIDATES:
        key = name(precision, xla)
        why = skip_reason(precision, xla, flags, gpu)
        if why:
            entry["skipped"][key] = why
            continue
        model = features.build_feature_model(layers, "vgg19", layer_weights=layer_weights, precision=precision)
        adam = optimize.make_optimizer(Optimisation(optimizer="adam"))
        image, opt_state = content, adam.init(content)
        t0 = time.perf_counter()
        try:
            targets = losses.compute_targets(model, content, style, spec)
            loss_fn = lambda x, model=model, targets=targets: losses.objective(model, targets, spec, x, per_image=True)  # noqa: E731
            step = optimize.CompiledStep(optimize.make_step(loss_fn, adam), jit_compile=xla)
            image, opt_state, loss, _, _ = step(image, opt_state)  # traces (and compiles)
            loss.numpy()
        except tf.errors.OpError as err:  # a kernel this machine refuses (e.g. oneDNN capped below bfloat16)
            entry["skipped"][key] = "failed here: " + (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            continue
        entry["compile_seconds"][key] = round(time.perf_counter() - t0, 2)
        times, best = [], min(entry["seconds"].values(), default=None)
        for i in range(WARMUP_STEPS + TIMED_STEPS):
            t0 = time.perf_counter()
            image, opt_state, loss, _, _ = step(image, opt_state)
            loss.numpy()
            times.append(time.perf_counter() - t0)
            if i == 0 and best is not None and times[0] > GIVE_UP * best:
                break
        if len(times) < WARMUP_STEPS + TIMED_STEPS:
            entry["skipped"][key] = f"its first step took {times[0]:.3f} s, over {GIVE_UP:g}x the best ({best:.3f} s)"
            continue
        seconds = sorted(times[WARMUP_STEPS:])[TIMED_STEPS // 2]
        entry["seconds"][key] = round(seconds, 5)
        if reference is None:  # float32 without XLA: the others are held to its result
            reference = (loss_fn, float(loss_fn(image)[0][0]))
        ratio = float(reference[0](image)[0][0]) / reference[1]
        entry["loss_ratio"][key] = round(ratio, 5)
        log(f"nst-tf: autotune: {key:<18} {seconds:.3f} s/step at {entry['size']}, float32 loss x{ratio:.4f}")
    entry["calibration_seconds"] = round(time.perf_counter() - start, 1)
    entry["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return entry


def choose(entry: dict, precision: str = "auto", jit: str = "auto", style_loss: str = "gram") -> Choice:
    """The fastest measured candidate that fits what is pinned and passes the quality guard."""
    xla_pin = {"on": True, "off": False}.get(jit)
    pinned_by = None
    if xla_pin is None and style_loss == "w2":
        xla_pin, pinned_by = False, "w2 runs without XLA"
    fits = []
    for key, seconds in entry.get("seconds", {}).items():
        p, x = key.split("/")[0], key.endswith("-on")
        if precision not in ("auto", p) or xla_pin not in (None, x):
            continue
        if abs(entry.get("loss_ratio", {}).get(key, 1.0) - 1.0) > QUALITY_BOUND:
            continue
        fits.append((seconds, p, x))
    if not fits:
        p = "float32" if precision == "auto" else precision
        x = bool(xla_pin)
        return Choice(p, x, f"no measured candidate fits; the rule, {_RULE}")
    seconds, p, x = min(fits)
    baseline = entry["seconds"].get(name("float32", True)) or entry["seconds"].get(name("float32", False))
    speed = (
        f", a step in {seconds / baseline:.2f}x the time of float32 with XLA"
        if baseline and (p, x) != ("float32", True)
        else ""
    )
    others = len(entry["seconds"]) - 1
    reason = f"auto: measured fastest of {others + 1} at {entry.get('size')}: {seconds:.3f} s/step{speed}"
    return Choice(p, x, reason + (f"; {pinned_by}" if pinned_by else ""))


def resolved_mode(mode: Optional[str]) -> str:
    """`mode`, or `$NST_TF_AUTOTUNE` when it is None (default "cached"), checked."""
    if mode is None:
        mode = os.environ.get(ENV) or "cached"
        if mode not in MODES:
            raise NstError(f"{ENV}={mode!r}; choose one of: {', '.join(MODES)}")
    elif mode not in MODES:
        raise NstError(f"unknown autotune mode {mode!r}; choose one of: {', '.join(MODES)}")
    return mode


def resolve(
    precision: str = "auto",
    jit: str = "auto",
    style_loss: str = "gram",
    mode: Optional[str] = None,
    weights: str = "auto",
) -> Choice:
    """The concrete (precision, XLA) for these settings: given values pass through; "auto" is
    measured (see the module docstring) or, with mode "off", the safe rule (float32, XLA off)."""
    mode = resolved_mode(mode)
    if precision != "auto" and jit != "auto":
        return Choice(precision, jit == "on", "as given")
    if mode == "off":
        xla = jit == "on"
        return Choice("float32" if precision == "auto" else precision, xla, f"autotune off: the rule, {_RULE}")
    key = machine_key(gpu_name())
    entry = _measured.get(key)
    if entry is None and mode == "cached":
        entry = _read_cache().get("entries", {}).get(key)
    if entry is None:
        sys.stderr.write(
            f"nst-tf: timing each precision and XLA setting on this machine, once (cached in {cache_path()}; "
            f"{ENV}=off skips it)\n"
        )
        entry = measure(weights)
        _measured[key] = entry
        _write_cache(key, entry)
        sys.stderr.write(f"nst-tf: autotune took {entry['calibration_seconds']:.0f} s\n")
    return choose(entry, precision, jit, style_loss)


def describe_cached(
    precision: str = "auto", jit: str = "auto", style_loss: str = "gram", mode: Optional[str] = None
) -> str:
    """What "auto" will be on this machine, from the cache only (no TensorFlow): for `--dry_run`."""
    if precision != "auto" and jit != "auto":
        return f"precision {precision}, XLA {jit} (as given)"
    mode = resolved_mode(mode)
    if mode == "off":
        return "precision/XLA: " + resolve(precision, jit, style_loss, "off").describe()
    entries = cached_entries()
    if mode == "remeasure" or not entries:
        return (
            f"precision/XLA: auto, measured when the run starts (about 20-40 s, once per machine; "
            f"cached in {cache_path()})"
        )
    lines = []
    for key, entry in entries.items():
        where = "with GPU " + entry["gpu"] if entry.get("gpu") else "CPU only"
        lines.append(f"precision/XLA ({where}): {choose(entry, precision, jit, style_loss).describe()}")
    return "\n".join(lines)
