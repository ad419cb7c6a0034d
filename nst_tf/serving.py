"""SavedModel export: the whole style transfer as a TensorFlow graph, for TF Serving.

The exported model needs TensorFlow only (no nst_tf, no Keras objects): the VGG weights are
variables inside it and the optimisation is a `tf.while_loop` that carries the image and the
optimiser state as tensors, since a server cannot create variables per request. The loop body is
`optimize.make_step` over `losses.objective`, the same pure step the `tf.Variable` loop runs; the
feature network is the same Keras model, called with `stateless_call` on the stored weights, so
the graph computes what `stylize` computes.

Signatures (every input is required by TF Serving; a negative number selects the export's
default, listed in its metadata):
- `serving_default`: `content`, `style` (tf.string [1]: encoded JPEG or PNG bytes), `steps`
  (int32 scalar: steps per scale), `size` (int32: the output's longest side), `content_weight`,
  `style_weight` (float32) -> `image` (uint8 [H, W, 3]) and `png` (tf.string: the image encoded).
- `serving_rest`: the same inputs -> `png_bytes` only (TF Serving's REST API base64-encodes
  string outputs whose names end in `_bytes`).
- `stylize_tensor`: `content`, `style` as float32 [1, H, W, 3] in [0, 1], the same scalars ->
  `image` (float32 [1, H, W, 3] in [0, 1]).
Requests over the limits (`Limits`), or bytes that are not a JPEG or PNG image, fail with
`InvalidArgument` before any optimisation runs.
"""

from __future__ import annotations

import json
import time
from typing import Optional

import tensorflow as tf

from nst_tf import __version__, export, features, losses, optimize, schedule, weights
from nst_tf import plan as plan_lib
from nst_tf.tensor_image import after, check, decode, fit_size, resize, start_image, to_uint8
from nst_tf.config import INITS, Config, make_config
from nst_tf.errors import NstError
from nst_tf.export import METADATA_FILE, Limits  # noqa: F401  (METADATA_FILE: where the metadata is)
from nst_tf.vgg import MIN_SIDE


def check_tensor(image, name: str, max_input_pixels: int):
    """A float `[1, H, W, 3]` input: finite, within the pixel limit, clipped to [0, 1]."""
    shape = tf.shape(image)
    checks = [
        check(tf.equal(shape[0], 1), f"{name}: send exactly one image (a batch of one), got {{}}", [shape[0]]),
        check(
            tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64) <= max_input_pixels,
            f"{name}: the image is {{}}x{{}}, over this model's limit of {max_input_pixels} pixels per input",
            [shape[2], shape[1]],
        ),
        check(tf.reduce_all(tf.math.is_finite(image)), f"{name}: the image holds NaN or infinite values"),
    ]
    return after(checks, tf.clip_by_value(image, 0.0, 1.0))


class GraphWeights(tf.Module):
    """The VGG weights as SavedModel variables, in `model.non_trainable_variables`' order.

    From the embedded table they are stored as it is, 8-bit: per layer the uint8 indices (in
    Keras' kernel layout), the float32[256] table and the bias; `values()` dequantises them with
    one gather per layer. Other sources (the official Keras file, a path) are stored as float32
    kernels; "random" stores the model's own initial weights.
    """

    def __init__(self, model, source: weights.Source, backbone: str):
        super().__init__(name="vgg_weights")
        self._order = [tuple(v.path.split("/")[-2:]) for v in model.non_trainable_variables]  # (layer, kernel|bias)
        layers = sorted({layer for layer, _ in self._order})
        self.quantized = source.kind == "embedded"
        if self.quantized:
            table = weights.load_embedded_quantized(source.path)
            self.indices = {n: tf.Variable(table[n][0], trainable=False, name=f"{n}_indices") for n in layers}
            self.tables = {n: tf.Variable(table[n][1], trainable=False, name=f"{n}_table") for n in layers}
            self.biases = {n: tf.Variable(table[n][2], trainable=False, name=f"{n}_bias") for n in layers}
        else:
            loaded = weights.read(source, backbone) if source.kind != "random" else None
            if loaded is None:
                loaded = {n: tuple(model.get_layer(n).get_weights()) for n in layers}
            self.kernels = {n: tf.Variable(loaded[n][0], trainable=False, name=f"{n}_kernel") for n in layers}
            self.biases = {n: tf.Variable(loaded[n][1], trainable=False, name=f"{n}_bias") for n in layers}

    def values(self):
        """The float32 weights, as the model's `stateless_call` takes them."""
        kernels = {}
        for layer, kind in self._order:
            if kind == "kernel" and layer not in kernels:
                kernels[layer] = (
                    tf.gather(self.tables[layer], tf.cast(self.indices[layer], tf.int32))
                    if self.quantized
                    else tf.identity(self.kernels[layer])
                )
        return [kernels[layer] if kind == "kernel" else tf.identity(self.biases[layer]) for layer, kind in self._order]


