"""One pass of Magenta's arbitrary network on the LiteRT interpreter: no TensorFlow in the process.

A one-pass command spent 98% of its 6.3 s whole process importing TensorFlow, building the Keras network
and tracing it (docs/performance.md); the painting itself is 0.1 s. This runs the same network on
`ai_edge_litert` (Google's TF Lite runtime, 0.1 s to import) with numpy and Pillow around it.

The Keras network (`networks.arbitrary`) stays the source of truth: `convert` writes its two halves as
float32 TF Lite flatbuffers (style predict at 256 x 256, style transform at any image size) into the
cache, once per network file (`make` does it at install; otherwise the first use), and `paint` runs
them. The only differences from the Keras painter: Pillow's Lanczos resampling (float, per channel)
where the Keras painter uses TensorFlow's, and TF Lite's kernels: measured within 1 level (mean 0.02)
on the bundled example (tests/test_lite.py holds it within 2). Options it does not honour (regions,
adaptation, tiles, a style size other than 256) send the command to the TensorFlow painter: `refusal`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image

from nst_tf import __version__, color, files, image_io, painting
from nst_tf.errors import NstError
from nst_tf.networks import options as network_options

STYLE_SIZE = 256  # the predictor's input side (networks.arbitrary.STYLE_SIZE)
NETWORKS = ("demo", "arbitrary")  # the bundled arbitrary network, by its names
FILES = ("style_predict.tflite", "style_transform.tflite")
ENV = "NST_TF_LITE"  # "off": never use this runtime


def refusal(network, options: painting.Options, square: bool = False) -> str:
    """Why this runtime cannot paint with `network` and the painting `options` as the Keras painter
    would; "" when it can."""
    if os.environ.get(ENV) == "off":
        return f"${ENV}=off"
    if network not in NETWORKS:
        return f"--network={network} is not the bundled arbitrary network"
    for name in ("style_mask", "adapt_steps", "style_index"):
        if name in options.asked():
            return f"--{name} needs the TensorFlow painter"
    if options.tile not in ("auto", "off") or square:
        return "--tile and --square need the TensorFlow painter"
    if options.style_size not in (None, STYLE_SIZE):
        return "--style_size other than 256 needs the TensorFlow painter"
    if options.size and options.size > 2048:
        return "pictures over 2048 px are painted in tiles by the TensorFlow painter"
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "ai-edge-litert is not installed"
    return ""


def folder(network: str = "demo") -> str:
    """Where the converted pair of `network`'s file lives: the cache folder (`$NST_TF_CACHE_DIR`, else
    `~/.cache/nst_tf`), under a name made of the file's contents and this nst_tf's version."""
    path = network_options.bundled_network(network) if network in network_options.BUNDLED_NAMES else network
    stat = os.stat(path)
    return os.path.join(files.cache_dir(), "lite", f"arbitrary-{_digest(path, stat.st_size, stat.st_mtime_ns)}")


@functools.lru_cache(maxsize=4)
def _digest(path: str, size: int, mtime: int) -> str:
    """The network file's contents and this nst_tf's version, hashed once per file as it is."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read() + __version__.encode()).hexdigest()[:16]


def ready(network: str = "demo") -> bool:
    return all(os.path.isfile(os.path.join(folder(network), name)) for name in FILES)


def convert(network: str = "demo") -> str:
    """Writes the TF Lite pair of `network` (float32) into `folder(network)` atomically; returns the
    folder. Needs TensorFlow (imported here)."""
    import tensorflow as tf

    from nst_tf.networks import arbitrary  # loads TensorFlow: not at import

    net = arbitrary.load_arbitrary(network)
    holder = tf.Module()
    holder.variables_ = [v.value for v in net.weights]  # what the converter freezes
    functions = {
        "style_predict.tflite": tf.function(
            lambda style: net.predict_net(style), input_signature=[tf.TensorSpec([1, STYLE_SIZE, STYLE_SIZE, 3])]
        ),
        "style_transform.tflite": tf.function(
            lambda content, vector: net.transform([content, vector]),
            input_signature=[tf.TensorSpec([1, None, None, 3]), tf.TensorSpec([1, arbitrary.EMBEDDING])],
        ),
    }
    target = folder(network)
    os.makedirs(target, exist_ok=True)
    with files.native_stderr_quiet():  # the converter's MLIR chatter
        for name, function in functions.items():
            converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], holder)
            data = converter.convert()
            with files.atomic_file(os.path.join(target, name), "wb") as f:
                f.write(data)
    return target


