"""Train/validation/test splits and standardisation (as in KTH DD2424).

Pixels are scaled to [0, 1] (``/255``), then every one of the ``d`` dimensions (3072 for
CIFAR-10) is standardised with the mean and standard deviation of the *training* split
only; validation and test use the same statistics.  For uint8 pixels, outputs are built
once in the target dtype and standardised in place; statistics are accumulated in
float64 chunk by chunk, so no float64 copy of the training set is ever made.  Float
features (an ``.npz`` of real values, ``scale = 1``) take float64 statistics
(:func:`column_stats`), are standardised in float64 and then cast to the target dtype
(the test rows too, by :func:`transform_pixels`).

:func:`standardize` computes ``(x / scale - mean) / std`` for every caller: pixels
with the statistics of :class:`Splits` (``scale=255``), and features already on their
scale with those of :func:`column_stats` (``scale=1``, as
:class:`mlplab.train.estimator.MLPClassifier` does).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

import numpy as np

from mlplab.data.batches import RawDataset
from mlplab.errors import ConfigError, DataError
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.transform import InputTransform, apply_whitening, mirror_for
from mlplab.transform.standardize import (
    check_range,
    chunks,
    column_stats,
    gather,
    one_where_zero,
    out_of_range,
    pixel_stats,
    standardize,
    standardize_inplace,
    transform_pixels,
)

#: Named splits; ``"NNNN/MMMM"`` (e.g. ``"2000/500"``) is accepted as well.
SPLITS = ("batch", "45k", "49k", "all")
#: Validation size of the named splits that take a seeded permutation.
_VAL_SIZE = {"45k": 5000, "49k": 1000, "all": 0}
_BATCH_SIZE = 10_000
_CUSTOM = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

__all__ = [
    "SPLITS",
    "Splits",
    "check_range",
    "column_stats",
    "make_splits",
    "parse_split",
    "standardize",
    "to_hwc",
    "transform_pixels",
]


@dataclass(frozen=True, eq=False)
class Splits:
    """Standardised train/validation/test arrays.

    x_train: (n_train, d), x_val: (n_val, d) (possibly (0, d)),
    x_test: (n_test, d), all of the requested float dtype, standardised
    with the training statistics; y_*: (n,) int64 labels.
    mean, std: (d,) float64 statistics of the training split on the
    ``raw / scale`` scale (std with zeros replaced by 1), so that
    ``x = (raw / scale - mean) / std``.
    whiten: ``None``, or the ``(d, d)`` ZCA matrix ``W`` (in the arrays' dtype,
    fitted on the standardised training split) applied after standardising, every row
    ``x`` becoming ``x @ W`` (:mod:`mlplab.transform.whiten`).
    image_shape: the shape of the images (CIFAR-10's 32x32 RGB for d = 3072), or
    ``None`` for flat features.  scale: 255 for uint8 pixels, 1 for float features.

    The test set is kept as its raw ``test_pixels`` and transformed (by
    :func:`transform_pixels`, as a saved model does) when ``x_test`` is first read, after
    training: a run does not hold a float copy of it while it trains.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    test_pixels: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    classes: tuple[str, ...]
    name: str
    whiten: np.ndarray | None = None
    image_shape: ImageShape | None = CIFAR10_SHAPE
    scale: float = 255.0

    @property
    def transform(self) -> InputTransform:
        """The fitted input transform of these splits (what a saved model applies)."""
        return InputTransform(self.mean, self.std, self.whiten, self.scale)

    @functools.cached_property
    def x_test(self) -> np.ndarray:
        return self.transform(self.test_pixels, self.x_train.dtype)


def parse_split(split: str) -> tuple[str, tuple[int, int] | None]:
    """Validate a split name; return ``(name, (n_train, n_val))`` for ``"NNNN/MMMM"``.

    Raises :class:`ConfigError` for anything else than :data:`SPLITS` or
    ``"NNNN/MMMM"`` with NNNN >= 1.
    """
    if split in SPLITS:
        return split, None
    m = _CUSTOM.match(str(split))
    if not m:
        raise ConfigError(
            f"unknown split {split!r}: use one of {', '.join(SPLITS)} or 'NTRAIN/NVAL' "
            "(e.g. '2000/500')"
        )
    n_tr, n_va = int(m.group(1)), int(m.group(2))
    if n_tr < 1:
        raise ConfigError(f"split {split!r}: the training part must hold at least 1 image")
    return f"{n_tr}/{n_va}", (n_tr, n_va)


def _split_indices(
    raw: RawDataset, name: str, sizes: tuple[int, int] | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = len(raw.y_train)
    if name == "batch" and raw.train_batch is not None:
        tr = np.flatnonzero(raw.train_batch == 1)
        va = np.flatnonzero(raw.train_batch == 2)
        if tr.size == 0 or va.size == 0:
            raise DataError(f"split 'batch' needs data_batch_1 and data_batch_2 in {raw.source}")
        return tr, va
    if name == "batch":
        n_tr, n_va = _BATCH_SIZE, _BATCH_SIZE
    elif sizes is not None:
        n_tr, n_va = sizes
    else:
        n_va = _VAL_SIZE[name]
        n_tr = n - n_va
        if n_tr < 1:
            raise DataError(
                f"split {name!r} holds out {n_va} validation images but the data set has "
                f"only {n} training images ({raw.source}); use a split 'NTRAIN/NVAL'"
            )
    if n_tr + n_va > n:
        raise DataError(
            f"split {name!r} needs {n_tr} + {n_va} = {n_tr + n_va} training images but the "
            f"data set has only {n} ({raw.source})"
        )
    perm = rng.permutation(n)
    return perm[:n_tr], perm[n_tr : n_tr + n_va]


def make_splits(
    raw: RawDataset,
    split: str,
    rng: np.random.Generator,
    *,
    n_train: int | None = None,
    dtype: np.dtype | type = np.float32,
    zca_eps: float = 0.0,
    flips: bool = True,
) -> Splits:
    """Build standardised train/validation/test arrays.

    split:
      * ``"batch"``: official data sets: train = data_batch_1, validation =
        data_batch_2 (original order, ``rng`` unused); image folders: a
        seeded draw of 20,000 distinct images, the first 10,000 train, the
        rest validation.
      * ``"45k"`` / ``"49k"``: a seeded permutation of all training images;
        the last 5,000 / 1,000 are validation, the rest (45,000 / 49,000 of
        CIFAR-10's 50,000) train.
      * ``"all"``: all training images (seeded permutation), empty
        validation of shape (0, d).
      * ``"NNNN/MMMM"``: a seeded draw of NNNN train and MMMM validation images.
    n_train: keep only the first ``n_train`` samples of the training split
        (statistics are those of the kept samples); validation unchanged.
    dtype: float32 (default) or float64.
    zca_eps: if > 0, ZCA-whiten with this ``eps`` (fitted on the standardised training
        split, :func:`mlplab.transform.whiten.fit_zca`; ``Splits.whiten`` holds the matrix),
        mirror-symmetric when ``flips`` (training flips the images,
        :func:`mlplab.transform.mirror_for`).

    Returns :class:`Splits` with x_* of shape (n, d) and ``dtype``, and the raw set's
    ``image_shape`` and ``scale``.  uint8 pixels are standardised in ``dtype`` with exact
    float64 statistics (bit-identical to earlier versions); float features as the module
    docstring says.  Same ``rng`` state gives identical splits; the global RNG is never used.
    Raises :class:`ConfigError` for a bad split name / n_train / dtype and
    :class:`DataError` if the data set is too small for the split.
    """
    name, sizes = parse_split(split)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype must be float32 or float64, not {dtype}")
    shape = raw.image_shape
    d = raw.x_train.shape[1] if raw.x_train.ndim == 2 else -1
    if d < 1 or (shape is not None and d != shape.size) or raw.x_test.shape[1:] != (d,):
        want = "(N, d)" if shape is None else f"(N, {shape.size}) rows of {shape} images"
        raise DataError(
            f"expected {want}, found training rows {raw.x_train.shape} and test rows "
            f"{raw.x_test.shape} ({raw.source})"
        )
    tr, va = _split_indices(raw, name, sizes, rng)
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, int | np.integer):
            raise ConfigError(f"n_train must be an integer, not {n_train!r}")
        if not 1 <= n_train <= len(tr):
            raise ConfigError(
                f"n_train={n_train} is outside 1..{len(tr)} (the size of the train part "
                f"of split {name!r})"
            )
        tr = tr[:n_train]

    if raw.x_train.dtype == np.uint8:
        x_train, x_val, mean, std = _pixel_splits(raw.x_train, tr, va, dtype)
    else:
        x_train, x_val, mean, std = _feature_splits(raw.x_train, tr, va, dtype)
        _check_test_range(np.asarray(raw.x_test), mean, std, dtype)
    splits = Splits(
        x_train=x_train,
        y_train=np.asarray(raw.y_train, dtype=np.int64)[tr],
        x_val=x_val,
        y_val=np.asarray(raw.y_train, dtype=np.int64)[va],
        test_pixels=np.asarray(raw.x_test),
        y_test=np.asarray(raw.y_test, dtype=np.int64).copy(),
        mean=mean,
        std=std,
        classes=tuple(raw.classes),
        name=name,
        image_shape=shape,
        scale=raw.scale,
    )
    return whiten_splits(splits, zca_eps, flips=flips) if zca_eps else splits


def _pixel_splits(
    x: np.ndarray, tr: np.ndarray, va: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised train and validation rows of uint8 pixels, built in ``dtype``, with
    the statistics on the ``/255`` scale."""
    x_train = gather(x, tr, dtype)
    mean255, std255 = pixel_stats(x_train)
    mean = mean255 / 255.0
    std = one_where_zero(std255 / 255.0)
    mean255 = mean * 255.0  # as standardize() (and so a saved model) recomputes it
    standardize_inplace(x_train, mean255, std, 255.0)
    x_val = gather(x, va, dtype)
    standardize_inplace(x_val, mean255, std, 255.0)
    return x_train, x_val, mean, std


def _feature_splits(
    x: np.ndarray, tr: np.ndarray, va: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Float features: float64 statistics of the training rows, standardised in float64
    (as :func:`transform_pixels` does the test rows), then cast to ``dtype``."""
    out = []
    x_train = gather(x, tr, np.dtype(np.float64))
    mean, std = column_stats(x_train)
    for part in (x_train, gather(x, va, np.dtype(np.float64))):
        standardize_inplace(part, mean, std, 1.0)
        with np.errstate(over="ignore"):
            out.append(part.astype(dtype, copy=False))
    check_range(out[1], "the validation split")  # the training rows lie within sqrt(n) of 0
    del x_train
    return out[0], out[1], mean, std


def _check_test_range(x: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype: np.dtype) -> None:
    """Test features that ``dtype`` cannot hold once standardised are refused before
    training (they are standardised after it, :attr:`Splits.x_test`), by their column
    extremes: no copy of the test set."""
    if not len(x):
        return
    limit = np.finfo(dtype).max
    with np.errstate(over="ignore", invalid="ignore"):
        far = np.maximum(np.abs(x.min(axis=0) - mean), np.abs(x.max(axis=0) - mean)) / std
        if np.all(far <= limit):  # NaN fails
            return
        bad = sum(int(np.count_nonzero(~(abs(c - mean) / std <= limit).all(1))) for c in chunks(x))
    raise out_of_range(bad, len(x), "the test part", dtype)


def whiten_splits(splits: Splits, zca_eps: float, *, flips: bool = True) -> Splits:
    """``splits`` ZCA-whitened with ``zca_eps``: the matrix is fitted on the standardised
    training split (:meth:`InputTransform.whitened`, mirror-symmetric under the flip of
    ``splits.image_shape`` when training ``flips`` the images, :func:`mirror_for`), the
    training and validation arrays are whitened in place, and the result holds the matrix, in their
    dtype, as ``whiten``. The test pixels are whitened when first read
    (:meth:`Splits.x_test`). The arrays of ``splits`` itself are whitened too (it keeps
    ``whiten=None``): use the returned splits only."""
    if splits.whiten is not None:
        raise ValueError("these splits are already whitened")
    fitted = splits.transform.whitened(
        splits.x_train, zca_eps, mirror_for(splits.image_shape, flips)
    )
    assert fitted.whiten is not None
    w = fitted.whiten.astype(splits.x_train.dtype)
    apply_whitening(splits.x_train, w)
    apply_whitening(splits.x_val, w)
    return replace(splits, whiten=w)


def to_hwc(x: np.ndarray, shape: ImageShape = CIFAR10_SHAPE) -> np.ndarray:
    """View rows ``(n, d)`` (or one row ``(d,)``) in plane order as ``(n, height, width,
    channels)`` images of ``shape`` (default CIFAR-10's 32x32 RGB), for plotting."""
    x = np.asarray(x)
    return shape.to_hwc(x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x)