def scale_plan(cfg: Config, size):
    """`nst_tf.schedule.scale_plan` for a requested size (a tensor): `[(size, style_size, steps,
    runs)]` per scale, where `runs` is False (a tensor) for a coarse scale under 64 px, which
    `stylize` skips; the same function `Config.scale_plan` runs on Python numbers."""
    return [
        (s.size, s.size if s.style_size is None else s.style_size, s.steps, s.runs)
        for s in schedule.scale_plan(cfg.picture, cfg.optimisation, tf.cast(size, tf.int32), schedule.TF)
    ]


class _Graph:
    """The request graph: validation, the scale plan, and one `tf.while_loop` per scale.

    A plain object (not a `tf.Module`): it holds the Keras model, which must not be tracked, or
    its float32 variables would be saved beside the 8-bit table.
    """

    def __init__(self, cfg: Config, limits: Limits, model, graph_weights: GraphWeights, jit: bool):
        self.cfg, self.limits, self.model, self.weights = cfg, limits, model, graph_weights
        self.optimizer = optimize.make_optimizer(cfg.optimisation)
        self.optimise = tf.function(self._optimise, jit_compile=jit)

    def _optimise(self, values, content, style, init, steps, content_weight, style_weight):
        """`steps` optimiser steps from `init` (`[1, H, W, 3]`, the content's size), in a
        `tf.while_loop` over the shared pure step."""
        cfg = self.cfg

        def model(x, training=False):
            return self.model.stateless_call([], values, x, training=training)[0]

        targets = losses.compute_targets(model, content, style, cfg.objective, seed=cfg.seed)
        step = optimize.make_step(
            lambda image: losses.objective(model, targets, cfg.objective, image, content_weight, style_weight),
            self.optimizer,
        )

        def body(i, image, state):
            image, state, _, _ = step(image, state)
            return i + 1, image, state

        _, image, state = tf.while_loop(
            lambda i, image, state: i < steps,
            body,
            (tf.constant(0), init, self.optimizer.init(init)),
            maximum_iterations=self.limits.max_steps,
        )
        return self.optimizer.result(image, state)  # L-BFGS: its last accepted point

    def fit(self, hw, side):
        """The size an image of size `hw` is resized to for longest side `side` (`side` square
        with `config.square`)."""
        return tf.stack([side, side]) if self.cfg.square else fit_size(hw, side)

    def initial(self, content, style):
        return start_image(self.cfg.init, content, style, self.cfg.seed)

    def run(self, content, style, steps, size, content_weight, style_weight):
        """The whole transfer of `[1, H, W, 3]` images in [0, 1]: `[1, h, w, 3]` in [0, 1]."""
        cfg, limits = self.cfg, self.limits
        steps = tf.convert_to_tensor(steps, tf.int32)
        size = tf.convert_to_tensor(size, tf.int32)
        checks = [
            check(
                tf.logical_or(steps < 0, (steps >= 1) & (steps <= limits.max_steps)),
                f"steps={{}}: give 1 to {limits.max_steps} steps per scale, or -1 for the default ({cfg.steps})",
                [steps],
            ),
            check(size != 0, f"size=0: give the output's longest side in pixels, or -1 for the default ({cfg.size})"),
        ]
        for name, value in (("content_weight", content_weight), ("style_weight", style_weight)):
            checks.append(check(tf.math.is_finite(value), f"{name} is not a finite number"))
        content_weight = tf.where(content_weight < 0, cfg.content_weight, content_weight)
        style_weight = tf.where(style_weight < 0, cfg.style_weight, style_weight)
        size = tf.where(size < 0, cfg.size, size)
        if cfg.start_size:
            checks.append(
                check(
                    size > cfg.start_size,
                    f"size={{}}: this model starts at {cfg.start_size} px, so give a larger size",
                    [size],
                )
            )
        plan = scale_plan(cfg, size)
        final_size, final_style_size = plan[-1][:2]
        for what, image, side in (("output", content, final_size), ("style image", style, final_style_size)):
            hw = self.fit(tf.shape(image)[1:3], side)
            pixels = tf.cast(hw[0], tf.int64) * tf.cast(hw[1], tf.int64)
            checks.append(
                check(
                    pixels <= limits.max_pixels,
                    f"size={{}} makes the {what} {{}}x{{}}, over this model's "
                    f"limit of {limits.max_pixels} pixels: ask for a smaller size",
                    [size, hw[1], hw[0]],
                )
            )
        content = after(checks, content)
        values = self.weights.values()

        image, have = None, False
        for scale_size, style_size, default_steps, runs in plan:
            scale_steps = tf.where(steps < 0, default_steps, steps)

            def scale(image=image, have=have, scale_size=scale_size, style_size=style_size, scale_steps=scale_steps):
                hw = self.fit(tf.shape(content)[1:3], scale_size)
                style_hw = self.fit(tf.shape(style)[1:3], style_size)
                big_enough = check(
                    tf.reduce_min(tf.concat([hw, style_hw], 0)) >= MIN_SIDE,
                    f"size={{}} makes an image {{}}x{{}} or its style {{}}x{{}}; VGG needs at least {MIN_SIDE} px "
                    "on each side: ask for a larger size",
                    [size, hw[1], hw[0], style_hw[1], style_hw[0]],
                )
                with tf.control_dependencies([big_enough]):
                    content_s, style_s = resize(content, hw), resize(style, style_hw)
                if have is False:
                    init = self.initial(content_s, style_s)
                else:
                    init = tf.cond(have, lambda: resize(image, hw), lambda: self.initial(content_s, style_s))
                return self.optimise(
                    values, content_s, style_s, init, scale_steps, content_weight, style_weight
                ), tf.constant(True)

            if runs is True:
                image, have = scale()
            else:
                previous = (image, have) if image is not None else (tf.zeros([1, 1, 1, 3]), tf.constant(False))
                image, have = tf.cond(runs, scale, lambda previous=previous: previous)
        return tf.ensure_shape(image, [1, None, None, 3])


