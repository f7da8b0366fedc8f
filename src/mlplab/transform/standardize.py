"""Standardisation of rows, the first half of the input transform (:mod:`mlplab.transform`).

Every input is ``(x / scale - mean) / std`` with the *training* rows' statistics:
``scale = 255`` for uint8 pixels (statistics on the ``[0, 1]`` scale), ``scale = 1`` for
float features already on their scale. uint8 pixels take exact float64 sums chunk by chunk
(:func:`pixel_stats`: no float64 copy of the training set); float features take NumPy's two
passes (:func:`column_stats`), are standardised in float64, then cast to the network's dtype.
A value the dtype cannot hold once standardised is one :class:`DataError`
(:func:`check_range`), never a silent ``inf``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mlplab.errors import DataError
from mlplab.transform.whiten import apply_whitening

CHUNK = 512  # rows per chunk for gathering and statistics


def gather(x: np.ndarray, idx: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """``x[idx]`` converted to ``dtype``, built chunk by chunk into one array."""
    n = x.shape[0] if idx is None else len(idx)
    out = np.empty((n, x.shape[1]), dtype=dtype)
    for i in range(0, n, CHUNK):
        j = min(i + CHUNK, n)
        out[i:j] = x[i:j] if idx is None else x[idx[i:j]]
    return out


def pixel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (ddof=0) of ``x`` holding integers 0..255.

    Sums are accumulated in float64 per chunk; they are exact for integer
    pixels, so the one-pass variance formula loses nothing.
    """
    n = x.shape[0]
    s = np.zeros(x.shape[1], dtype=np.float64)
    sq = np.zeros(x.shape[1], dtype=np.float64)
    for i in range(0, n, CHUNK):
        c = x[i : i + CHUNK].astype(np.float64)
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
    return mean, one_where_zero(std)


def one_where_zero(std: np.ndarray) -> np.ndarray:
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
    out = gather(np.asarray(x), None, np.dtype(dtype))
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    standardize_inplace(out, mean * scale, std, scale)
    return out


def transform_pixels(
    x: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    whiten: np.ndarray | None,
    dtype: np.dtype | type = np.float32,
    scale: float = 255.0,
    what: str = "the data",
) -> np.ndarray:
    """Raw rows ``(n, d)`` (named ``what`` in an error) to network inputs:
    :func:`standardize` (uint8 pixels in ``dtype``; float features in float64, then cast
    to ``dtype``), then ``@ whiten`` when there is one. The splits and saved models compute
    exactly this (the ONNX graph the same formula in float32). A value that ``dtype`` cannot
    hold (features of 1e300 in float32) is one :class:`DataError` (:func:`check_range`),
    without NumPy's warnings."""
    x = np.asarray(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if x.dtype == np.uint8:
            out = standardize(x, mean, std, dtype, scale=scale)
        else:
            out = standardize(x, mean, std, np.float64, scale=scale).astype(dtype, copy=False)
        if whiten is not None:
            apply_whitening(out, whiten)
    check_range(out, what)
    return out


def check_range(x: np.ndarray, what: str) -> None:
    """One :class:`DataError` if the standardised rows ``x`` hold a value that is not a
    finite number of their dtype (an input far outside the training data's range)."""
    if not x.size or (np.isfinite(x.min()) and np.isfinite(x.max())):  # no (n, d) temporary
        return
    bad = sum(int(np.count_nonzero(~np.isfinite(c).all(axis=1))) for c in chunks(x))
    raise out_of_range(bad, len(x), what, x.dtype)


def out_of_range(bad: int, n: int, what: str, dtype: np.dtype) -> DataError:
    return DataError(
        f"inputs out of range: {bad} of {n} rows of {what} hold values that are not finite "
        f"{dtype} numbers once standardised (far beyond the training data's); rescale them "
        "as the training data were"
    )


def chunks(x: np.ndarray) -> Iterator[np.ndarray]:
    return (x[i : i + CHUNK] for i in range(0, len(x), CHUNK))


def standardize_inplace(
    x: np.ndarray, mean_scaled: np.ndarray, std: np.ndarray, scale: float
) -> None:
    """``x`` holds raw values; make it ``(x/scale - mean)/std`` in place (given ``mean*scale``)."""
    np.subtract(x, mean_scaled.astype(x.dtype), out=x)
    np.multiply(x, (1.0 / (scale * std)).astype(x.dtype), out=x)
