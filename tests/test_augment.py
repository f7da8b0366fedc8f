"""On-the-fly augmentation: flips, translations, noise."""

from __future__ import annotations

import numpy as np

from mlplab.data.augment import augment_batch, translate_batch


def _shift_one(im: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference: translate one (C, H, W) image by (dy, dx), zero fill, pixel by pixel."""
    out = np.zeros_like(im)
    _, h, w = im.shape
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[:, r, c] = im[:, r - dy, c - dx]
    return out


def test_translate_batch_matches_pixel_reference():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((12, 3, 32, 32)).astype(np.float32)
    shifts = rng.integers(-3, 4, size=(12, 2))
    shifts[0] = (0, 0)
    shifts[1] = (3, -3)
    expected = np.stack([_shift_one(img[i], *shifts[i]) for i in range(12)])
    translate_batch(img, shifts, 3)
    np.testing.assert_array_equal(img, expected)


def test_flip_mirrors_columns_of_every_plane():
    x = np.arange(2 * 3072, dtype=np.float64).reshape(2, 3072)
    orig = x.copy()

    class AlwaysFlip:
        def random(self, n):
            return np.zeros(n)

    augment_batch(x, AlwaysFlip(), flip=True)  # type: ignore[arg-type]
    np.testing.assert_array_equal(x.reshape(2, 3, 32, 32), orig.reshape(2, 3, 32, 32)[..., ::-1])


def test_augmentation_is_seeded_and_in_place():
    base = np.random.default_rng(1).standard_normal((50, 3072)).astype(np.float32)
    a, b = base.copy(), base.copy()
    augment_batch(a, np.random.default_rng(7), flip=True, translate=3, noise_std=0.1)
    augment_batch(b, np.random.default_rng(7), flip=True, translate=3, noise_std=0.1)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and not np.array_equal(a, base)