class ExportedModule(tf.Module):
    """What the SavedModel holds: the weights, the three signatures and `metadata()`."""

    def __init__(self, cfg: Config, limits: Limits, choice):
        super().__init__(name="nst_tf")
        precision, jit = choice.precision, choice.xla
        layers = list(cfg.content_layers) + list(cfg.style_layers)
        model = features.build_feature_model(
            layers, cfg.backbone, weights=None, precision=precision, pooling=cfg.pooling
        )
        source = weights.resolve(cfg.weights, cfg.backbone)
        self.vgg = GraphWeights(model, source, cfg.backbone)
        graph = _Graph(cfg, limits, model, self.vgg, jit)
        self.info = {
            "nst_tf_version": __version__,
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "limits": limits._asdict(),
            "defaults": {
                "steps": cfg.steps,
                "size": cfg.size,
                "content_weight": cfg.content_weight,
                "style_weight": cfg.style_weight,
            },
            "scale_plan_at_default_size": [list(p) for p in cfg.scale_plan()],
            "weights": {"source": source.kind, "stored": "uint8 table" if self.vgg.quantized else "float32"},
            "precision": precision,
            "xla": jit,
            "precision_choice": choice.reason,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.options().items()},
        }
        info_json = json.dumps(self.info, indent=2, sort_keys=True)
        scalars = [
            tf.TensorSpec([], tf.int32, "steps"),
            tf.TensorSpec([], tf.int32, "size"),
            tf.TensorSpec([], tf.float32, "content_weight"),
            tf.TensorSpec([], tf.float32, "style_weight"),
        ]
        max_in = limits.max_input_pixels

        # One function behind both byte signatures, so the transfer graph is traced and stored once.
        @tf.function
        def from_bytes(content, style, steps, size, content_weight, style_weight):
            image = graph.run(
                decode(content, "content", max_in),
                decode(style, "style", max_in),
                steps,
                size,
                content_weight,
                style_weight,
            )
            return to_uint8(image[0])

        def serving_default(content, style, steps, size, content_weight, style_weight):
            image = from_bytes(content, style, steps, size, content_weight, style_weight)
            return {"image": image, "png": tf.io.encode_png(image)}

        def serving_rest(content, style, steps, size, content_weight, style_weight):
            image = from_bytes(content, style, steps, size, content_weight, style_weight)
            return {"png_bytes": tf.io.encode_png(image)}

        def stylize_tensor(content, style, steps, size, content_weight, style_weight):
            content, style = check_tensor(content, "content", max_in), check_tensor(style, "style", max_in)
            return {"image": graph.run(content, style, steps, size, content_weight, style_weight)}

        encoded = [tf.TensorSpec([None], tf.string, "content"), tf.TensorSpec([None], tf.string, "style")]
        tensors = [
            tf.TensorSpec([None, None, None, 3], tf.float32, "content"),
            tf.TensorSpec([None, None, None, 3], tf.float32, "style"),
        ]
        self.serving_default = tf.function(serving_default, input_signature=encoded + scalars)
        self.serving_rest = tf.function(serving_rest, input_signature=encoded + scalars)
        self.stylize_tensor = tf.function(stylize_tensor, input_signature=tensors + scalars)
        self.metadata = tf.function(lambda: tf.constant(info_json), input_signature=[])


