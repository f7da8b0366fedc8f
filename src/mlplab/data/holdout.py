"""The test part of a data set that comes without one: a fixed, seeded 20 % of every class.

An image folder with ``train/`` only, or an ``.npz`` without ``x_test``/``y_test``, gets its
test part here. From each class of ``n`` samples, ``round(n / 5)`` are held out (at least
one when ``n >= 2``; a class of one sample stays in training), drawn by a generator seeded
with :data:`HOLDOUT_SEED` and the class's label alone. The draw is independent of any
recipe's seed and of the other classes, so every run, search and report of the same files
sees the same test set. Both parts keep the samples' original order.
"""

from __future__ import annotations

import numpy as np

from mlplab.errors import DataError

#: Seed of the held-out draw (with the class label); never the recipe's seed.
HOLDOUT_SEED = 20_230_423
#: The share of each class held out as test samples.
HOLDOUT_FRACTION = 0.2
#: How ``RawDataset.source`` says that the test part was held out.
HOLDOUT_NOTE = "test part: a seeded 20 % of each class held out"

__all__ = ["HOLDOUT_FRACTION", "HOLDOUT_NOTE", "HOLDOUT_SEED", "held_out_count", "split_held_out"]


def held_out_count(n: int) -> int:
    """Test samples taken from a class of ``n``: 20 % rounded, at least 1 when ``n >= 2``."""
    if n < 2:
        return 0
    return max(1, int(np.floor(n * HOLDOUT_FRACTION + 0.5)))


def split_held_out(y: np.ndarray, n_classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` (sorted int64) of labels ``y`` ``(n,)`` in ``[0, n_classes)``.

    Raises :class:`DataError` (naming ``what``) when no class has two samples, so that no
    test sample could be held out.
    """
    y = np.asarray(y)
    test_parts = []
    for k in range(n_classes):
        idx = np.flatnonzero(y == k)
        m = held_out_count(len(idx))
        if m:
            rng = np.random.default_rng([HOLDOUT_SEED, k])
            test_parts.append(idx[rng.choice(len(idx), size=m, replace=False)])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.empty(0, np.int64)
    if not test.size:
        raise DataError(
            f"{what}: no test part given and none can be held out (every class has fewer "
            "than 2 samples)"
        )
    keep = np.ones(len(y), dtype=bool)
    keep[test] = False
    return np.flatnonzero(keep).astype(np.int64), test.astype(np.int64)
