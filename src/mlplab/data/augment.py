"""On-the-fly, in-place augmentation of a mini-batch of CIFAR images.

Rows of ``x`` (shape ``(n, 3072)``) are images in the official layout: three
32x32 planes (R, G, B), viewed here as ``(n, 3, 32, 32)``. All randomness comes
from the run's generator. Nothing of the size of the training set is copied:
the work is done in the batch buffer the trainer already owns.
"""

from __future__ import annotations

import numpy as np

SIDE = 32


def augment_batch(
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    flip: bool = False,
    translate: int = 0,
    noise_std: float = 0.0,
    channels: int = 3,
) -> None:
    """Augment ``x`` in place: random horizontal flips (p = 1/2), random
    translations by up to ``translate`` pixels in each direction (vacated pixels
    are 0, the mean after standardisation), then additive N(0, noise_std^2) noise."""
    n = x.shape[0]
    img = x.reshape(n, channels, SIDE, SIDE)
    if flip:
        rows = np.flatnonzero(rng.random(n) < 0.5)
        if rows.size:
            img[rows] = img[rows, :, :, ::-1]
    if translate:
        shifts = rng.integers(-translate, translate + 1, size=(n, 2))
        translate_batch(img, shifts, translate)
    if noise_std:
        x += (rng.standard_normal(x.shape) * noise_std).astype(x.dtype, copy=False)


def translate_batch(img: np.ndarray, shifts: np.ndarray, k: int) -> None:
    """Translate each image ``img[i]`` (``(n, C, H, W)``, in place) by ``shifts[i] = (dy, dx)``.

    One gather from a zero-padded copy of the batch: output pixel ``(r, c)`` of image
    ``i`` is padded pixel ``(r + k - dy, c + k - dx)``, i.e. input pixel ``(r - dy, c - dx)``
    or 0 where that falls outside the image.
    """
    n, _, h, w = img.shape
    padded = np.zeros((n, img.shape[1], h + 2 * k, w + 2 * k), dtype=img.dtype)
    padded[:, :, k : k + h, k : k + w] = img
    rows = (k - shifts[:, 0])[:, None] + np.arange(h)  # (n, H)
    cols = (k - shifts[:, 1])[:, None] + np.arange(w)  # (n, W)
    i = np.arange(n)[:, None, None, None]
    c = np.arange(img.shape[1])[None, :, None, None]
    img[...] = padded[i, c, rows[:, None, :, None], cols[:, None, None, :]]