def export_saved_model(
    export_dir: str,
    version: int = 1,
    config: Optional[Config] = None,
    limits: Optional[Limits] = None,
    overwrite: bool = False,
    **options,
) -> str:
    """Writes the style transfer as a SavedModel at `<export_dir>/<version>/`; returns that path.

    config: a `Config`, or the `nst_tf.plan.Plan` the door resolved (with export=True).
    options: `Config` fields, as for `stylize` (size, steps, optimizer, weights, ...): they set the
        defaults a request falls back on and everything a request cannot change.
    limits: a `Limits` (maximum output pixels, steps per scale, input pixels).
    jit: XLA for the loop ("on"; "auto" and "off" leave it off in the export, since TF Serving
        on CPU runs XLA only with --xla_cpu_compilation_enabled).
    The version folder is written beside its final name and renamed into place, so a model server
    watching `export_dir` never sees half an export; an existing version is an error unless
    `overwrite`.
    """
    cfg = make_config(getattr(config, "config", config), **options)  # a Config, or a door's Plan
    limits = limits or Limits()
    if cfg.init not in INITS or plan_lib.painter_of(cfg) != "optimisation":
        raise NstError(
            f"init={cfg.init!r}: an init image file or network is not exported here (export a network with "
            "nst-tf-export-network); use content, noise or style"
        )
    for name, value in (
        ("preserve_colors", cfg.preserve_colors != "none"),
        ("style_mask", cfg.style_mask),
        ("style_blend", cfg.style_blend and len(cfg.style_blend) > 1),
    ):
        if value:
            raise NstError(
                f"{name} is not exported: a request carries one style image and no masks; stylise locally for it"
            )
    limits.check()
    if cfg.steps > limits.max_steps or any(s > limits.max_steps for s in cfg.scale_steps or ()):
        raise NstError(f"the default steps ({cfg.steps}) exceed max_steps ({limits.max_steps})")
    export.version_path(export_dir, version, overwrite)  # before the minutes of tracing

    # "auto" precision is resolved here, on the exporting machine, for a loop without XLA unless jit="on".
    plan = plan_lib.resolve(config if isinstance(config, plan_lib.Plan) and not options else cfg, export=True)
    module = ExportedModule(plan.config, limits, plan.choice)
    signatures = {
        "serving_default": module.serving_default,
        "serving_rest": module.serving_rest,
        "stylize_tensor": module.stylize_tensor,
    }
    return export.save(module, export_dir, version, signatures, module.info, overwrite)
