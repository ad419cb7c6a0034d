"""The two feed-forward networks (Keras 3 models) and the bundle that joins them.

- `build_transform`: content `[B, H, W, 3]` in [0, 1] + style embedding `[B, D]` -> styled image,
  the layout of Magenta's arbitrary stylization network (Ghiasi et al. 2017): reflect-padded conv
  9x9/32, 3x3 stride 2 to 64 and to 128; five residual blocks at 128; nearest-neighbour x2 + 3x3
  conv to 64 and to 32 (no transposed convolutions: no checkerboard); 9x9 conv to 3 and a sigmoid.
  The downsampling layers use plain instance norm (Magenta uses batch norm there: with the batches
  of 2 to 8 a CPU trains with, batch statistics are noise); the residual and upsampling layers and
  the last conv use `ConditionalInstanceNorm`, whose gamma and beta are two linear maps of the
  embedding. `alpha` multiplies every width. Any input size works: the image is reflect-padded to
  a multiple of 4 and the output cropped back.
- The embedding comes from one of two sources (a `StyleNetwork` holds either or both):
  a learned table of N fixed styles (`[N, D]`; a one-hot row through the linear maps is
  Dumoulin et al.'s conditional instance norm table), or the predict head: the per-channel mean
  and standard deviation of the style image's frozen VGG19 activations (`style_statistics`) mapped
  to D by a dense layer. Magenta uses InceptionV3 to Mixed_6e; no ImageNet Inception weights can
  be had offline, while the VGG19 nst_tf already loads carries the same kind of information (the
  statistics the "meanstd" style loss and AdaIN use).
- Mixing: embeddings blend convexly (several styles), and strength `s` paints with
  `s * style + (1 - s) * content's own embedding` (needs the predict head).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from nst_tf import features, files, losses, vgg
from nst_tf.errors import NstError
from nst_tf.networks import options
from nst_tf.networks.options import MIN_SIDE  # noqa: F401  (re-exported)

EMBEDDING = 100
MULTIPLE = 4  # two stride-2 convolutions: inputs are padded to a multiple of this
PREDICT_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")
EPSILON = 1e-5


def instance_moments(x):
    """Per image and channel mean and variance (the mean squared deviation), each averaged over
    every row's columns, then over the rows: one float32 reduction over millions of positions
    drifts (`tf.nn.moments` at 4096x2744 px: the variance off by 1.4e-3 relative, measured), two
    shorter ones do not (3e-7), and a network's 16 norm layers amplify the difference (8192 px
    paintings differed by 5 levels on average). The variance is clipped at 0 (TF Lite may fuse
    it into E[x^2] - E[x]^2, which rounds below zero on large activations)."""
    mean = tf.reduce_mean(tf.reduce_mean(x, axis=2, keepdims=True), axis=1, keepdims=True)
    var = tf.reduce_mean(tf.reduce_mean(tf.square(x - mean), axis=2, keepdims=True), axis=1, keepdims=True)
    return mean, tf.nn.relu(var)


_NORM_MOMENTS = contextvars.ContextVar("nst_tf_norm_moments", default=None)


@contextlib.contextmanager
def norm_moments(hook):
    """Within the block, the norm layers of a model called eagerly take their mean and variance
    from `hook(layer_name, x)` instead of from `x` (`nst_tf.networks.tiled`: the whole image's
    statistics for a tile). A function traced outside the block is not affected."""
    token = _NORM_MOMENTS.set(hook)
    try:
        yield
    finally:
        _NORM_MOMENTS.reset(token)


def _norm_moments(layer, x):
    hook = _NORM_MOMENTS.get()
    return instance_moments(x) if hook is None else hook(layer.name, x)


@keras.saving.register_keras_serializable("nst_tf")
class InstanceNorm(keras.layers.Layer):
    """Per image and channel normalisation with a learned scale and offset (Ulyanov et al.)."""

    def build(self, shape):
        self.gamma = self.add_weight(name="gamma", shape=(shape[-1],), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(shape[-1],), initializer="zeros")

    def call(self, x):
        mean, var = _norm_moments(self, x)
        return (x - mean) * tf.math.rsqrt(var + EPSILON) * self.gamma + self.beta


@keras.saving.register_keras_serializable("nst_tf")
class ConditionalInstanceNorm(keras.layers.Layer):
    """Instance norm whose gamma `[B, C]` and beta `[B, C]` are linear maps of a style embedding
    `[B, D]`: `call([x, embedding])`. gamma's bias starts at 1, beta's at 0, and both kernels
    near 0, so every style starts as plain instance norm: with default (Glorot) kernels an
    embedding of norm ~10 gives gammas of +-5 at once, and the predict network's first steps
    saturated the output to white."""

    def build(self, shapes):
        x_shape, e_shape = shapes
        c, d = x_shape[-1], e_shape[-1]
        small = keras.initializers.RandomNormal(stddev=0.01, seed=0)
        self.gamma = keras.layers.Dense(c, kernel_initializer=small, bias_initializer="ones", name="gamma")
        self.beta = keras.layers.Dense(c, kernel_initializer=small, name="beta")
        self.gamma.build((None, d))
        self.beta.build((None, d))

    def call(self, inputs):
        x, embedding = inputs
        mean, var = _norm_moments(self, x)
        gamma = self.gamma(embedding)[:, None, None, :]
        beta = self.beta(embedding)[:, None, None, :]
        return (x - mean) * tf.math.rsqrt(var + EPSILON) * gamma + beta


@keras.saving.register_keras_serializable("nst_tf")
class ReflectPad(keras.layers.Layer):
    """Reflect padding by `pad` pixels on each side, or (`multiple`) up to a multiple of it."""

    def __init__(self, pad: int = 0, multiple: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.pad, self.multiple = pad, multiple

    def build(self, input_shape):
        self.channels = input_shape[-1]  # known when the model is built, whatever the image size
        super().build(input_shape)

    def call(self, x):
        if self.multiple:
            shape = tf.shape(x)
            extra = [(-shape[1]) % self.multiple, (-shape[2]) % self.multiple]
            padded = tf.pad(x, [[0, 0], [0, extra[0]], [0, extra[1]], [0, 0]], mode="REFLECT")
        else:
            p = self.pad
            padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        # A graph of any image size loses the channels through computed paddings and upsampling: a
        # reshape to the same shape states them again (no copy), so the TF Lite converter can turn the
        # convolutions after it into its own at any image size.
        channels = getattr(self, "channels", None)
        if channels is None:
            return padded
        return tf.reshape(padded, tf.concat([tf.shape(padded)[:3], [channels]], axis=0))

    def get_config(self):
        return {**super().get_config(), "pad": self.pad, "multiple": self.multiple}


@keras.saving.register_keras_serializable("nst_tf")
class CropLike(keras.layers.Layer):
    """`call([x, like])`: `x` cropped to `like`'s height and width (top-left)."""

    def call(self, inputs):
        x, like = inputs
        shape = tf.shape(like)
        return x[:, : shape[1], : shape[2], :]


