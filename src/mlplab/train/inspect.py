"""Looking at trained models: evaluation with per-class accuracy and the confusion matrix,
and prediction on image files of any size.

``evaluate_saved`` is what ``mlplab evaluate`` prints, ``predict_files`` what ``mlplab
predict`` prints, ``run_histories`` what ``mlplab compare`` draws. Each model's saved
preprocessing is applied.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.errors import DataError, MlplabError
from mlplab.nn.serialize import SavedModel
from mlplab.train.ensemble import combine


def confusion_matrix(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``C[i, j]``: how many images of true class ``i`` were predicted as class ``j``."""
    return np.bincount(np.asarray(y) * k + np.asarray(pred), minlength=k * k).reshape(k, k)


def per_class_accuracy(confusion: np.ndarray) -> list[float]:
    """Each true class's share of correct predictions, from a confusion matrix (0 if absent)."""
    return (confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)).tolist()


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
    probs = []
    for name, m in zip(names, models, strict=True):
        if m.network.d_in != x.shape[1]:
            raise MlplabError(
                f"{name} takes {m.network.d_in} inputs, the data has {x.shape[1]} per image"
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
    data_dir: str | os.PathLike | None = None,
    part: str = "test",
    vote: str = "mean",
    *,
    confusion: str | os.PathLike | None = None,
    gallery: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`evaluate_models` of saved models (run directories or model files) on the
    ``test`` or ``train`` part of the CIFAR-10 in ``data_dir``; also draws the confusion
    matrix into ``confusion`` and the first model's misclassified images into ``gallery``
    (PNG files) when given."""
    from mlplab.data import load_cifar10
    from mlplab.nn.serialize import load_network

    loaded = [load_network(m) for m in models]
    raw = load_cifar10(data_dir, progress=progress)
    x, y = (raw.x_test, raw.y_test) if part == "test" else (raw.x_train, raw.y_train)
    names = [str(m) for m in models]
    res = {"part": part, **evaluate_models(loaded, x, y, raw.classes, vote, names)}
    if confusion is not None:
        from mlplab.report.plots import plot_confusion

        plot_confusion(res["confusion"], raw.classes, confusion, f"{part} set, {len(y)} images")
    if gallery is not None:
        from mlplab.report.plots import plot_images

        images, labels = misclassified(loaded[0], x, y)
        title = f"{names[0]}: misclassified ({part} set)"
        plot_images(images, labels, gallery, title, cols=6, cell=1.7)
    return res


def run_histories(runs: Sequence[str | os.PathLike]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(name, history)`` of each run directory (or its ``results.json``)."""
    out = []
    for run in runs:
        path = Path(run) / "results.json" if Path(run).is_dir() else Path(run)
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
            name = res.get("name") or str(run)
            subset = (res.get("config") or {}).get("record_train_samples")
            if subset:  # its train curves are those of a subset: say so in the legend
                name += f" (train curves: first {subset:,} samples)"
            out.append((name, list(res["history"])))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MlplabError(f"{path}: not the results.json of a run ({e})") from None
    return out


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any image Pillow reads, as one (3072,) uint8 row in CIFAR order.

    A 32x32 RGB image is used exactly as it is; any other is converted to RGB, cropped to its
    central square and resized to 32x32 with Lanczos (antialiased) resampling.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            if im.size != (32, 32):
                im = ImageOps.fit(im, (32, 32), method=Image.Resampling.LANCZOS)
            hwc = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    return hwc.transpose(2, 0, 1).reshape(-1)


def predict_files(
    model: SavedModel, paths: Sequence[str | os.PathLike], top: int = 3
) -> list[dict[str, Any]]:
    """For each image file: the predicted class, its probability and the ``top`` classes."""
    if not 1 <= top <= len(model.classes):
        raise MlplabError(f"--top must be in 1..{len(model.classes)}, got {top}")
    if model.network.d_in != 3072:
        raise MlplabError(f"the model takes {model.network.d_in} inputs, not 32x32 RGB images")
    x = np.stack([read_image(p) for p in paths])
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


def first_layer_images(model: SavedModel) -> tuple[np.ndarray, list[str]]:
    """Each first-layer unit's weights as a 32x32 colour picture (the course's class
    templates): ``(units, 32, 32, 3)`` in [0, 1], each scaled by its own min and max.

    For a whitened model these are the weights on the standardised pixels, ``whiten @ W``
    (the unit sees ``(x @ whiten) @ W``), not the weights on the whitened ones."""
    from mlplab.data import to_hwc

    dense = next(ly for ly in model.network.layers if ly.kind == "dense")
    W = np.asarray(dense.params["W"], np.float64)
    if W.shape[0] != 3072:
        raise MlplabError(f"the first layer takes {W.shape[0]} inputs, not 32x32 RGB images")
    if model.whiten is not None:
        W = np.asarray(model.whiten, np.float64) @ W
    w = W.T  # (units, 3072)
    lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
    return to_hwc((w - lo) / np.maximum(hi - lo, 1e-12)), [f"unit {i}" for i in range(len(w))]


def misclassified(
    model: SavedModel, x: np.ndarray, y: np.ndarray, count: int = 30
) -> tuple[np.ndarray, list[str]]:
    """Misclassified images of ``x`` (uint8 rows) with "true → predicted": the first
    ``count / classes`` of each true class (data sets ordered by class show every class)."""
    from mlplab.data import to_hwc

    pred = model.predict_proba(x).argmax(1)
    per = -(-count // len(model.classes))
    bad = [np.flatnonzero((pred != y) & (y == k))[:per] for k in range(len(model.classes))]
    wrong = np.sort(np.concatenate(bad))[:count]
    labels = [f"{model.classes[y[i]]} → {model.classes[pred[i]]}" for i in wrong]
    return to_hwc(x[wrong]), labels
