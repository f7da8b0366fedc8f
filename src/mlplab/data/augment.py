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


def flip_permutation(d: int, channels: int = 3) -> np.ndarray | None:
    """Column order of the horizontally flipped image (``x[:, perm]`` mirrors every row),
    or None when ``d`` is not ``channels`` planes of 32x32."""
    if d != channels * SIDE * SIDE:
        return None
    return np.arange(d).reshape(channels, SIDE, SIDE)[:, :, ::-1].ravel()


def translate_batch(img: np.ndarray, shifts: np.ndarray, k: int) -> None:
    """Translate each image ``img[i]`` (``(n, C, H, W)``, in place) by ``shifts[i] = (dy, dx)``.

    Output pixel ``(r, c)`` of image ``i`` is input pixel ``(r - dy, c - dx)``, or 0 where
    that falls outside the image: the window at ``(k - dy, k - dx)`` of a zero-padded copy
    of the batch. The images with the same shift (at most ``(2k + 1)^2`` groups) are copied
    together, one slice each.
    """
    n, c, h, w = img.shape
    padded = np.zeros((n, c, h + 2 * k, w + 2 * k), dtype=img.dtype)
    padded[:, :, k : k + h, k : k + w] = img
    keys = (shifts[:, 0] + k) * (2 * k + 1) + (shifts[:, 1] + k)
    order = np.argsort(keys, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
        dy, dx = shifts[rows[0]]
        img[rows] = padded[rows, :, k - dy : k - dy + h, k - dx : k - dx + w]
