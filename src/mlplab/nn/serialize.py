"""Saving and loading a trained network with its preprocessing (``.npz`` + ``.json``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlplab.data.preprocess import transform_pixels
from mlplab.errors import MlplabError, ModelFileError
from mlplab.fileio import load_model_files, save_model
from mlplab.nn.network import Network


@dataclass
class SavedModel:
    """A network plus the input transform it was trained with and the class names.

    The transform is ``x -> ((x / 255 - mean) / std) @ whiten`` (no ``@ whiten`` when it is
    None): standardisation, then the optional ZCA matrix fitted on the training split.
    """

    network: Network
    mean: np.ndarray  # (d,) float64 training mean of pixels/255
    std: np.ndarray  # (d,) float64 training std of pixels/255
    classes: tuple[str, ...]
    meta: dict[str, Any]
    whiten: np.ndarray | None = None  # (d, d) in the network's dtype, or None
    flip_average: bool = False  # predictions: mean over each image and its mirror

    def predict_proba(self, x_uint8: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities ``(n, K)`` of raw pixels, as the run scored the test set."""
        return self.network.predict_proba(
            self.preprocess(x_uint8), batch_size, flip_average=self.flip_average
        )

    def preprocess(self, x_uint8: np.ndarray) -> np.ndarray:
        """The network's inputs for raw ``(n, d)`` pixels, in its dtype: the same function,
        so the same numbers, as the training-time transform."""
        return transform_pixels(x_uint8, self.mean, self.std, self.whiten, self.network.dtype)


def save_network(
    path: str | os.PathLike,
    net: Network,
    mean: np.ndarray,
    std: np.ndarray,
    classes: tuple[str, ...],
    extra: dict[str, Any] | None = None,
    *,
    whiten: np.ndarray | None = None,
    flip_average: bool = False,
) -> None:
    """Write ``path.npz`` (parameters, buffers, input transform) and ``path.json``
    (architecture); ``whiten`` is stored as ``preprocess/whiten`` in the network's dtype,
    ``flip_average`` in the JSON."""
    arrays = {f"net/{k}": v for k, v in net.state().items()}
    arrays["preprocess/mean"] = np.asarray(mean, dtype=np.float64)
    arrays["preprocess/std"] = np.asarray(std, dtype=np.float64)
    if whiten is not None:
        arrays["preprocess/whiten"] = np.asarray(whiten, dtype=net.dtype)
    meta = {
        "dtype": np.dtype(net.dtype).name,
        "layers": net.spec(),
        "classes": list(classes),
        "flip_average": bool(flip_average),
        **(extra or {}),
    }
    save_model(path, meta, arrays, version=2 if whiten is not None or flip_average else 1)


_PREPROCESS = ("preprocess/mean", "preprocess/std", "preprocess/whiten")


def _check_layers(path: str | os.PathLike, layers: Any, stored_bytes: int) -> None:
    """The layer list's shape, and sizes that the stored arrays can hold, before allocating."""
    if not isinstance(layers, list) or not all(isinstance(s, dict) for s in layers):
        raise ModelFileError(
            f"{path}: invalid model description: 'layers' must be a list of objects"
        )
    need = 0
    for spec in layers:
        dims = [spec.get(k) for k in ("d_in", "d_out", "d") if k in spec]
        if any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 10**6 for d in dims):
            raise ModelFileError(f"{path}: invalid layer sizes {dims} (integers in 1..1e6)")
        if spec.get("kind") == "dense" and len(dims) == 2:
            need += 4 * dims[0] * dims[1]  # at least float32 weights
        elif dims:
            need += 4 * 4 * dims[0]  # e.g. batch norm: gamma, beta and two running statistics
    if need > stored_bytes:  # a layer larger than the file's arrays: refuse before np.zeros
        raise ModelFileError(
            f"{path}: the layers need {need} bytes of weights, the file holds {stored_bytes}"
        )


def load_network(path: str | os.PathLike) -> SavedModel:
    """Load a model saved by :func:`save_network`, checking names, shapes and dtypes."""
    meta, arrays = load_model_files(path)
    _check_layers(path, meta.get("layers"), sum(a.nbytes for a in arrays.values()))
    try:
        net = Network.from_spec(meta["layers"], meta["dtype"])
        classes = tuple(str(c) for c in meta["classes"])
    except (KeyError, TypeError, ValueError, MlplabError) as e:
        raise ModelFileError(f"{path}: invalid model description: {e}") from None
    state = {k[len("net/") :]: v for k, v in arrays.items() if k.startswith("net/")}
    expected = {**net.params(), **net.buffers()}
    for k, ref in expected.items():
        if k not in state:
            raise ModelFileError(f"{path}: array {k!r} is missing")
        if state[k].shape != ref.shape:
            raise ModelFileError(
                f"{path}: array {k!r} has shape {state[k].shape}, expected {ref.shape}"
            )
        if state[k].dtype != ref.dtype:
            raise ModelFileError(
                f"{path}: array {k!r} has dtype {state[k].dtype}, expected {ref.dtype}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelFileError(f"{path}: unexpected arrays {extra}")
    net.set_state(state)
    d = net.d_in
    try:  # one sample through every layer: the sizes must chain
        net.forward(np.zeros((1, d), net.dtype))
    except ValueError:
        raise ModelFileError(f"{path}: the layers' sizes do not fit together") from None
    for key in ("preprocess/mean", "preprocess/std"):
        if key not in arrays:
            raise ModelFileError(f"{path}: array {key!r} is missing")
        if arrays[key].shape != (d,) or arrays[key].dtype != np.float64:
            raise ModelFileError(f"{path}: array {key!r} must be float64 of shape ({d},)")
    whiten = arrays.get("preprocess/whiten")
    if whiten is not None and (whiten.shape != (d, d) or whiten.dtype != net.dtype):
        raise ModelFileError(
            f"{path}: array 'preprocess/whiten' must be {np.dtype(net.dtype).name} of shape "
            f"({d}, {d})"
        )
    unknown = sorted(k for k in arrays if not k.startswith("net/") and k not in _PREPROCESS)
    if unknown:
        raise ModelFileError(f"{path}: unexpected arrays {unknown}")
    for key in _PREPROCESS:  # their dtypes are checked: floats
        if key in arrays and not np.isfinite(arrays[key]).all():
            raise ModelFileError(f"{path}: array {key!r} holds NaN or infinity")
    if len(classes) != net.n_classes:
        raise ModelFileError(f"{path}: {len(classes)} class names for {net.n_classes} outputs")
    flip_average = meta.get("flip_average", False)  # absent in older model files
    if not isinstance(flip_average, bool):
        raise ModelFileError(f"{path}: 'flip_average' must be true or false")
    if flip_average and d != 3072:
        raise ModelFileError(f"{path}: flip averaging needs 3072 inputs (32x32 RGB), not {d}")
    mean, std = arrays["preprocess/mean"], arrays["preprocess/std"]
    return SavedModel(net, mean, std, classes, meta, whiten, flip_average)
