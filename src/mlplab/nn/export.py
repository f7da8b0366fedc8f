"""Taking a trained model elsewhere: ONNX (runs in onnxruntime) and safetensors (loads into
the ``torch.nn.Sequential`` of the same layers). Both carry the model's standardisation.

* ONNX: input ``pixels`` ``(N, d)`` with the model's ``d`` inputs: raw values (float32
  pixels 0..255 of the model's ``image_shape`` in plane order: the whole first channel,
  row-major, then the next; or float64 features on their own scale, ``scale`` 1, which
  float32 could not hold far from 0); the graph standardises
  them (``(x/scale - mean)/std`` with the model's ``scale``, then ``MatMul`` by the ZCA
  matrix ``whiten`` of a whitened model), runs the layers (``MatMul``/``Add``, ``Relu``,
  ``LeakyRelu``, ``Tanh``, GELU (tanh approximation, composed of ``Mul``/``Add``/``Tanh``
  for opset 17), ``BatchNormalization`` with the running statistics; dropout is the
  identity at inference) and returns ``logits`` and ``probabilities`` ``(N, K)``. A model
  that averages over flips (``flip_average``) runs the mirrored rows too (its image shape's
  flip permutation) and returns the mean probabilities (``logits`` are their log). The
  metadata holds ``classes``, ``image_shape`` (``[height, width, channels]`` or ``null``)
  and ``scale`` as JSON.
* safetensors: the ``state_dict`` of ``torch.nn.Sequential`` with one module per mlplab layer
  (``Linear`` weights transposed to ``(d_out, d_in)``, ``BatchNorm1d`` with its running
  statistics, ``ReLU``, ``LeakyReLU(negative_slope)``, ``Tanh``, ``GELU(approximate="tanh")``
  and ``Dropout`` without tensors), plus ``mlplab.mean`` and ``mlplab.std`` (and
  ``mlplab.whiten``, the ``(d, d)`` ZCA matrix applied after standardising, for a whitened
  model); the metadata holds the layer list (``layers``, JSON), ``classes``, ``image_shape``,
  ``scale`` (inputs are ``(x / scale - mean) / std``) and ``flip_average`` (``true``: average
  the probabilities of each image and its mirror, as mlplab does), each as JSON.

Both need optional packages (``pip install 'mlplab[export]'``); the library never imports
torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.errors import MlplabError
from mlplab.fileio import atomic_write_bytes
from mlplab.nn.layers import Layer
from mlplab.nn.serialize import SavedModel

FORMATS = ("onnx", "safetensors")


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MlplabError(
            f"export needs {module.split('.')[0]}: pip install 'mlplab[export]'"
        ) from None


def _onnx_dense(layer: Layer, i: int, h: str, out: str, arr: Callable) -> tuple[list, list]:
    from onnx import helper

    p = layer.params
    if "b" not in p:
        return [helper.make_node("MatMul", [h, f"W{i}"], [out])], [arr(p["W"], f"W{i}")]
    nodes = [
        helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"]),
        helper.make_node("Add", [f"m{i}", f"b{i}"], [out]),
    ]
    return nodes, [arr(p["W"], f"W{i}"), arr(p["b"], f"b{i}")]


def _onnx_batchnorm(layer: Layer, i: int, h: str, out: str, arr: Callable) -> tuple[list, list]:
    from onnx import helper

    p, b = layer.params, layer.buffers
    named = {"g": p["gamma"], "be": p["beta"], "rm": b["running_mean"], "rv": b["running_var"]}
    node = helper.make_node(
        "BatchNormalization",
        [h, *(f"{n}{i}" for n in named)],
        [out],
        epsilon=float(layer.eps),  # type: ignore[attr-defined]
    )
    return [node], [arr(a, f"{n}{i}") for n, a in named.items()]


def _onnx_op(op: str) -> Callable:
    def node(layer: Layer, i: int, h: str, out: str, arr: Callable) -> tuple[list, list]:
        from onnx import helper

        return [helper.make_node(op, [h], [out])], []

    return node


def _onnx_leaky_relu(layer: Layer, i: int, h: str, out: str, arr: Callable) -> tuple[list, list]:
    from onnx import helper

    slope = float(layer.slope)  # type: ignore[attr-defined]
    return [helper.make_node("LeakyRelu", [h], [out], alpha=slope)], []


def _onnx_gelu(layer: Layer, i: int, h: str, out: str, arr: Callable) -> tuple[list, list]:
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` in operators of every opset (the
    ``Gelu`` operator needs opset 20)."""
    from onnx import helper

    c = {"k": 0.044715, "s": np.sqrt(2 / np.pi), "one": 1.0, "half": 0.5}
    names = {k: f"gelu{i}_{k}" for k in c}
    t = f"gelu{i}_t"  # prefix of the intermediate values
    nodes = [  # x^3 as x * x * x, as mlplab computes it
        helper.make_node("Mul", [h, h], [f"{t}2"]),
        helper.make_node("Mul", [f"{t}2", h], [f"{t}3"]),
        helper.make_node("Mul", [f"{t}3", names["k"]], [f"{t}k"]),
        helper.make_node("Add", [h, f"{t}k"], [f"{t}a"]),
        helper.make_node("Mul", [f"{t}a", names["s"]], [f"{t}s"]),
        helper.make_node("Tanh", [f"{t}s"], [f"{t}h"]),
        helper.make_node("Add", [f"{t}h", names["one"]], [f"{t}o"]),
        helper.make_node("Mul", [h, f"{t}o"], [f"{t}x"]),
        helper.make_node("Mul", [f"{t}x", names["half"]], [out]),
    ]
    return nodes, [arr(np.array(v), names[k]) for k, v in c.items()]


