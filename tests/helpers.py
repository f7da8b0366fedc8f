"""Small synthetic data sets shared by the tests."""

from __future__ import annotations

import numpy as np

from mlplab.data import RawDataset


def synthetic_raw(
    n_train: int = 600, n_test: int = 200, k: int = 10, seed: int = 0, noise: float = 40.0
) -> RawDataset:
    """A learnable CIFAR-shaped set: one random mean image per class plus noise."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(60, 190, (k, 3072))

    def draw(n):
        y = rng.integers(0, k, n)
        x = np.clip(means[y] + rng.normal(0, noise, (n, 3072)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    xt, yt = draw(n_train)
    xs, ys = draw(n_test)
    return RawDataset(
        x_train=xt,
        y_train=yt,
        x_test=xs,
        y_test=ys,
        classes=tuple(f"c{i}" for i in range(k)),
        train_batch=None,
        source="synthetic",
    )
