"""Saving and loading a trained network with its preprocessing (``.npz`` + ``.json``).

The JSON holds the architecture, the class names and the input's geometry: ``image_shape``
(``[height, width, channels]``, or ``null`` for flat features) and ``scale`` (255 for uint8
pixels, 1 for features already on their scale). Files written before these keys existed
are read as :data:`~mlplab.images.CIFAR10_SHAPE` when the network takes 3072 inputs, as
flat features otherwise, with scale 255 (:func:`legacy_shape`).

Format versions (the oldest that holds what the model needs, so that older mlplab reads
what it can read correctly and refuses the rest): 1 for a plain model; 2 with a ZCA matrix
or flip averaging; :data:`SHAPE_VERSION` (3) when the shape differs from the one older
readers infer, or the scale is not 255.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlplab.errors import ConfigError, DataError, MlplabError, ModelFileError
from mlplab.fileio import (
    atomic_save_npz,
    atomic_write_json,
    check_npz_members,
    read_json,
)
from mlplab.images import CIFAR10_SHAPE, ImageShape, shape_or_none
from mlplab.nn.network import Network
from mlplab.transform import InputTransform

#: Format version of a model whose shape or scale older readers would misread.
SHAPE_VERSION = 3


MODEL_FORMAT = "mlplab-model"
#: Version 2 files hold an input transform older readers would ignore (a ZCA matrix or flip
#: averaging); version 3 files an input geometry they would misread (images other than 32x32
#: RGB, flat features, or features not scaled by 255). A model needing neither is written as
#: version 1, which every reader understands.
MODEL_VERSION = 3


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(json, npz)`` paths of a model given as ``X.json``, ``X.npz``, ``X`` or a run directory."""
    p = Path(path)
    if p.is_dir():
        p = p / "model"
    stem = p.with_suffix("") if p.suffix in (".json", ".npz") else p
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


def save_model(
    path: str | os.PathLike,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    version: int = MODEL_VERSION,
) -> None:
    """Save a model as ``path.npz`` (arrays) and ``path.json`` (architecture, classes, ...),
    marked with format ``version`` (the oldest that holds what the model needs)."""
    jpath, npath = model_paths(path)
    atomic_save_npz(npath, arrays)
    atomic_write_json(jpath, {"format": MODEL_FORMAT, "format_version": version, **meta})


