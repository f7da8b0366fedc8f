"""Looking at trained models: evaluation with per-class accuracy and the confusion matrix,
prediction on image files of any size and mode, and the first layer's weights as pictures,
each in the model's own image shape (``SavedModel.image_shape``).

``evaluate_saved`` is what ``mlplab evaluate`` prints, ``predict_files`` what ``mlplab
predict`` prints, ``run_histories`` what ``mlplab compare`` draws. Each model's saved
preprocessing is applied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.errors import DataError, MlplabError
from mlplab.fileio import read_json
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.nn.serialize import SavedModel
from mlplab.train.ensemble import combine


def confusion_matrix(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``C[i, j]``: how many images of true class ``i`` were predicted as class ``j``."""
    return np.bincount(np.asarray(y) * k + np.asarray(pred), minlength=k * k).reshape(k, k)


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Each true class's share of correct predictions, from a confusion matrix (None for a
    class with no samples: there is nothing to be right or wrong about)."""
    n = confusion.sum(axis=1)
    return [None if k == 0 else float(c / k) for c, k in zip(confusion.diagonal(), n, strict=True)]


def evaluate_models(
    models: Sequence[SavedModel],
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    vote: str = "mean",
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy of each model and of their combination (``vote``) on uint8 pixels ``x``.

    Returns ``n``, ``accuracy``, ``model_accuracies``, ``per_class_accuracy`` (true class
    order) and ``confusion`` (rows: true class, columns: predicted), as plain lists.
    """
    names = list(names) if names is not None else [f"model {i}" for i in range(len(models))]
    if len(y) == 0:  # an accuracy of nothing is not a number
        raise MlplabError("the data hold no samples to evaluate")
    probs = []
    for name, m in zip(names, models, strict=True):
        if m.network.d_in != x.shape[1]:
            raise MlplabError(
                f"{name} takes {m.network.d_in} inputs, the data have {x.shape[1]} per row"
            )
        if tuple(m.classes) != tuple(classes):
            raise MlplabError(
                f"{name}: classes {m.classes} differ from the data's {tuple(classes)}"
            )
        probs.append(m.predict_proba(x))
    pred = combine(probs, vote)
    conf = confusion_matrix(y, pred, len(classes))
    return {
        "n": len(y),
        "accuracy": float(np.mean(pred == y)),
        "model_accuracies": [float(np.mean(p.argmax(1) == y)) for p in probs],
        "vote": vote,
        "classes": list(classes),
        "per_class_accuracy": per_class_accuracy(conf),
        "confusion": conf.tolist(),
    }


