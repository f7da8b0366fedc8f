"""Train/validation/test splits and standardisation (as in KTH DD2424).

Pixels are scaled to [0, 1] (``/255``), then every one of the 3072 dimensions
is standardised with the mean and standard deviation of the *training* split
only; validation and test use the same statistics.  Outputs are built once in
the target dtype and standardised in place; statistics are accumulated in
float64 chunk by chunk, so no float64 copy of the training set is ever made.

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

from mlplab.data.batches import N_PIXELS, RawDataset
from mlplab.data.whiten import apply_whitening, fit_zca
from mlplab.errors import ConfigError, DataError

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

    x_train: (n_train, 3072), x_val: (n_val, 3072) (possibly (0, 3072)),
    x_test: (n_test, 3072), all of the requested float dtype, standardised
    with the training statistics; y_*: (n,) int64 labels.
    mean, std: (3072,) float64 statistics of the training split on the
    ``pixels / 255`` scale (std with zeros replaced by 1), so that
    ``x = (pixels / 255 - mean) / std``.
    whiten: ``None``, or the ``(3072, 3072)`` ZCA matrix ``W`` (in the arrays' dtype,
    fitted on the standardised training split) applied after standardising, every row
    ``x`` becoming ``x @ W`` (:mod:`mlplab.data.whiten`).

    The test set is kept as its uint8 ``test_pixels`` and transformed (by
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

    @functools.cached_property
    def x_test(self) -> np.ndarray:
        return transform_pixels(
            self.test_pixels, self.mean, self.std, self.whiten, self.x_train.dtype
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
    return x.mean(axis=0, dtype=np.float64), _one_where_zero(x.std(axis=0, dtype=np.float64))


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
) -> np.ndarray:
    """Raw uint8 pixels ``(n, d)`` to network inputs: :func:`standardize`, then ``@ whiten``
    when there is one. The splits and saved models compute exactly this (the ONNX graph the
    same formula in float32)."""
    out = standardize(x, mean, std, dtype)
    if whiten is not None:
        apply_whitening(out, whiten)
    return out


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
        validation of shape (0, 3072).
      * ``"NNNN/MMMM"``: a seeded draw of NNNN train and MMMM validation images.
    n_train: keep only the first ``n_train`` samples of the training split
        (statistics are those of the kept samples); validation unchanged.
    dtype: float32 (default) or float64.
    zca_eps: if > 0, ZCA-whiten with this ``eps`` (fitted on the standardised training
        split, :func:`mlplab.data.whiten.fit_zca`; ``Splits.whiten`` holds the matrix).

    Returns :class:`Splits` with x_* of shape (n, 3072) and ``dtype``.  Same
    ``rng`` state gives identical splits; the global RNG is never used.
    Raises :class:`ConfigError` for a bad split name / n_train / dtype and
    :class:`DataError` if the data set is too small for the split.
    """
    name, sizes = parse_split(split)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype must be float32 or float64, not {dtype}")
    if raw.x_train.ndim != 2 or raw.x_train.shape[1] != N_PIXELS:
        raise DataError(f"expected (N, 3072) training pixels, found {raw.x_train.shape}")
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

    x_train = _gather(raw.x_train, tr, dtype)
    mean255, std255 = _stats(x_train)
    mean = mean255 / 255.0
    std = _one_where_zero(std255 / 255.0)
    mean255 = mean * 255.0  # as standardize() (and so a saved model) recomputes it
    _standardize_inplace(x_train, mean255, std, 255.0)
    x_val = _gather(raw.x_train, va, dtype)
    _standardize_inplace(x_val, mean255, std, 255.0)
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
    )
    return whiten_splits(splits, zca_eps) if zca_eps else splits


def whiten_splits(splits: Splits, zca_eps: float) -> Splits:
    """``splits`` ZCA-whitened with ``zca_eps``: the matrix is fitted on the standardised
    training split (:func:`mlplab.data.whiten.fit_zca`, mirror-symmetric), the training and
    validation arrays are whitened in place, and the result holds the matrix, in their
    dtype, as ``whiten``. The test pixels are whitened when first read
    (:meth:`Splits.x_test`). The arrays of ``splits`` itself are whitened too (it keeps
    ``whiten=None``): use the returned splits only."""
    if splits.whiten is not None:
        raise ValueError("these splits are already whitened")
    w = fit_zca(splits.x_train, zca_eps, mirror=True).astype(splits.x_train.dtype)
    apply_whitening(splits.x_train, w)
    apply_whitening(splits.x_val, w)
    return replace(splits, whiten=w)


def to_hwc(x: np.ndarray) -> np.ndarray:
    """View (n, 3072) CIFAR-order rows as (n, 32, 32, 3) images (for plotting)."""
    x = np.asarray(x)
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