def load_model_files(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read the JSON metadata and the arrays of a saved model, checking the format.

    Arrays are read with ``allow_pickle=False``: loading never executes code.
    """
    jpath, npath = model_paths(path)
    for p in (jpath, npath):
        if not p.is_file():
            raise ModelFileError(f"model file not found: {p}")
    meta = read_json(jpath, what="model file", error=ModelFileError)
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{jpath} is not an mlplab model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{jpath}: invalid format_version {version!r}")
    if version > MODEL_VERSION:
        raise ModelFileError(
            f"{jpath} has format version {version}, newer than this mlplab supports "
            f"({MODEL_VERSION}); upgrade mlplab"
        )
    check_npz_members(npath, ModelFileError)
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled object), OSError, ...
        raise ModelFileError(f"{npath} is not a readable .npz array file: {e}") from None
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):  # numpy hands back a non-.npy member as raw bytes
            raise ModelFileError(f"{npath}: member {k!r} is not a NumPy array")
    return meta, arrays


def legacy_shape(d: int) -> ImageShape | None:
    """The shape a file without ``image_shape`` is read with: CIFAR-10's for 3072 inputs,
    flat features for any other width."""
    return CIFAR10_SHAPE if d == CIFAR10_SHAPE.size else None


@dataclass
class SavedModel:
    """A network plus the input transform it was trained with and the class names.

    The transform is ``x -> ((x / scale - mean) / std) @ whiten`` (no ``@ whiten`` when it
    is None): standardisation, then the optional ZCA matrix fitted on the training split.
    Rows are images of ``image_shape`` in plane order, or flat features when it is None.
    """

    network: Network
    mean: np.ndarray  # (d,) float64 training mean of x / scale
    std: np.ndarray  # (d,) float64 training std of x / scale
    classes: tuple[str, ...]
    meta: dict[str, Any]
    whiten: np.ndarray | None = None  # (d, d) in the network's dtype, or None
    flip_average: bool = False  # predictions: mean over each image and its mirror
    image_shape: ImageShape | None = CIFAR10_SHAPE  # None: flat features
    scale: float = 255.0  # 255: uint8 pixels; 1: features on their own scale

    def __post_init__(self) -> None:
        check_geometry(self.network.d_in, self.image_shape, self.scale, self.flip_average)

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities ``(n, K)`` of raw rows, as the run scored the test set (the
        mean over each image and its mirror when the model flip-averages).

        Inputs that the network's dtype cannot hold once standardised (1e300 for a float32
        model) or that drive its outputs beyond it are one :class:`DataError` ("out of
        range"), never NaN probabilities; NumPy's overflow warnings are not shown."""
        shape = self.image_shape  # never None with flip_average (checked in __post_init__)
        mirror = shape.flip_permutation() if self.flip_average and shape is not None else None
        z = self.preprocess(x)  # DataError when a value leaves the dtype's range
        with np.errstate(over="ignore", invalid="ignore"):
            p = self.network.predict_proba(z, batch_size, mirror=mirror)
        bad = int(np.count_nonzero(~np.isfinite(p).all(axis=1)))
        if bad:
            raise DataError(
                f"out of range: the model's outputs are not finite numbers for {bad} of "
                f"{len(p)} rows (inputs far outside its training data, or weights too large "
                f"for {np.dtype(self.network.dtype).name}); no probabilities given"
            )
        return p

    @property
    def transform(self) -> InputTransform:
        """The input transform the network was trained with (:mod:`mlplab.transform`)."""
        return InputTransform(self.mean, self.std, self.whiten, self.scale)

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """The network's inputs for raw ``(n, d)`` rows, in its dtype: the same object,
        so the same numbers, as the training-time transform."""
        return self.transform(x, self.network.dtype)


#: What raw values are divided by before standardising: 8-bit pixels, or features.
SCALES = (255.0, 1.0)


def check_geometry(
    d: int, image_shape: ImageShape | None, scale: float, flip_average: bool
) -> None:
    """One :class:`ConfigError` when the shape, scale and flip averaging do not fit ``d``."""
    if image_shape is not None and image_shape.size != d:
        raise ConfigError(
            f"images of {image_shape} have {image_shape.size} values, the network takes {d}"
        )
    if isinstance(scale, bool) or scale not in SCALES:
        raise ConfigError(
            f"scale must be 255 (8-bit pixels) or 1 (features as they are), got {scale!r}"
        )
    if flip_average and image_shape is None:
        raise ConfigError(f"flip averaging needs images, but the model takes {d} flat features")


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
    image_shape: ImageShape | Literal["legacy"] | None = "legacy",
    scale: float = 255.0,
) -> None:
    """Write ``path.npz`` (parameters, buffers, input transform) and ``path.json``
    (architecture); ``whiten`` is stored as ``preprocess/whiten`` in the network's dtype,
    ``flip_average``, ``image_shape`` and ``scale`` in the JSON.

    ``image_shape``: the rows' images (an :class:`ImageShape` or ``[height, width,
    channels]``), or None for flat features; ``"legacy"`` (the default) is the shape a file
    without one is read with (:func:`legacy_shape`: CIFAR-10's for 3072 inputs, flat
    otherwise). ``scale``: 255 for uint8 pixels, 1 for features on their own scale. A shape
    that does not hold ``net.d_in`` values, a scale other than those two, or flip
    averaging of flat features is a :class:`ConfigError`, and nothing is written.
    """
    d = net.d_in
    legacy = isinstance(image_shape, str) and image_shape == "legacy"
    shape = legacy_shape(d) if legacy else shape_or_none(image_shape)
    check_geometry(d, shape, scale, flip_average)
    scale = float(scale)
    arrays = {f"net/{k}": v for k, v in net.state().items()}
    arrays["preprocess/mean"] = np.asarray(mean, dtype=np.float64)
    arrays["preprocess/std"] = np.asarray(std, dtype=np.float64)
    if whiten is not None:
        arrays["preprocess/whiten"] = np.asarray(whiten, dtype=net.dtype)
    meta = {  # ``extra`` first: it cannot overwrite what the reader checks
        **(extra or {}),
        "dtype": np.dtype(net.dtype).name,
        "layers": net.spec(),
        "classes": list(classes),
        "flip_average": bool(flip_average),
        "image_shape": None if shape is None else shape.to_list(),
        "scale": scale,
    }
    if shape != legacy_shape(d) or scale != 255.0:  # older readers would misread it
        version = SHAPE_VERSION
    else:
        version = 2 if whiten is not None or flip_average else 1
    save_model(path, meta, arrays, version=version)


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
    if len(set(classes)) != len(classes):
        raise ModelFileError(f"{path}: a class name appears twice in {list(classes)}")
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
    _check_values(path, state)
    net.set_state(state)
    d = net.d_in
    try:  # one sample through every layer: the sizes must chain
        with np.errstate(over="ignore", invalid="ignore"):  # huge weights: predict says so
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
    if not (arrays["preprocess/std"] > 0).all():  # written with zeros made 1
        raise ModelFileError(f"{path}: array 'preprocess/std' holds a standard deviation <= 0")
    if len(classes) != net.n_classes:
        raise ModelFileError(f"{path}: {len(classes)} class names for {net.n_classes} outputs")
    flip_average = meta.get("flip_average", False)  # absent in older model files
    if not isinstance(flip_average, bool):
        raise ModelFileError(f"{path}: 'flip_average' must be true or false")
    image_shape, scale = _geometry(path, meta, d, flip_average)
    mean, std = arrays["preprocess/mean"], arrays["preprocess/std"]
    return SavedModel(
        net, mean, std, classes, meta, whiten, flip_average, image_shape=image_shape, scale=scale
    )


def _check_values(path: str | os.PathLike, state: dict[str, np.ndarray]) -> None:
    """Every weight and running statistic finite, every running variance >= 0: a model that
    would answer NaN for every input is refused when it is loaded."""
    for k, v in state.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise ModelFileError(f"{path}: array 'net/{k}' holds NaN or infinity")
        if k.endswith("running_var") and (v < 0).any():
            raise ModelFileError(f"{path}: array 'net/{k}' holds a negative variance")


def _geometry(
    path: str | os.PathLike, meta: dict[str, Any], d: int, flip_average: bool
) -> tuple[ImageShape | None, float]:
    """``(image_shape, scale)`` of a model file (older files: :func:`legacy_shape`, 255)."""
    try:
        shape = shape_or_none(meta["image_shape"]) if "image_shape" in meta else legacy_shape(d)
    except ConfigError as e:
        raise ModelFileError(f"{path}: invalid 'image_shape': {e}") from None
    scale = meta.get("scale", 255.0)
    if isinstance(scale, int) and not isinstance(scale, bool):
        scale = float(scale)
    try:
        check_geometry(d, shape, scale, flip_average)
    except ConfigError as e:
        raise ModelFileError(f"{path}: {e}") from None
    return shape, scale
