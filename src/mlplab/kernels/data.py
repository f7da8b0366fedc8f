"""Mini-batch gathering and image augmentations as parallel Numba kernels (see
:mod:`mlplab.kernels`). They only move values (or write zeros), one image per iteration of
``prange``, so the results are the NumPy references' bits whatever the thread count.
The random draws stay with the callers, in the run's generator, in the same order.

Images are ``(n, C, H, W)`` views of the batch rows (:meth:`mlplab.images.ImageShape.planes`).
"""

from __future__ import annotations

import numba

#: compiled on first use, cached on disk, IEEE arithmetic as written, without the GIL
kernel = numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)


@kernel
def take_rows(X, idx, out):  # pragma: no cover - compiled
    """``out[r] = X[idx[r]]`` (``np.take(X, idx, axis=0, out=out)``), rows in parallel."""
    for r in numba.prange(idx.size):
        out[r, :] = X[idx[r], :]


@kernel
def flip(img, rows):  # pragma: no cover - compiled
    """Mirror images ``rows`` left-right in place (``img[rows] = img[rows, :, :, ::-1]``)."""
    _, c, h, w = img.shape
    for k in numba.prange(rows.size):
        i = rows[k]
        for ch in range(c):
            for r in range(h):
                for q in range(w // 2):
                    a = img[i, ch, r, q]
                    img[i, ch, r, q] = img[i, ch, r, w - 1 - q]
                    img[i, ch, r, w - 1 - q] = a


@kernel
def translate(img, shifts):  # pragma: no cover - compiled
    """Shift image ``i`` by ``shifts[i] = (dy, dx)`` in place: output pixel ``(r, q)`` is
    input pixel ``(r - dy, q - dx)``, or 0 outside the image (the reference:
    :func:`mlplab.data.augment.translate_batch`). Each image is copied once to a scratch
    array of its own."""
    n, c, h, w = img.shape
    for i in numba.prange(n):
        src = img[i].copy()
        dy, dx = shifts[i, 0], shifts[i, 1]
        for ch in range(c):
            for r in range(h):
                rr = r - dy
                for q in range(w):
                    qq = q - dx
                    if 0 <= rr < h and 0 <= qq < w:
                        img[i, ch, r, q] = src[ch, rr, qq]
                    else:
                        img[i, ch, r, q] = 0


@kernel
def crop(img, offsets, k):  # pragma: no cover - compiled
    """Crop each image in place from its copy padded by ``k`` pixels of reflection
    (``np.pad(mode="reflect")``, the edge not repeated): output pixel ``(r, q)`` of image
    ``i`` is padded pixel ``(r + dy, q + dx)``, ``(dy, dx) = offsets[i]``."""
    n, c, h, w = img.shape
    for i in numba.prange(n):
        src = img[i].copy()
        dy, dx = offsets[i, 0], offsets[i, 1]
        for ch in range(c):
            for r in range(h):
                rr = _reflect(r + dy - k, h)
                for q in range(w):
                    img[i, ch, r, q] = src[ch, rr, _reflect(q + dx - k, w)]


@numba.njit(cache=True)
def _reflect(i, n):  # pragma: no cover - compiled
    """Index ``i`` of a row of ``n`` reflected at its ends (``-1 -> 1``, ``n -> n - 2``)."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


@kernel
def cutout(img, top, left, s):  # pragma: no cover - compiled
    """Zero the ``s x s`` square at corner ``(top[i], left[i])`` of each image, clipped."""
    n, c, h, w = img.shape
    for i in numba.prange(n):
        r0, q0 = max(top[i], 0), max(left[i], 0)
        r1, q1 = min(top[i] + s, h), min(left[i] + s, w)
        for ch in range(c):
            for r in range(r0, r1):
                for q in range(q0, q1):
                    img[i, ch, r, q] = 0
