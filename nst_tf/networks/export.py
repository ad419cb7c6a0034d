"""A trained network for TF Serving (a SavedModel: bytes in, image and PNG out, one forward pass)
and for devices (the TF Lite pair `style_predict.tflite` and `style_transform.tflite`)."""

from __future__ import annotations

import os
from typing import Dict

import tensorflow as tf

from nst_tf import __version__, files, painters
from nst_tf import export as export_lib
from nst_tf.errors import NstError
from nst_tf.networks import arbitrary, universal, use
from nst_tf.networks.options import MIN_SIDE, QUANTIZATIONS
from nst_tf.tensor_image import after, check, decode, fit_size, resize, to_uint8

PREDICT_SHAPE = (1, 256, 256, 3)  # the TF Lite pair's shapes (as Magenta's)
TRANSFORM_SHAPE = (1, 384, 384, 3)
# A painting request (a predict network or the universal painter): content and style bytes (a batch
# of one JPEG or PNG each), strength in [0, 1], the longest side (<= 0: the export's size).
# The most pixels a request's painting may have (2048 x 2048 by default; `max_output_pixels`): a
# larger `size` is refused in the graph before anything is painted, never an out-of-memory abort.
MAX_OUTPUT_PIXELS = 2048 * 2048
PAINT_SIGNATURE = [
    tf.TensorSpec([None], tf.string, "content"),
    tf.TensorSpec([None], tf.string, "style"),
    tf.TensorSpec([], tf.float32, "strength"),
    tf.TensorSpec([], tf.int32, "size"),
]


def _sized_content(content_bytes, size_, size: int, max_input_pixels: int, max_output_pixels: int):
    """The request's photo decoded and resized to its painting size: `size_` (<= 0: `size`), refused
    (`InvalidArgument` with a message that says why) where the painting would have more than
    `max_output_pixels` pixels or a side under `MIN_SIDE`."""
    content = decode(content_bytes, "content", max_input_pixels)
    side = tf.where(size_ > 0, size_, size)
    hw = fit_size(tf.shape(content)[1:3], side)
    pixels = tf.cast(hw[0], tf.int64) * tf.cast(hw[1], tf.int64)
    limit = check(
        pixels <= max_output_pixels,
        f"size={{}} makes the painting {{}}x{{}}, more than the {max_output_pixels} pixels this model paints: "
        "ask for a smaller size",
        [side, hw[1], hw[0]],
    )
    smallest = check(
        tf.reduce_min(hw) >= MIN_SIDE,
        f"size={{}} makes the painting {{}}x{{}}: a side needs {MIN_SIDE} px or more: ask for a larger size",
        [side, hw[1], hw[0]],
    )
    return resize(after([limit, smallest], content), hw)


def _checked_strength(strength):
    """`strength` once it is a finite number in [0, 1] (else `InvalidArgument` saying so)."""
    ok = tf.math.is_finite(strength) & (strength >= 0.0) & (strength <= 1.0)
    return after([check(ok, "strength={} must be a finite number in [0, 1]", [strength])], strength)


def _tf_variables(painter):
    """The TensorFlow variables under the network's Keras 3 variables: a `tf.Module` holding them
    is what the TF Lite converter freezes (without it, it reads uninitialised memory)."""
    models_ = [painter.network] + ([painter.statistics] if painter.statistics is not None else [])
    return [v.value for m in models_ for v in m.weights]


class _Served(tf.Module):
    def __init__(self, painter: use.NetworkPainter, size: int, max_input_pixels: int, max_output_pixels: int):
        super().__init__()
        self.network, self.statistics = painter.network, painter.statistics
        self.variables_ = _tf_variables(painter)
        net = self.network

        def paint(content_bytes, embedding_of, size_):
            content = _sized_content(content_bytes, size_, size, max_input_pixels, max_output_pixels)
            image = to_uint8(net([content, embedding_of(content)])[0])
            return {"image": image, "png": tf.io.encode_png(image)}

        if net.predict:

            def predicted(image):
                return net.head(self.statistics(resize(image, PREDICT_SHAPE[1:3])))

            @tf.function(input_signature=PAINT_SIGNATURE)
            def serving_default(content, style, strength, size_):
                style_embedding = predicted(decode(style, "style", max_input_pixels))
                strength = _checked_strength(strength)
                mix = lambda c: strength * style_embedding + (1.0 - strength) * predicted(c)  # noqa: E731
                return paint(content, mix, size_)

        else:

            @tf.function(
                input_signature=[
                    tf.TensorSpec([None], tf.string, "content"),
                    tf.TensorSpec([], tf.int32, "style_index"),
                    tf.TensorSpec([], tf.int32, "size"),
                ]
            )
            def serving_default(content, style_index, size_):
                ok = tf.debugging.assert_less(style_index, net.num_styles, "style_index is out of range")
                with tf.control_dependencies([ok, tf.debugging.assert_non_negative(style_index)]):
                    row = tf.gather(tf.convert_to_tensor(net.table), style_index)[None]
                return paint(content, lambda c: row, size_)

        self.serving_default = serving_default