#: layer kind -> ``(layer, i, input, output, arr) -> (nodes, initialisers)`` of its ONNX graph
ONNX_NODES: dict[str, Callable[..., tuple[list, list]]] = {
    "dense": _onnx_dense,
    "relu": _onnx_op("Relu"),
    "leaky_relu": _onnx_leaky_relu,
    "tanh": _onnx_op("Tanh"),
    "gelu": _onnx_gelu,
    "batchnorm": _onnx_batchnorm,
    "dropout": _onnx_op("Identity"),
}


def to_onnx(model: SavedModel, opset: int = 17) -> bytes:
    """The serialised ONNX model of ``model`` (see the module docstring)."""
    onnx = _need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def arr(a: np.ndarray, name: str) -> Any:
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    d = model.network.d_in
    # Pixels (0..255) are exact in float32; features (scale 1) may sit far from 0 (1.7e9 has
    # a float32 step of 128), so they come in as float64 and are standardised in float64.
    features = model.scale != 255.0
    raw_type = TensorProto.DOUBLE if features else TensorProto.FLOAT
    to_raw = (
        (lambda a, n: numpy_helper.from_array(np.asarray(a, np.float64), n)) if features else arr
    )
    inits = [
        to_raw(1 / (model.scale * model.std), "scale"),
        to_raw(-model.mean / model.std, "shift"),
    ]
    nodes = [
        helper.make_node("Mul", ["pixels", "scale"], ["x0"]),
        helper.make_node("Add", ["x0", "shift"], ["h0" if not features else "h00"]),
    ]
    if features:
        nodes.append(helper.make_node("Cast", ["h00"], ["h0"], to=TensorProto.FLOAT))
    h = "h0"
    if model.whiten is not None:
        inits.append(arr(model.whiten, "whiten"))
        nodes.append(helper.make_node("MatMul", ["h0", "whiten"], ["hw"]))
        h = "hw"
    if model.flip_average:  # the mirrored rows follow the rows: a batch of 2N through the net
        if model.image_shape is None:
            raise MlplabError(f"flip averaging needs images, the model takes {d} flat features")
        perm = model.image_shape.flip_permutation()
        inits.append(numpy_helper.from_array(np.asarray(perm, np.int64), "mirror"))
        nodes += [
            helper.make_node("Gather", [h, "mirror"], ["hm"], axis=1),
            helper.make_node("Concat", [h, "hm"], ["hc"], axis=0),
        ]
        h = "hc"
    for i, layer in enumerate(model.network.layers, start=1):
        if layer.kind not in ONNX_NODES:
            raise MlplabError(f"cannot export a layer of kind {layer.kind!r} to ONNX")
        more_nodes, more_inits = ONNX_NODES[layer.kind](layer, i, h, f"h{i}", arr)
        nodes += more_nodes
        inits += more_inits
        h = f"h{i}"
    k = model.network.n_classes
    if model.flip_average:  # probabilities: the mean of both views; logits: their log
        # (2N, K) -> (2, N*K), times [[0.5, 0.5]] -> (1, N*K) -> (N, K): any opset
        inits += [
            numpy_helper.from_array(np.array([2, -1], np.int64), "views"),
            numpy_helper.from_array(np.array([-1, k], np.int64), "rows"),
            arr(np.full((1, 2), 0.5), "half"),
        ]
        nodes += [
            helper.make_node("Softmax", [h], ["p2"], axis=1),
            helper.make_node("Reshape", ["p2", "views"], ["p3"]),
            helper.make_node("MatMul", ["half", "p3"], ["p4"]),
            helper.make_node("Reshape", ["p4", "rows"], ["probabilities"]),
            helper.make_node("Log", ["probabilities"], ["logits"]),
        ]
    else:
        nodes += [
            helper.make_node("Identity", [h], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ]
    graph = helper.make_graph(
        nodes,
        "mlplab",
        [helper.make_tensor_value_info("pixels", raw_type, ["N", d])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", k])
            for n in ("logits", "probabilities")
        ],
        inits,
    )
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mlplab"
    )
    for key, value in _metadata(model).items():
        m.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _torch_dense(layer: Layer, i: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    p = layer.params
    d_in, d_out = p["W"].shape
    tensors = {f"{i}.weight": np.ascontiguousarray(p["W"].T)}
    if "b" in p:
        tensors[f"{i}.bias"] = np.array(p["b"])
    module = {"module": "Linear", "in_features": int(d_in), "out_features": int(d_out)}
    return tensors, {**module, "bias": "b" in p}


def _torch_batchnorm(layer: Layer, i: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    p, b = layer.params, layer.buffers
    tensors = {
        f"{i}.weight": np.array(p["gamma"]),
        f"{i}.bias": np.array(p["beta"]),
        f"{i}.running_mean": np.array(b["running_mean"]),
        f"{i}.running_var": np.array(b["running_var"]),
        f"{i}.num_batches_tracked": np.array(int(b["num_batches_tracked"]), np.int64),
    }
    eps = float(layer.eps)  # type: ignore[attr-defined]
    return tensors, {"module": "BatchNorm1d", "num_features": int(p["gamma"].shape[0]), "eps": eps}


#: layer kind -> ``(layer, index) -> (state_dict tensors, torch.nn module description)``
TORCH_MODULES: dict[str, Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]] = {
    "dense": _torch_dense,
    "batchnorm": _torch_batchnorm,
    "relu": lambda layer, i: ({}, {"module": "ReLU"}),
    "leaky_relu": lambda layer, i: (
        {},
        {"module": "LeakyReLU", "negative_slope": float(layer.slope)},
    ),
    "tanh": lambda layer, i: ({}, {"module": "Tanh"}),
    "gelu": lambda layer, i: ({}, {"module": "GELU", "approximate": "tanh"}),
    "dropout": lambda layer, i: ({}, {"module": "Dropout", "p": float(layer.drop_prob)}),
}


def torch_state(model: SavedModel) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """``(tensors, layers)``: the ``torch.nn.Sequential`` state_dict (NumPy) and its layers."""
    tensors: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(model.network.layers):
        if layer.kind not in TORCH_MODULES:
            raise MlplabError(f"cannot export a layer of kind {layer.kind!r} to safetensors")
        more, module = TORCH_MODULES[layer.kind](layer, i)
        tensors |= more
        layers.append(module)
    tensors["mlplab.mean"], tensors["mlplab.std"] = np.array(model.mean), np.array(model.std)
    if model.whiten is not None:
        tensors["mlplab.whiten"] = np.array(model.whiten)
    return tensors, layers


def to_safetensors(model: SavedModel) -> bytes:
    """The safetensors file of ``model`` (see the module docstring)."""
    st = _need("safetensors.numpy")
    tensors, layers = torch_state(model)
    meta = {
        "format": "mlplab-torch-sequential",
        "flip_average": json.dumps(model.flip_average),
        "layers": json.dumps(layers),
        **_metadata(model),
    }
    return st.save(tensors, metadata=meta)


def _metadata(model: SavedModel) -> dict[str, str]:
    """``classes``, ``image_shape`` (``[height, width, channels]`` or null) and ``scale``,
    each as JSON text."""
    shape = None if model.image_shape is None else model.image_shape.to_list()
    return {
        "classes": json.dumps(list(model.classes)),
        "image_shape": json.dumps(shape),
        "scale": json.dumps(float(model.scale)),
    }


def export(model: SavedModel, fmt: str, out: str | os.PathLike) -> Path:
    """Write ``model`` as ``fmt`` (``onnx`` or ``safetensors``) to ``out`` (atomically)."""
    writers = {"onnx": to_onnx, "safetensors": to_safetensors}
    if fmt not in writers:
        raise MlplabError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    path = Path(out)
    if path.is_dir():
        raise MlplabError(f"--out {path} is a directory; give a file name")
    try:
        atomic_write_bytes(path, writers[fmt](model))
    except OSError as e:
        raise MlplabError(f"cannot write {path}: {e.strerror or e}") from None
    return path