def evaluate_saved(
    models: Sequence[str | os.PathLike],
    data: str | os.PathLike | None = None,
    part: str = "test",
    vote: str = "mean",
    *,
    confusion: str | os.PathLike | None = None,
    gallery: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`evaluate_models` of saved models (run directories or model files) on the
    ``test`` or ``train`` part of ``data`` (CIFAR-10, an image folder or an ``.npz``, as
    :func:`mlplab.data.load_data` reads it; image folders at the models' image size); also
    draws the confusion matrix into ``confusion`` and the first model's misclassified images
    into ``gallery`` (PNG files) when given.

    The models must share one input (image shape and scale), and the data must have it."""
    from mlplab.nn.serialize import load_network

    names = [str(m) for m in models]
    loaded = [load_network(m) for m in models]
    first = loaded[0]
    for name, m in zip(names[1:], loaded[1:], strict=True):
        if (m.image_shape, m.scale) != (first.image_shape, first.scale):
            raise MlplabError(
                f"{names[0]} takes {describe_input(first)}, {name} takes {describe_input(m)}: "
                "an ensemble needs one input"
            )
    if gallery is not None:
        _need_images(first, "--misclassified (a gallery of images)")
    raw = _load_for(first, data, progress)
    _check_input(first, names[0], raw)
    x, y = (raw.x_test, raw.y_test) if part == "test" else (raw.x_train, raw.y_train)
    res = {"part": part, **evaluate_models(loaded, x, y, raw.classes, vote, names)}
    if confusion is not None:
        from mlplab.report.plots import plot_confusion

        plot_confusion(res["confusion"], raw.classes, confusion, f"{part} set, {len(y)} images")
    if gallery is not None:
        from mlplab.report.plots import plot_images

        images, labels = misclassified(first, x, y)
        title = f"{names[0]}: misclassified ({part} set)"
        plot_images(images, labels, gallery, title, cols=6, cell=1.7)
    return res


def _load_for(model: SavedModel, data: str | os.PathLike | None, progress: bool) -> Any:
    """The data at the model's image size (flat features, and an ``.npz`` that cannot be
    resized, as they are: :func:`_check_input` then says what they are)."""
    from mlplab.data import load_data

    shape = model.image_shape
    if shape is None:
        return load_data(data, progress=progress)
    try:
        return load_data(data, size=(shape.height, shape.width), progress=progress)
    except DataError:
        if data is None or Path(data).suffix != ".npz":
            raise
        return load_data(data, progress=progress)


def _check_input(model: SavedModel, name: str, raw: Any) -> None:
    """One clear error when the data are not what ``model`` takes."""
    have = raw.image_shape
    shape = model.image_shape
    if have is None:
        data_words = f"{raw.x_train.shape[1]} flat features"
    else:
        colour = "grayscale" if have.channels == 1 else "RGB"  # read at the model's size
        data_words = f"{have} images" if shape is None else f"{colour} images"
    if (shape is None) != (have is None) or (shape is not None and shape != have):
        raise MlplabError(
            f"{name} takes {describe_input(model)}, but the data ({raw.source}) are {data_words}"
        )
    if shape is None and raw.x_train.shape[1] != model.network.d_in:
        raise MlplabError(
            f"{name} takes {describe_input(model)}, but the data ({raw.source}) have "
            f"{raw.x_train.shape[1]}"
        )
    if raw.scale != model.scale:
        raise MlplabError(
            f"{name} takes values on the scale {model.scale:g} "
            f"({_scale_words(model.scale)}), but the data ({raw.source}) are on the scale "
            f"{raw.scale:g}"
        )


def describe_input(model: SavedModel) -> str:
    """What the model takes, in words: ``24x24 grayscale images`` or ``64 flat features``."""
    if model.image_shape is None:
        return f"{model.network.d_in} flat features"
    return f"{model.image_shape} images"


def _scale_words(scale: float) -> str:
    return "8-bit pixels" if scale == 255 else "values divided by it before standardising"


def _need_images(model: SavedModel, what: str) -> ImageShape:
    """The model's image shape, or one clear error saying that ``what`` needs images."""
    if model.image_shape is None:
        raise MlplabError(
            f"{what} needs a model of images; this one takes {model.network.d_in} flat features"
        )
    return model.image_shape


#: The longest run name a legend shows (a results.json may hold any string).
MAX_NAME = 120


def run_histories(runs: Sequence[str | os.PathLike]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(name, history)`` of each run directory (or its ``results.json``).

    Each file is read as untrusted (:func:`mlplab.fileio.read_json`: a regular file only,
    so a FIFO or a link to ``/dev/zero`` is refused at once; at most 64 MiB; at most 64
    levels of nesting) and its schema checked before use: an object whose ``history`` is a
    list of objects, each with a number ``step`` and numbers (or ``null``) as its other
    values; ``name`` a string, ``config.record_train_samples`` a whole number. ``NaN`` is
    let through (mlplab writes it for an undefined value; a curve shows a gap). Anything
    else is one :class:`MlplabError` naming the file."""
    out = []
    for run in runs:
        path = Path(run) / "results.json" if Path(run).is_dir() else Path(run)
        res = read_json(path, what="results file", allow_nan=True)
        try:
            name, history = _run_history(res, str(run))
        except (ValueError, TypeError) as e:
            raise MlplabError(f"{path}: not the results.json of a run ({e})") from None
        out.append((name, history))
    return out


def _run_history(res: Any, default: str) -> tuple[str, list[dict[str, Any]]]:
    """The legend name and the checked history of the parsed results ``res``."""
    if not isinstance(res, dict):
        kind = "null" if res is None else "list" if isinstance(res, list) else "value"
        raise TypeError(f"a JSON {kind}, not an object")
    name = res.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError("'name' is not a string")
    name = name or default
    config = res.get("config") or {}
    if not isinstance(config, dict):
        raise TypeError("'config' is not an object")
    subset = config.get("record_train_samples")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int)):
        raise TypeError(f"'config.record_train_samples' is not a whole number: {subset!r}")
    name = _short(name)
    if subset:  # its train curves are those of a subset: say so in the legend
        name += f" (train curves: first {_short(f'{subset:,}')} samples)"
    if "history" not in res:
        raise ValueError("no 'history'")
    history = res["history"]
    if not isinstance(history, list):
        raise TypeError("'history' is not a list")
    for i, point in enumerate(history):
        if not isinstance(point, dict):
            raise TypeError(f"history point {i} is not an object")
        if "step" not in point or _not_number(point["step"]):
            raise ValueError(f"history point {i} has no number 'step'")
        bad = next((k for k, v in point.items() if v is not None and _not_number(v)), None)
        if bad is not None:
            raise TypeError(f"history point {i}: {_short(bad)!r} is not a number")
    return name, history


def _not_number(v: Any) -> bool:
    return isinstance(v, bool) or not isinstance(v, int | float)


def _short(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def read_image(path: str | os.PathLike, shape: ImageShape = CIFAR10_SHAPE) -> np.ndarray:
    """Any image Pillow reads, as one ``(shape.size,)`` uint8 row in plane order.

    The image is converted to the model's channels (``L`` for grayscale, ``RGB`` for colour,
    by :func:`mlplab.data.pixels.load_pil`, which scales 16-bit images to 8 bits); an image of
    the model's size is used as it is, any other is cropped around its centre to the model's
    aspect ratio and resized with Lanczos (antialiased) resampling.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from mlplab.data.pixels import load_pil

    want = (shape.width, shape.height)
    try:
        im = load_pil(path, shape.channels, photo=True)
        if im.size != want:
            im = ImageOps.fit(im, want, method=Image.Resampling.LANCZOS)
        hwc = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image file ({e})") from None
    return shape.from_hwc(hwc[None])[0]


def predict_files(
    model: SavedModel, paths: Sequence[str | os.PathLike], top: int | None = None
) -> list[dict[str, Any]]:
    """For each image file: the predicted class, its probability and the ``top`` classes.

    Each file is read at the model's image shape (:func:`read_image`); a model of flat
    features cannot classify image files (one :class:`MlplabError`)."""
    if top is None:  # three, or every class of a model with fewer
        top = min(3, len(model.classes))
    if not 1 <= top <= len(model.classes):
        raise MlplabError(f"--top must be in 1..{len(model.classes)}, got {top}")
    shape = _need_images(model, "predicting image files")
    if model.scale != 255:
        raise MlplabError(
            f"the model takes values on the scale {model.scale:g}, not 8-bit pixels: "
            "it cannot classify image files"
        )
    x = np.stack([read_image(p, shape) for p in paths])
    probs = model.predict_proba(x)
    out = []
    for path, p in zip(paths, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:top]
        best = int(order[0])
        out.append(
            {
                "file": str(Path(path)),
                "class": model.classes[best],
                "probability": float(p[best]),
                "top": [[model.classes[int(i)], float(p[i])] for i in order],
            }
        )
    return out


def first_layer_images(
    model: SavedModel, max_units: int | None = 100
) -> tuple[np.ndarray, list[str]]:
    """The first layer's units (the first ``max_units`` of them; ``None``: all) as pictures of
    the model's image shape (the course's class templates): ``(units, H, W, C)`` in [0, 1],
    each scaled by its own min and max.

    For a whitened model these are the weights on the standardised pixels, ``whiten @ W``
    (the unit sees ``(x @ whiten) @ W``), not the weights on the whitened ones."""
    shape = _need_images(model, "drawing the weights as pictures")
    if max_units is not None and max_units < 1:
        raise MlplabError(f"the number of units to draw must be at least 1, got {max_units}")
    dense = next(ly for ly in model.network.layers if ly.kind == "dense")
    W = np.asarray(dense.params["W"][:, :max_units], np.float64)  # (d, units shown)
    if model.whiten is not None:
        W = np.asarray(model.whiten, np.float64) @ W
    w = W.T  # (units, d)
    lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
    scaled = (w - lo) / np.maximum(hi - lo, 1e-12)
    return shape.to_hwc(scaled), [f"unit {i}" for i in range(len(w))]


def draw_first_layer(
    model: SavedModel, out: str | os.PathLike, name: str, max_units: int | None = 100
) -> tuple[int, int]:
    """Draw :func:`first_layer_images` into the PNG ``out``; ``(units drawn, units)``."""
    from mlplab.report.plots import plot_images

    images, labels = first_layer_images(model, max_units)
    total = next(ly for ly in model.network.layers if ly.kind == "dense").params["W"].shape[1]
    title = f"{name}: first-layer weights (each scaled to its range)"
    if len(images) < total:
        title += f", the first {len(images)} of {total} units"
    plot_images(images, labels, out, title)
    return len(images), int(total)


def misclassified(
    model: SavedModel, x: np.ndarray, y: np.ndarray, count: int = 30
) -> tuple[np.ndarray, list[str]]:
    """Misclassified images of ``x`` (uint8 rows) as ``(n, H, W, C)`` pictures of the model's
    shape, with "true → predicted": the first ``count / classes`` of each true class (data
    sets ordered by class show every class)."""
    shape = _need_images(model, "showing misclassified images")
    pred = model.predict_proba(x).argmax(1)
    per = -(-count // len(model.classes))
    bad = [np.flatnonzero((pred != y) & (y == k))[:per] for k in range(len(model.classes))]
    wrong = np.sort(np.concatenate(bad))[:count]
    labels = [f"{model.classes[y[i]]} → {model.classes[pred[i]]}" for i in wrong]
    return shape.to_hwc(x[wrong]), labels
