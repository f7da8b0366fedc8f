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
        for i in np.flatnonzero(shifts.any(axis=1)):
            _shift(img[i], int(shifts[i, 0]), int(shifts[i, 1]))
    if noise_std:
        x += (rng.standard_normal(x.shape) * noise_std).astype(x.dtype, copy=False)


def _shift(im: np.ndarray, dy: int, dx: int) -> None:
    """Translate one ``(C, H, W)`` image in place by ``(dy, dx)`` pixels, filling with 0."""
    src = im.copy()
    im[...] = 0
    h, w = im.shape[1:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    im[:, yd, xd] = src[:, ys, xs]
