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
from mlplab.data.whiten import apply_whitening, fit_zca
from mlplab.errors import ConfigError, DataError
from mlplab.images import CIFAR10_SHAPE, ImageShape

#: Named splits; ``"NNNN/MMMM"`` (e.g. ``"2000/500"``) is accepted as well.
SPLITS = ("batch", "45k", "49k", "all")
#: Validation size of the named splits that take a seeded permutation.
_VAL_SIZE = {"45k": 5000, "49k": 1000, "all": 0}
_BATCH_SIZE = 10_000
_CUSTOM = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_CHUNK = 512  # rows per chunk for gathering and statistics

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
    ``x`` becoming ``x @ W`` (:mod:`mlplab.data.whiten`).
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

    @functools.cached_property
    def x_test(self) -> np.ndarray:
        return transform_pixels(
            self.test_pixels,
            self.mean,
            self.std,
            self.whiten,
            self.x_train.dtype,
            scale=self.scale,
        )


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


def _gather(x: np.ndarray, idx: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """``x[idx]`` converted to ``dtype``, built chunk by chunk into one array."""
    n = x.shape[0] if idx is None else len(idx)
    out = np.empty((n, x.shape[1]), dtype=dtype)
    for i in range(0, n, _CHUNK):
        j = min(i + _CHUNK, n)
        out[i:j] = x[i:j] if idx is None else x[idx[i:j]]
    return out


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (ddof=0) of ``x`` holding integers 0..255.

    Sums are accumulated in float64 per chunk; they are exact for integer
    pixels, so the one-pass variance formula loses nothing.
    """
    n = x.shape[0]
    s = np.zeros(x.shape[1], dtype=np.float64)
    sq = np.zeros(x.shape[1], dtype=np.float64)
    for i in range(0, n, _CHUNK):
        c = x[i : i + _CHUNK].astype(np.float64)
        s += c.sum(axis=0)
        sq += np.einsum("ij,ij->j", c, c)
    mean = s / n
    var = np.maximum(sq / n - mean * mean, 0.0)
    return mean, np.sqrt(var)


def column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column float64 mean and std (ddof=0) of features ``x`` ``(n, d)``, std 0 made 1.

    Two passes (NumPy's ``mean`` and ``std``), right for any float features; the
    pixels of :func:`make_splits` take the chunked one-pass sums, exact for integers.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
        if not np.isfinite(mean).all():
            raise DataError("features too large to average (a sum overflows float64): rescale them")
        bad = ~np.isfinite(std)
        if bad.any():  # the squares overflow (|x| ~ 1e155): the std of x / its largest deviation
            dev = np.asarray(x[:, bad], np.float64) - mean[bad]
            top = np.abs(dev).max(axis=0)
            std[bad] = (dev / top).std(axis=0) * top
    return mean, _one_where_zero(std)


def _one_where_zero(std: np.ndarray) -> np.ndarray:
    """A constant column is left at ``x - mean = 0`` instead of divided by zero."""
    return np.where(std > 0, std, 1.0)


def standardize(
    x: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    dtype: np.dtype | type = np.float32,
    *,
    scale: float = 255.0,
) -> np.ndarray:
    """``(x / scale - mean) / std`` as a new (n, d) array of ``dtype``.

    ``x``: (n, d) rows, by default uint8 pixels in CIFAR order; ``mean``/``std``:
    (d,) on the ``x / scale`` scale, as stored in :class:`Splits` (``scale=255``)
    or returned by :func:`column_stats` (``scale=1``). Computed in ``dtype``.
    """
    out = _gather(np.asarray(x), None, np.dtype(dtype))
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    _standardize_inplace(out, mean * scale, std, scale)
    return out


def transform_pixels(
    x: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    whiten: np.ndarray | None,
    dtype: np.dtype | type = np.float32,
    scale: float = 255.0,
) -> np.ndarray:
    """Raw rows ``(n, d)`` to network inputs: :func:`standardize` (uint8 pixels in
    ``dtype``; float features in float64, then cast to ``dtype``), then ``@ whiten`` when
    there is one. The splits and saved models compute exactly this (the ONNX graph the
    same formula in float32). A value that ``dtype`` cannot hold (features of 1e300 in
    float32) is one :class:`DataError` (:func:`check_range`), without NumPy's warnings."""
    x = np.asarray(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if x.dtype == np.uint8:
            out = standardize(x, mean, std, dtype, scale=scale)
        else:
            out = standardize(x, mean, std, np.float64, scale=scale).astype(dtype, copy=False)
        if whiten is not None:
            apply_whitening(out, whiten)
    check_range(out, "the data")
    return out


def check_range(x: np.ndarray, what: str) -> None:
    """One :class:`DataError` if the standardised rows ``x`` hold a value that is not a
    finite number of their dtype (an input far outside the training data's range)."""
    if not x.size or (np.isfinite(x.min()) and np.isfinite(x.max())):  # no (n, d) temporary
        return
    bad = sum(int(np.count_nonzero(~np.isfinite(c).all(axis=1))) for c in _chunks(x))
    raise _out_of_range(bad, len(x), what, x.dtype)


def _out_of_range(bad: int, n: int, what: str, dtype: np.dtype) -> DataError:
    return DataError(
        f"inputs out of range: {bad} of {n} rows of {what} hold values that are not finite "
        f"{dtype} numbers once standardised (far beyond the training data's); rescale them "
        "as the training data were"
    )


def _chunks(x: np.ndarray):
    return (x[i : i + _CHUNK] for i in range(0, len(x), _CHUNK))


def _standardize_inplace(
    x: np.ndarray, mean_scaled: np.ndarray, std: np.ndarray, scale: float
) -> None:
    """``x`` holds raw values; make it ``(x/scale - mean)/std`` in place (given ``mean*scale``)."""
    np.subtract(x, mean_scaled.astype(x.dtype), out=x)
    np.multiply(x, (1.0 / (scale * std)).astype(x.dtype), out=x)


def make_splits(
    raw: RawDataset,
    split: str,
    rng: np.random.Generator,
    *,
    n_train: int | None = None,
    dtype: np.dtype | type = np.float32,
    zca_eps: float = 0.0,
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
        split, :func:`mlplab.data.whiten.fit_zca`; ``Splits.whiten`` holds the matrix).

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
    return whiten_splits(splits, zca_eps) if zca_eps else splits


def _pixel_splits(
    x: np.ndarray, tr: np.ndarray, va: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised train and validation rows of uint8 pixels, built in ``dtype``, with
    the statistics on the ``/255`` scale."""
    x_train = _gather(x, tr, dtype)
    mean255, std255 = _stats(x_train)
    mean = mean255 / 255.0
    std = _one_where_zero(std255 / 255.0)
    mean255 = mean * 255.0  # as standardize() (and so a saved model) recomputes it
    _standardize_inplace(x_train, mean255, std, 255.0)
    x_val = _gather(x, va, dtype)
    _standardize_inplace(x_val, mean255, std, 255.0)
    return x_train, x_val, mean, std


def _feature_splits(
    x: np.ndarray, tr: np.ndarray, va: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Float features: float64 statistics of the training rows, standardised in float64
    (as :func:`transform_pixels` does the test rows), then cast to ``dtype``."""
    out = []
    x_train = _gather(x, tr, np.dtype(np.float64))
    mean, std = column_stats(x_train)
    for part in (x_train, _gather(x, va, np.dtype(np.float64))):
        _standardize_inplace(part, mean, std, 1.0)
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
        bad = sum(int(np.count_nonzero(~(abs(c - mean) / std <= limit).all(1))) for c in _chunks(x))
    raise _out_of_range(bad, len(x), "the test part", dtype)


def whiten_splits(splits: Splits, zca_eps: float) -> Splits:
    """``splits`` ZCA-whitened with ``zca_eps``: the matrix is fitted on the standardised
    training split (:func:`mlplab.data.whiten.fit_zca`, mirror-symmetric under the flip of
    ``splits.image_shape``; no mirror for flat features), the training and
    validation arrays are whitened in place, and the result holds the matrix, in their
    dtype, as ``whiten``. The test pixels are whitened when first read
    (:meth:`Splits.x_test`). The arrays of ``splits`` itself are whitened too (it keeps
    ``whiten=None``): use the returned splits only."""
    if splits.whiten is not None:
        raise ValueError("these splits are already whitened")
    w = fit_zca(splits.x_train, zca_eps, mirror=splits.image_shape)
    w = w.astype(splits.x_train.dtype)
    apply_whitening(splits.x_train, w)
    apply_whitening(splits.x_val, w)
    return replace(splits, whiten=w)


def to_hwc(x: np.ndarray, shape: ImageShape = CIFAR10_SHAPE) -> np.ndarray:
    """View rows ``(n, d)`` (or one row ``(d,)``) in plane order as ``(n, height, width,
    channels)`` images of ``shape`` (default CIFAR-10's 32x32 RGB), for plotting."""
    x = np.asarray(x)
    return shape.to_hwc(x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x)
