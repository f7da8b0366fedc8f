"""ZCA whitening of standardised images, fitted on the training split.

Whitening decorrelates the ``d`` input dimensions: with the training covariance
``C = U diag(s) U^T`` of the standardised pixels, every row ``x`` becomes ``x W`` with

    W = U diag(1 / sqrt(s + eps)) U^T

(ZCA: the whitened image stays an image, with edges enhanced and smooth colour removed).
``eps`` damps the directions of small variance; it is on the scale of a standardised
pixel (variance 1), so ``eps = 0.1`` leaves the directions with variance well above 0.1
whitened and shrinks the noisier rest. Coates et al. (2011) and Lin et al. (2015) whiten
CIFAR-10 this way for models without convolutions.

For images, the covariance is averaged with its mirror image (``C`` and ``P C P`` for the
horizontal flip ``P`` of the image's own shape, :meth:`ImageShape.flip_permutation`), so
``W`` commutes with the flip: flipping a whitened image is exactly
whitening the flipped image, and the trainer's flips may act on whitened rows.
Translations are only approximately equivariant (the filters of ``W`` are local but the
image border is not), which is fine for an augmentation. Flat features have no mirror.

Sums are accumulated in float64 chunk by chunk; the matrix is returned in float64 and
stored in a saved model in the network's dtype, the one the run applied. The fit runs in a
helper thread (:func:`mlplab.machine.interruptible`): its eigendecomposition is one call of
seconds, and Ctrl-C or SIGTERM must not wait for it.
"""

from __future__ import annotations

import numpy as np

from mlplab.errors import ConfigError
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.machine import interruptible

_CHUNK = 2048

__all__ = ["apply_whitening", "fit_zca"]


#: The widest input whitened: the (d, d) float64 covariance and eigenvectors of 8192
#: features already take 1 GiB.
MAX_FEATURES = 8192


def fit_zca(
    x: np.ndarray, eps: float, *, mirror: ImageShape | np.ndarray | bool | None = None
) -> np.ndarray:
    """The ZCA matrix ``W`` ``(d, d)`` (float64, symmetric) of the rows of ``x``.

    ``x``: ``(n, d)`` standardised rows (mean 0 per column). ``mirror``: the covariance
    is made symmetric under the horizontal flip (module docstring) of an
    :class:`ImageShape` (its :meth:`~ImageShape.flip_permutation`), or under a given
    column permutation ``(d,)``; ``None``/``False``: no mirror; ``True``: CIFAR-10's
    32x32 RGB flip (the rows must have 3072 values).
    """
    if not (np.isfinite(eps) and eps > 0):
        raise ConfigError(f"the whitening eps must be a positive number, got {eps!r}")
    n, d = x.shape
    if n < 2:
        raise ConfigError("whitening needs at least 2 training samples")
    if d > MAX_FEATURES:
        raise ConfigError(f"whitening {d} features needs a {d}x{d} matrix; at most {MAX_FEATURES}")
    perm = _mirror_permutation(mirror, d)
    return interruptible(_fit, x, eps, perm)


def _fit(x: np.ndarray, eps: float, perm: np.ndarray | None) -> np.ndarray:
    """:func:`fit_zca` of checked arguments (``perm``: the mirror permutation, or None).
    Overflow is reported as one :class:`ConfigError`, without NumPy's warnings beside it."""
    n, d = x.shape
    cov = np.zeros((d, d), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, n, _CHUNK):
            c = np.asarray(x[i : i + _CHUNK], dtype=np.float64)
            cov += c.T @ c
        cov /= n
        if perm is not None:
            cov += cov[np.ix_(perm, perm)]
            cov /= 2
    if not np.isfinite(cov).all():
        raise ConfigError("cannot whiten: the training data hold NaN or inf")
    s, u = np.linalg.eigh(cov)
    del cov  # each (d, d) float64 matrix is 75 MB for CIFAR: from here on at most three live
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        w = u * (1.0 / np.sqrt(np.maximum(s, 0.0) + eps))
        w = w @ u.T
    del u
    if not np.isfinite(w).all():  # not with a recipe's eps (>= 1e-4); checked anyway
        raise ConfigError(f"the whitening matrix is not finite (eps {eps!r} too small)")
    w += w.T  # exactly symmetric: (w + w.T) / 2 (NumPy copies the overlapping w.T first)
    w /= 2
    return w


def _mirror_permutation(mirror: ImageShape | np.ndarray | bool | None, d: int):
    """The column permutation ``mirror`` stands for (``None``: no mirror), checked on ``d``."""
    if mirror is None or mirror is False:
        return None
    shape = CIFAR10_SHAPE if mirror is True else mirror
    if isinstance(shape, ImageShape):
        if shape.size != d:
            raise ConfigError(f"mirrored whitening needs rows of {shape} images, not {d} features")
        return shape.flip_permutation()
    perm = np.asarray(mirror)
    if perm.shape != (d,) or not np.array_equal(np.sort(perm), np.arange(d)):
        raise ConfigError(f"the mirror of whitening must be a permutation of {d} columns")
    return perm


def apply_whitening(x: np.ndarray, w: np.ndarray) -> None:
    """``x[:] = x @ w`` in place, a chunk of rows at a time (no copy of ``x``)."""
    w = np.asarray(w, dtype=x.dtype)
    buf = np.empty((min(_CHUNK, x.shape[0]), x.shape[1]), dtype=x.dtype)
    for i in range(0, x.shape[0], _CHUNK):
        j = min(i + _CHUNK, x.shape[0])
        np.matmul(x[i:j], w, out=buf[: j - i])
        x[i:j] = buf[: j - i]
