"""Taking a trained model elsewhere: ONNX (runs in onnxruntime) and safetensors (loads into
the ``torch.nn.Sequential`` of the same layers). Both carry the model's standardisation.

* ONNX: input ``pixels`` ``(N, 3072)`` float32, raw pixel values 0..255 in CIFAR order
  (R plane, G plane, B plane); the graph standardises them (``(x/255 - mean)/std``), runs
  the layers (``MatMul``/``Add``, ``Relu``, ``BatchNormalization`` with the running
  statistics; dropout is the identity at inference) and returns ``logits`` and
  ``probabilities`` ``(N, K)``.
* safetensors: the ``state_dict`` of ``torch.nn.Sequential`` with one module per mlplab layer
  (``Linear`` weights transposed to ``(d_out, d_in)``, ``BatchNorm1d`` with its running
  statistics, ``ReLU`` and ``Dropout`` without tensors), plus ``mlplab.mean`` and
  ``mlplab.std``; the metadata holds the layer list (``layers``, JSON) and ``classes``.

Both need optional packages (``pip install 'mlplab[export]'``); the library never imports
torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.errors import MlplabError
from mlplab.fileio import atomic_write_bytes
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


def to_onnx(model: SavedModel, opset: int = 17) -> bytes:
    """The serialised ONNX model of ``model`` (see the module docstring)."""
    onnx = _need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    inits = [
        numpy_helper.from_array(np.asarray(a, f32), n)
        for n, a in (("scale", 1 / (255 * model.std)), ("shift", -model.mean / model.std))
    ]
    nodes = [
        helper.make_node("Mul", ["pixels", "scale"], ["x0"]),
        helper.make_node("Add", ["x0", "shift"], ["h0"]),
    ]
    h = "h0"
    for i, layer in enumerate(model.network.layers, start=1):
        out = f"h{i}"
        p, b = layer.params, layer.buffers
        if layer.kind == "dense":
            inits.append(numpy_helper.from_array(np.asarray(p["W"], f32), f"W{i}"))
            if "b" in p:
                inits.append(numpy_helper.from_array(np.asarray(p["b"], f32), f"b{i}"))
                nodes += [
                    helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"]),
                    helper.make_node("Add", [f"m{i}", f"b{i}"], [out]),
                ]
            else:
                nodes.append(helper.make_node("MatMul", [h, f"W{i}"], [out]))
        elif layer.kind == "relu":
            nodes.append(helper.make_node("Relu", [h], [out]))
        elif layer.kind == "batchnorm":
            for name, arr in (
                ("g", p["gamma"]),
                ("be", p["beta"]),
                ("rm", b["running_mean"]),
                ("rv", b["running_var"]),
            ):
                inits.append(numpy_helper.from_array(np.asarray(arr, f32), f"{name}{i}"))
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [h, f"g{i}", f"be{i}", f"rm{i}", f"rv{i}"],
                    [out],
                    epsilon=float(layer.eps),
                )
            )
        elif layer.kind == "dropout":
            nodes.append(helper.make_node("Identity", [h], [out]))
        else:
            raise MlplabError(f"cannot export a layer of kind {layer.kind!r} to ONNX")
        h = out
    nodes += [
        helper.make_node("Identity", [h], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    k = model.network.n_classes
    graph = helper.make_graph(
        nodes,
        "mlplab",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3072])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", k])
            for n in ("logits", "probabilities")
        ],
        inits,
    )
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mlplab"
    )
    m.metadata_props.add(key="classes", value=json.dumps(list(model.classes)))
    onnx.checker.check_model(m)
    return m.SerializeToString()


def torch_state(model: SavedModel) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """``(tensors, layers)``: the ``torch.nn.Sequential`` state_dict (NumPy) and its layers."""
    tensors: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(model.network.layers):
        p, b = layer.params, layer.buffers
        if layer.kind == "dense":
            d_in, d_out = p["W"].shape
            tensors[f"{i}.weight"] = np.ascontiguousarray(p["W"].T)
            if "b" in p:
                tensors[f"{i}.bias"] = np.array(p["b"])
            layers.append(
                {
                    "module": "Linear",
                    "in_features": int(d_in),
                    "out_features": int(d_out),
                    "bias": "b" in p,
                }
            )
        elif layer.kind == "batchnorm":
            tensors |= {
                f"{i}.weight": np.array(p["gamma"]),
                f"{i}.bias": np.array(p["beta"]),
                f"{i}.running_mean": np.array(b["running_mean"]),
                f"{i}.running_var": np.array(b["running_var"]),
                f"{i}.num_batches_tracked": np.array(int(b["num_batches_tracked"]), np.int64),
            }
            layers.append(
                {
                    "module": "BatchNorm1d",
                    "num_features": int(p["gamma"].shape[0]),
                    "eps": float(layer.eps),
                }
            )
        elif layer.kind in ("relu", "dropout"):
            layers.append(
                {"module": "ReLU"}
                if layer.kind == "relu"
                else {"module": "Dropout", "p": float(layer.drop_prob)}
            )
        else:
            raise MlplabError(f"cannot export a layer of kind {layer.kind!r} to safetensors")
    tensors["mlplab.mean"], tensors["mlplab.std"] = np.array(model.mean), np.array(model.std)
    return tensors, layers


def to_safetensors(model: SavedModel) -> bytes:
    """The safetensors file of ``model`` (see the module docstring)."""
    st = _need("safetensors.numpy")
    tensors, layers = torch_state(model)
    meta = {
        "format": "mlplab-torch-sequential",
        "layers": json.dumps(layers),
        "classes": json.dumps(list(model.classes)),
    }
    return st.save(tensors, metadata=meta)


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