class _ServedPainting(tf.Module):
    """A painter of any painting in one graph: photo and painting bytes, strength and size -> the
    image and its PNG. `paint(content, style, strength)` is the painter's graph (`[1, H, W, 3]`
    tensors, the photo at the asked size, the painting as decoded, strength checked in [0, 1])."""

    def __init__(self, network, variables, paint, size: int, max_input_pixels: int, max_output_pixels: int):
        super().__init__()
        self.network, self.variables_ = network, variables

        @tf.function(input_signature=PAINT_SIGNATURE)
        def serving_default(content, style, strength, size_):
            strength = _checked_strength(strength)
            content = _sized_content(content, size_, size, max_input_pixels, max_output_pixels)
            style = decode(style, "style", max_input_pixels)
            image = to_uint8(paint(content, style, strength)[0])
            return {"image": image, "png": tf.io.encode_png(image)}

        self.serving_default = serving_default


def _served_universal(painter, *limits) -> _ServedPainting:
    """The universal painter's cascade (eigen-decompositions: TF Serving runs them), the painting at
    the photo's size."""

    def paint(content, style, strength):
        style = resize(style, fit_size(tf.shape(style)[1:3], tf.reduce_max(tf.shape(content)[1:3])))
        return universal.graph_paint(painter, content, style, strength)

    variables = [v.value for m in [painter.network, *_encoder_models(painter)] for v in m.weights]
    return _ServedPainting(painter.network, variables, paint, *limits)


def _served_arbitrary(painter, *limits) -> _ServedPainting:
    """Magenta's arbitrary network: the painting's vector (its centred square at 256 px), mixed with
    the content's own below strength 1, and the transform at the content's size."""
    variables = [v.value for v in painter.network.weights]
    return _ServedPainting(painter.network, variables, lambda c, s, k: _arbitrary_paint(painter, c, s, k), *limits)


