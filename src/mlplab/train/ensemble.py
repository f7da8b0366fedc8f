"""Combining the predictions of several models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlplab.errors import ConfigError


def combine(probs: Sequence[np.ndarray], vote: str = "mean") -> np.ndarray:
    """Predicted labels ``(n,)`` from per-model probabilities, each ``(n, K)``.

    ``mean`` averages the probabilities; ``majority`` counts each model's argmax
    (ties go to the class with the larger mean probability).
    """
    if not probs:
        raise ConfigError("an ensemble needs at least one model")
    stack = np.stack(probs)
    mean = stack.mean(axis=0)
    if vote == "mean":
        return mean.argmax(axis=1)
    if vote == "majority":
        k = stack.shape[2]
        votes = np.zeros_like(mean)
        for p in stack:
            votes[np.arange(p.shape[0]), p.argmax(axis=1)] += 1
        return (votes + mean / (k + 1)).argmax(axis=1)
    raise ConfigError(f"vote must be 'mean' or 'majority', got {vote!r}")
