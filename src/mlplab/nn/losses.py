"""Softmax cross-entropy, fused with its gradient.

For logits ``S`` of shape ``(n, K)`` and integer labels ``y`` of shape ``(n,)``:

    P = softmax(S)              (row-wise, computed stably by subtracting the row max)
    loss = -1/n * sum_i log P[i, y_i]
    dL/dS = (P - Y) / n         with Y the one-hot labels

With label smoothing ``eps`` the target is ``(1 - eps) * Y + eps / K``.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an ``(n, K)`` array, numerically stable."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of an ``(n, K)`` array."""
    z = logits - logits.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def cross_entropy(logits: np.ndarray, y: np.ndarray, label_smoothing: float = 0.0) -> float:
    """Mean cross-entropy of ``(n, K)`` logits against ``(n,)`` labels (no gradient)."""
    logp = log_softmax(logits)
    n = logits.shape[0]
    nll = -logp[np.arange(n), y]
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
    return float(nll.mean())


def softmax_cross_entropy(
    logits: np.ndarray, y: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Return ``(loss, dlogits)``: the mean cross-entropy and its gradient ``(P - T) / n``."""
    n, k = logits.shape
    z = logits - logits.max(axis=1, keepdims=True)
    grad = np.exp(z)
    total = grad.sum(axis=1, keepdims=True)
    grad /= total  # softmax probabilities
    rows = np.arange(n)
    log_total = np.log(total[:, 0])
    nll = log_total - z[rows, y]  # -log p_y
    if label_smoothing:  # mean over classes of -log p_j
        nll = (1.0 - label_smoothing) * nll + label_smoothing * (log_total - z.mean(axis=1))
    loss = float(nll.mean())
    if label_smoothing:
        grad -= label_smoothing / k
        grad[rows, y] -= 1.0 - label_smoothing
    else:
        grad[rows, y] -= 1.0
    grad /= n
    return loss, grad