def _conv(x, filters, kernel, stride=1, name=None):
    x = ReflectPad(kernel // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, kernel, stride, padding="valid", name=name)(x)


def build_transform(
    alpha: float = 1.0, embedding_size: int = EMBEDDING, residual_blocks: int = 5, contract_norm: bool = True
) -> keras.Model:
    """The style transform network (see the module docstring): inputs `content` `[B, H, W, 3]` in
    [0, 1] (any H, W >= `MIN_SIDE`) and `embedding` `[B, D]`; output `[B, H, W, 3]` in [0, 1].
    contract_norm: instance norm after the three contracting convolutions (False: their biases
    only, as Magenta's released network has them, its batch norm folded in)."""
    width = lambda c: max(4, int(round(c * alpha)))  # noqa: E731
    content = keras.Input((None, None, 3), name="content")
    embedding = keras.Input((embedding_size,), name="embedding")
    x = ReflectPad(multiple=MULTIPLE, name="pad_to_multiple")(content)
    for i, (filters, kernel, stride) in enumerate(((32, 9, 1), (64, 3, 2), (128, 3, 2))):
        x = _conv(x, width(filters), kernel, stride, name=f"contract{i}")
        x = keras.layers.ReLU()(InstanceNorm(name=f"contract{i}_norm")(x) if contract_norm else x)
    cin = lambda x, name: ConditionalInstanceNorm(name=name)([x, embedding])  # noqa: E731
    for i in range(residual_blocks):
        y = keras.layers.ReLU()(cin(_conv(x, width(128), 3, name=f"residual{i}a"), f"residual{i}a_norm"))
        y = cin(_conv(y, width(128), 3, name=f"residual{i}b"), f"residual{i}b_norm")
        x = keras.layers.Add()([x, y])
    for i, filters in enumerate((64, 32)):
        x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
        x = keras.layers.ReLU()(cin(_conv(x, width(filters), 3, name=f"expand{i}"), f"expand{i}_norm"))
    x = cin(_conv(x, 3, 9, name="output"), "output_norm")
    x = CropLike(name="crop")([keras.layers.Activation("sigmoid", dtype="float32")(x), content])
    return keras.Model([content, embedding], x, name="style_transform")


@keras.saving.register_keras_serializable("nst_tf")
class MeanStd(keras.layers.Layer):
    """`[B, h, w, c]` activations -> `[B, 2c]`: `log(1 + x)` of the per-channel mean and standard
    deviation (float32)."""

    def call(self, x):
        mean, std = losses.MeanStd.moments(x)  # the "meanstd" style statistic's own moments
        return tf.math.log1p(tf.concat([tf.nn.relu(mean), std], axis=-1))


def style_statistics(
    weights="embedded", layers: Sequence[str] = PREDICT_LAYERS, precision: str = "float32", layer_weights=None
) -> keras.Model:
    """The frozen half of the predict network: RGB `[B, H, W, 3]` in [0, 1] -> `[B, S]`, each
    layer's per-channel mean and standard deviation (S = 2 x the layers' channels) as `log(1 + x)`:
    VGG's activations (ReLU outputs on the 0-255 scale) span four decades across layers, and the
    logarithm keeps any one layer from dominating the dense bottleneck."""
    vgg_model = features.build_feature_model(layers, "vgg19", weights, layer_weights=layer_weights, precision=precision)
    image = keras.Input((None, None, 3), name="style")
    activations = vgg_model(image)
    parts = [MeanStd(name=f"{name}_meanstd")(activations[name]) for name in layers]
    stats = keras.layers.Concatenate(name="statistics")(parts)
    model = keras.Model(image, stats, name="style_statistics")
    model.trainable = False
    return model


def statistics_size(layers: Sequence[str] = PREDICT_LAYERS) -> int:
    return 2 * sum(vgg.channels(name) for name in layers)


@keras.saving.register_keras_serializable("nst_tf")
class StyleNetwork(keras.Model):
    """The trainable parts of a network, saved as one `.keras` file: the transform network, and the
    embedding sources: a table of `num_styles` fixed styles and/or the predict head (statistics ->
    embedding; the frozen VGG19 statistics are not saved: they are rebuilt from the weights at load
    time, so a network file holds no VGG weights). `call([content, embedding])` runs the transform.
    """

    def __init__(
        self,
        num_styles: int = 0,
        predict: bool = True,
        alpha: float = 1.0,
        embedding_size: int = EMBEDDING,
        predict_layers: Sequence[str] = PREDICT_LAYERS,
        style_names: Sequence[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not num_styles and not predict:
            raise NstError("a network needs a style table (num_styles >= 1) or the predict head")
        self.num_styles, self.predict, self.alpha = int(num_styles), bool(predict), float(alpha)
        self.embedding_size, self.predict_layers = int(embedding_size), tuple(predict_layers)
        self.style_names = tuple(style_names)
        self.transform = build_transform(self.alpha, self.embedding_size)
        self.table = None
        if self.num_styles:
            self.table = self.add_weight(
                name="style_table",
                shape=(self.num_styles, self.embedding_size),
                initializer=keras.initializers.RandomNormal(stddev=1.0, seed=0),
            )
        self.head = None
        if self.predict:  # statistics standardised per style image, then the dense bottleneck
            self.head = keras.Sequential(
                [
                    keras.Input((statistics_size(self.predict_layers),)),
                    keras.layers.LayerNormalization(center=False, scale=False, name="standardise"),
                    keras.layers.Dense(self.embedding_size, name="bottleneck"),
                ],
                name="predict_head",
            )
        self.built = True

    def call(self, inputs):
        content, embedding = inputs
        return self.transform([content, embedding])

    def get_config(self):
        return {
            **super().get_config(),
            "num_styles": self.num_styles,
            "predict": self.predict,
            "alpha": self.alpha,
            "embedding_size": self.embedding_size,
            "predict_layers": list(self.predict_layers),
            "style_names": list(self.style_names),
        }


def load_model(src, kinds, what: str = "an nst_tf style network"):
    """The Keras model in a network file (`options.check_network_file`: a `.keras` file or a bundled
    name), or `src` itself when it is one of `kinds` already; an `NstError` unless it is one of `kinds`
    (their module must be imported, so that Keras knows the classes)."""
    if isinstance(src, kinds):
        return src
    path = options.check_network_file(src)
    try:
        if path.endswith(".npz"):
            model = load_packed(path)
        else:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except NstError:
        raise
    except Exception as err:  # Keras raises many kinds for a damaged or foreign file
        raise NstError(f"network {path}: cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    if not isinstance(model, kinds):
        raise NstError(f"network {path}: a Keras model, but not {what}")
    return model


def save_float16(network, path: str) -> str:
    """`network` (a Keras model) saved as a `.keras` file whose weights are stored in float16 (half
    the size; they load back into the float32 model, `keras.saving.load_model` casting them),
    written atomically. The bundled networks ship this way."""
    import tempfile
    import zipfile

    import h5py

    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        full = os.path.join(tmp, "full.keras")
        network.save(full)
        half = os.path.join(tmp, "half.keras")
        with zipfile.ZipFile(full) as src, zipfile.ZipFile(half, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename.endswith(".h5"):
                    data = _h5_as_float16(data, tmp, h5py)
                dst.writestr(item, data)
        os.chmod(half, 0o666 & ~files.umask())
        os.replace(half, path)  # staged in a folder beside `path`: one atomic rename
    return path


def _h5_as_float16(data: bytes, tmp: str, h5py) -> bytes:
    source, target = os.path.join(tmp, "in.h5"), os.path.join(tmp, "out.h5")
    with open(source, "wb") as f:
        f.write(data)
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                value = obj[()]
                if getattr(value, "dtype", None) == np.float32:
                    value = value.astype(np.float16)
                dst.create_dataset(name, data=value)
            else:
                dst.require_group(name)
            for key, attr in obj.attrs.items():
                dst[name].attrs[key] = attr

        for key, attr in src.attrs.items():
            dst.attrs[key] = attr
        src.visititems(copy)
    with open(target, "rb") as f:
        return f.read()


def _as_int8(value: np.ndarray):
    """`(q, scale)` with `q` int8 and `scale` float32 per channel of the last or second-to-last axis
    such that `q * scale` is `value` exactly (as a dequantised int8 release's kernels are), or None."""
    for axis in (value.ndim - 1, value.ndim - 2):
        if axis < 0 or value.ndim < 2:
            continue
        others = tuple(a for a in range(value.ndim) if a != axis)
        scale = (np.abs(value).max(axis=others, keepdims=True) / np.float32(127)).astype(np.float32)
        scale[scale == 0] = 1
        q = np.round(value / scale)
        if np.abs(q).max() <= 127 and np.array_equal((q.astype(np.int8).astype(np.float32) * scale), value):
            return q.astype(np.int8), scale
    return None


def save_packed(model, path: str) -> str:
    """A registered nst_tf model saved as an `.npz` (`load_packed`): its class, its config, and its
    weights, each kernel that is exactly int8 times a per-channel scale (a converted int8 release's)
    stored so and the rest as float32: lossless, and a quarter of float32's size. Written atomically."""
    import json

    arrays = {
        "__class__": np.array(keras.saving.get_registered_name(type(model))),
        "__config__": np.array(json.dumps(model.get_config())),
    }
    for i, variable in enumerate(model.weights):
        value = np.asarray(variable.numpy(), np.float32)
        arrays[f"{i:04d}.path"] = np.array(variable.path)
        packed = _as_int8(value)
        if packed is None:
            arrays[f"{i:04d}"] = value
        else:
            arrays[f"{i:04d}.q"], arrays[f"{i:04d}.scale"] = packed
    return files.write_file(path, lambda tmp: np.savez_compressed(open(tmp, "wb"), **arrays))


def load_packed(path: str):
    """The model `save_packed` wrote (its class must be registered: its module imported)."""
    import json

    with np.load(path, allow_pickle=False) as z:
        cls = keras.saving.get_registered_object(str(z["__class__"]))
        if cls is None:
            raise NstError(f"network {path}: its class {z['__class__']} is not an nst_tf network")
        model = cls.from_config(json.loads(str(z["__config__"])))
        if sum(k.endswith(".path") for k in z.files) != len(model.weights):
            raise NstError(f"network {path}: its weights do not fit a {cls.__name__}")
        for i, variable in enumerate(model.weights):
            key = f"{i:04d}"
            value = z[key] if key in z.files else z[f"{key}.q"].astype(np.float32) * z[f"{key}.scale"]
            if tuple(value.shape) != tuple(variable.shape):
                raise NstError(
                    f"network {path}: weight {z[key + '.path']} has shape {value.shape}, not {variable.shape}"
                )
            variable.assign(value)
    return model