def _centre_square(image, side: int = arbitrary.STYLE_SIZE, lanczos: bool = True):
    """`arbitrary.style_crop` as a graph: `[1, h, w, 3]` -> its centred square resized to `side`
    (Lanczos as the painter does; bilinear where TF Lite and TensorFlow.js lack the kernel)."""
    h, w = tf.shape(image)[1], tf.shape(image)[2]
    s = tf.minimum(h, w)
    square = image[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    if lanczos:
        return resize(square, tf.stack([side, side]))
    return tf.image.resize(square, [side, side], method="bilinear")


def _arbitrary_paint(painter, content, style, strength, vector=None, lanczos: bool = True):
    """The arbitrary network's painting as a graph: `content` `[1, H, W, 3]`, a style image (or its
    `vector`), `strength` a scalar -> `[1, H, W, 3]` in [0, 1]."""
    net = painter.network
    if vector is None:
        vector = net.predict_net(_centre_square(style, lanczos=lanczos))
    own = net.predict_net(_centre_square(content, lanczos=lanczos))
    return net.transform([content, strength * vector + (1.0 - strength) * own])


def _served_kind(painter):
    """The SavedModel module that serves `painter` (by the painter's name)."""
    return {"universal": _served_universal, "network": _Served, "arbitrary": _served_arbitrary}[painter.name]


def _encoder_models(painter):
    return [painter.encoder.all, *painter.encoder.each.values()]


def export_saved_model(
    network,
    export_dir: str,
    version: int = 1,
    weights: str = "auto",
    size: int = 512,
    max_input_pixels=25_000_000,
    overwrite: bool = False,
    max_output_pixels: int = MAX_OUTPUT_PIXELS,
) -> str:
    """Writes `<export_dir>/<version>/`, a SavedModel whose `serving_default` paints in one forward
    pass: content bytes (a batch of one JPEG or PNG), style bytes and `strength` in [0, 1] (a
    predict network or the universal painter) or `style_index` (fixed styles), and `size` (the
    longest side; <= 0: `size`) -> `image` (uint8 `[H, W, 3]`) and `png`. A request whose painting
    would have more than `max_output_pixels` pixels, or a strength that is not a finite number in
    [0, 1], is an `InvalidArgument` that says so (docs/serving.md). Loadable with
    `tf.saved_model.load` alone. Written as every nst_tf SavedModel is (`nst_tf.export.save`); an
    existing version is an error unless `overwrite`."""
    painter = painters.make_painter(network, weights)
    served = _served_kind(painter)
    export_lib.version_path(export_dir, version, overwrite)  # before the tracing
    if not (MIN_SIDE <= size and size * size <= max_output_pixels):
        raise NstError(f"size={size} does not fit max_output_pixels={max_output_pixels}: lower one or raise the other")
    module = served(painter, size, max_input_pixels, max_output_pixels)
    metadata = {
        "nst_tf": __version__,
        "painter": painter.name,
        "size": size,
        "max_input_pixels": max_input_pixels,
        "max_output_pixels": max_output_pixels,
    }
    return export_lib.save(
        module, export_dir, version, {"serving_default": module.serving_default}, metadata, overwrite
    )


def _convert(function, module, quantization: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], module)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":  # dynamic range: int8 weights, float activations
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def export_tflite(network, folder: str, weights: str = "auto", quantization: str = "float16") -> Dict[str, str]:
    """Writes `style_predict.tflite` (style `[1, 256, 256, 3]` float in [0, 1] -> bottleneck
    `[1, 1, 1, D]`) and `style_transform.tflite` (content `[1, 384, 384, 3]` + bottleneck -> image)
    into `folder`, quantised as `quantization` ("float32", "float16" or dynamic-range "int8").
    A fixed-style network writes the transform and `style_table.npy` (its embeddings) instead of
    the predict model. Returns `{name: path}`."""
    if quantization not in QUANTIZATIONS:
        raise NstError(f"unknown quantization {quantization!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    painter = painters.make_painter(network, weights)
    if painter.name in PAIRS:
        return _write_tflite(folder, *PAIRS[painter.name](painter), quantization)
    net, d = painter.network, painter.network.embedding_size
    module = tf.Module()
    module.network, module.statistics, module.variables_ = net, painter.statistics, _tf_variables(painter)
    os.makedirs(folder, exist_ok=True)
    paths = {}

    @tf.function(input_signature=[tf.TensorSpec(TRANSFORM_SHAPE, tf.float32), tf.TensorSpec([1, 1, 1, d], tf.float32)])
    def style_transform(content, bottleneck):
        return net([content, tf.reshape(bottleneck, [1, d])])

    models_ = {"style_transform": style_transform}
    if net.predict:

        @tf.function(input_signature=[tf.TensorSpec(PREDICT_SHAPE, tf.float32)])
        def style_predict(style):
            return tf.reshape(net.head(painter.statistics(style)), [1, 1, 1, d])

        models_["style_predict"] = style_predict
    else:
        import numpy as np

        paths["style_table"] = os.path.join(folder, "style_table.npy")
        with files.atomic_file(paths["style_table"]) as f:
            np.save(f, np.asarray(net.table).reshape(net.num_styles, 1, 1, d))
    return {**paths, **_write_tflite(folder, models_, module, quantization)}


def _universal_pair(painter, content_shape=TRANSFORM_SHAPE):
    """The universal painter's `{"style_predict", "style_transform"}` functions and the module that
    holds their variables: predict (style `[1, 256, 256, 3]` -> its representation `[1, D]`: each
    level's mean and covariance root, `universal.pack`) and transform (content `content_shape` +
    representation + strength `[1]` -> image). Both take their matrix roots by Newton-Schulz
    (matmuls: TF Lite and TensorFlow.js have no eigh)."""
    ns = universal.UniversalPainter(
        painter.network, method="newton_schulz", encoder=painter.encoder, levels=painter.levels
    )
    module = tf.Module()
    module.variables_ = [v.value for m in [painter.network, *_encoder_models(painter)] for v in m.weights]
    size = universal.packed_size(painter.levels)

    @tf.function(input_signature=[tf.TensorSpec(PREDICT_SHAPE, tf.float32, "style")])
    def style_predict(style):
        return {"representation": universal.pack(ns.style_graph(style))}

    @tf.function(
        input_signature=[
            tf.TensorSpec(content_shape, tf.float32, "content"),
            tf.TensorSpec([1, size], tf.float32, "representation"),
            tf.TensorSpec([1], tf.float32, "strength"),
        ]
    )
    def style_transform(content, representation, strength):
        reps = universal.unpack(representation, painter.levels)
        return {"image": universal.graph_paint(ns, content, None, strength[0], reps)}

    return {"style_predict": style_predict, "style_transform": style_transform}, module


def _arbitrary_pair(painter, content_shape=TRANSFORM_SHAPE):
    """Magenta's network as `{"style_predict", "style_transform"}` and their variables' module: predict
    (style `[1, 256, 256, 3]` -> its vector `[1, 100]`) and transform (content `content_shape` + the
    vector + strength `[1]` -> image; below strength 1 the content's own vector is mixed in), the
    universal pair's signatures, so the page and a device app take either."""
    module = tf.Module()
    module.variables_ = [v.value for v in painter.network.weights]

    @tf.function(input_signature=[tf.TensorSpec(PREDICT_SHAPE, tf.float32, "style")])
    def style_predict(style):
        return {"representation": painter.network.predict_net(style)}

    @tf.function(
        input_signature=[
            tf.TensorSpec(content_shape, tf.float32, "content"),
            tf.TensorSpec([1, arbitrary.EMBEDDING], tf.float32, "representation"),
            tf.TensorSpec([1], tf.float32, "strength"),
        ]
    )
    def style_transform(content, representation, strength):
        return {"image": _arbitrary_paint(painter, content, None, strength[0], representation, lanczos=False)}

    return {"style_predict": style_predict, "style_transform": style_transform}, module


PAIRS = {
    "universal": _universal_pair,
    "arbitrary": _arbitrary_pair,
}  # the painters that export a predict/transform pair


def _write_tflite(folder: str, functions: dict, module, quantization: str) -> Dict[str, str]:
    """Each of `functions` converted and written atomically as `<folder>/<name>.tflite`."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name, function in functions.items():
        paths[name] = os.path.join(folder, f"{name}.tflite")
        with files.atomic_file(paths[name]) as f:
            f.write(_convert(function, module, quantization))
    return paths


def run_tflite(path: str, *inputs):
    """Runs a `.tflite` file on `inputs` (NumPy arrays, matched to the model's inputs by shape)
    with `tf.lite.Interpreter`; returns the first output."""
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        value = next(v for v in inputs if tuple(v.shape) == tuple(detail["shape"]))
        interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


# The TensorFlow.js converter lives in its own environment (`make tfjs-converter`): its pins
# (TensorFlow 2.19, TF Decision Forests) cannot live beside the project's TensorFlow.
TFJS_CONVERTER = os.environ.get("NST_TF_TFJS_CONVERTER", os.path.join(".venv-tfjs", "bin", "tensorflowjs_converter"))


def export_tfjs(
    network, folder: str, weights: str = "auto", quantization: str = "float16", converter=None
) -> Dict[str, str]:
    """Writes a painter of any painting (arbitrary, universal) for TensorFlow.js into `folder`: `style_predict/` (style
    `[1, 256, 256, 3]` float in [0, 1] -> `representation` `[1, D]`) and `style_transform/`
    (`content` `[1, H, W, 3]` of any size, `representation`, `strength` `[1]` -> image), each a graph
    model (`model.json` and weight shards), weights quantised as `quantization`. The functions are
    the TF Lite pair's (matrix roots by Newton-Schulz), written as SavedModels and converted by
    `tensorflowjs_converter` (`converter`, default `TFJS_CONVERTER`). Returns `{name: folder}`."""
    import subprocess
    import tempfile

    if quantization not in QUANTIZATIONS:
        raise NstError(f"unknown quantization {quantization!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    converter = converter or TFJS_CONVERTER
    if not os.path.isfile(converter):
        raise NstError(f"no TensorFlow.js converter at {converter}: make tfjs-converter installs one")
    painter = painters.make_painter(network, weights)
    if painter.name not in PAIRS:
        raise NstError("the TensorFlow.js export takes a network that paints any painting (arbitrary or universal)")
    functions, module = PAIRS[painter.name](painter, content_shape=(1, None, None, 3))
    flags = {"float16": ["--quantize_float16=*"], "int8": ["--quantize_uint8=*"], "float32": []}[quantization]

    def fill(staging):
        with tempfile.TemporaryDirectory() as tmp:
            for name, function in functions.items():
                saved = os.path.join(tmp, name)
                tf.saved_model.save(module, saved, signatures={"serving_default": function.get_concrete_function()})
                args = [converter, "--input_format=tf_saved_model", "--output_format=tfjs_graph_model", *flags]
                done = subprocess.run([*args, saved, os.path.join(staging, name)], capture_output=True, text=True)
                if done.returncode:
                    last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
                    raise NstError(f"the TensorFlow.js converter failed on {name}: {last}")

    files.write_folder(folder, fill, overwrite=True)
    return {name: os.path.join(folder, name) for name in functions}