def resize(rgb: np.ndarray, hw) -> np.ndarray:
    """Float RGB `[H, W, 3]` resized to `hw` with Pillow's Lanczos (per channel, in float32): the
    Keras painter's resize (TensorFlow's Lanczos-3, antialiased) without TensorFlow."""
    if tuple(rgb.shape[:2]) == tuple(hw):
        return rgb
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., k]), "F").resize((hw[1], hw[0]), Image.LANCZOS))
        for k in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


class LitePainter:
    """The pair on the LiteRT interpreter (`threads`: its CPU threads, default all cores)."""

    def __init__(self, network: str = "demo", threads: Optional[int] = None):
        from ai_edge_litert.interpreter import Interpreter

        path = folder(network)
        threads = threads or os.cpu_count() or 1
        with files.native_stderr_quiet(os.environ.get("NST_TF_VERBOSE") != "1"):  # "Created ... XNNPACK delegate"
            self.predict = Interpreter(os.path.join(path, FILES[0]), num_threads=threads)
            self.predict.allocate_tensors()
            self.transform = Interpreter(os.path.join(path, FILES[1]), num_threads=threads)
        inputs = self.transform.get_input_details()
        self._content = next(d["index"] for d in inputs if len(d["shape"]) == 4)
        self._vector = next(d["index"] for d in inputs if len(d["shape"]) == 2)

    def vector(self, image: np.ndarray) -> np.ndarray:
        """A painting's (float32 `[h, w, 3]`) style vector `[1, 100]`, from its centred square."""
        square = resize(image_io.centre_square(image), (STYLE_SIZE, STYLE_SIZE))
        self.predict.set_tensor(self.predict.get_input_details()[0]["index"], square[None])
        self.predict.invoke()
        return self.predict.get_tensor(self.predict.get_output_details()[0]["index"]).copy()

    def paint(self, content: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """The transform of `content` (float32 `[H, W, 3]`) with `vector`: float32 `[H, W, 3]`."""
        self.transform.resize_tensor_input(self._content, [1, *content.shape], strict=False)
        self.transform.allocate_tensors()
        self.transform.set_tensor(self._content, np.ascontiguousarray(content[None], np.float32))
        self.transform.set_tensor(self._vector, np.asarray(vector, np.float32))
        self.transform.invoke()
        return self.transform.get_tensor(self.transform.get_output_details()[0]["index"])[0].copy()


def paint(content, styles: Sequence, options: painting.Options, network: str = "demo") -> np.ndarray:
    """`content` painted with `styles` (paths, PIL images or arrays) as the Keras painter paints it with
    `options` (size, strength, style_blend, preserve_colors): float32 `[H, W, 3]` in [0, 1]. Converts
    the network first if it is not in the cache (TensorFlow, once)."""
    if not ready(network):
        sys.stderr.write("nst-tf: converting the network for the LiteRT runtime, once (about 10 s)\n")
        files.import_tensorflow_quietly(os.environ.get("NST_TF_VERBOSE") == "1")
        convert(network)
    image = image_io.load_photo(content, options.size, resizer=resize)
    paintings: List[np.ndarray] = [image_io.load_image(s) for s in painting.as_images(styles)]
    if not paintings:
        raise NstError("the arbitrary network needs a painting (a style image)")
    if options.preserve_colors == "histogram":
        paintings = [color.match_color(p, image) for p in paintings]
    runner = LitePainter(network)
    weights = painting.blend_weights(options.style_blend, len(paintings))
    vector = sum(float(w) * runner.vector(p) for w, p in zip(weights, paintings))
    strength = painting.checked_strength(options.strength)
    if strength < 1.0:
        vector = strength * vector + (1.0 - strength) * runner.vector(image)
    out = np.clip(runner.paint(image, vector), 0.0, 1.0).astype(np.float32)
    return color.with_chroma(out, image) if options.preserve_colors == "luminance" else out


if __name__ == "__main__":  # `python -m nst_tf.networks.lite`: convert the bundled network now (make does)
    files.import_tensorflow_quietly()
    print(f"wrote {convert()}")
