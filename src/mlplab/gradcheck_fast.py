"""Vectorised numerical gradient check: every parameter, all perturbations batched.

Perturbing one element of a layer's parameter by ``h`` adds ``h * v e_j^T`` to that
layer's output, where ``e_j`` is the element's output column and ``v`` an
``(n,)`` vector known in advance:

- dense ``W[i, j]``: ``v = x[:, i]`` (the layer's input column), ``b[j]``: ``v = 1``;
- batch-norm ``gamma[j]``: ``v = xhat[:, j]``, ``beta[j]``: ``v = 1``.

So the layer's output under a chunk of ``c`` perturbations is the stack
``out + h * V`` of shape ``(c, n, d)``, and only the layers *after* it are run,
batched over the chunk (batch norm normalises each perturbed batch over its own
``n`` samples, as in training). The L2 term changes by exactly
``lam * ((w + h)^2 - w^2)``. Each cost value is the same finite-difference
quantity as in :func:`mlplab.gradcheck.numerical_gradients`, computed with fewer
redundant operations; a test checks both agree.
"""

from __future__ import annotations

import numpy as np

from mlplab.gradcheck import _frozen
from mlplab.nn.layers import BatchNorm, Dense, Dropout, Layer, ReLU
from mlplab.nn.losses import log_softmax
from mlplab.nn.network import Network

CHUNK_ELEMENTS = 1 << 22  # ~32 MB of float64 per (c, n, d) stack


def _batched_forward(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Training-mode forward of ``x`` of shape ``(c, n, d)``, without side effects."""
    if isinstance(layer, Dense):
        out = x @ layer.params["W"]
        if "b" in layer.params:
            out += layer.params["b"]
        return out
    if isinstance(layer, ReLU):
        return np.maximum(x, 0)
    if isinstance(layer, BatchNorm):
        mu = x.mean(axis=-2, keepdims=True)
        xc = x - mu
        var = np.mean(xc * xc, axis=-2, keepdims=True)
        return xc / np.sqrt(var + layer.eps) * layer.params["gamma"] + layer.params["beta"]
    if isinstance(layer, Dropout):
        m = layer._scaled_mask
        return x if m is None else x * m
    raise TypeError(f"no batched forward for {type(layer).__name__}")


def _objective(
    logits: np.ndarray, y: np.ndarray, R: np.ndarray | None, label_smoothing: float
) -> np.ndarray:
    """Cross-entropy (+ ``<R, logits>``) of each stacked batch: ``(c, n, K) -> (c,)``."""
    logp = log_softmax(logits.reshape(-1, logits.shape[-1])).reshape(logits.shape)
    n = logits.shape[-2]
    nll = -logp[:, np.arange(n), y]
    if label_smoothing:
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=-1)
    val = nll.mean(axis=-1)
    if R is not None:
        val = val + np.einsum("cnk,nk->c", logits, R)
    return val


def _layer_io(net: Network, X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Input and output of every layer for the unperturbed batch (training mode)."""
    io = []
    h = X
    for layer in net.layers:
        out = _batched_forward(layer, h[None])[0]
        io.append((h, out))
        h = out
    return io


def _directions(layer: Layer, name: str, x_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every element of ``layer.params[name]``: its output column ``j`` and vector ``v``.

    Returns ``cols`` of shape ``(m,)`` and ``V`` of shape ``(m, n)``, elements in C order.
    """
    p = layer.params[name]
    n = x_in.shape[0]
    if isinstance(layer, Dense) and name == "W":
        d_in, d_out = p.shape
        cols = np.tile(np.arange(d_out), d_in)
        V = np.repeat(x_in.T, d_out, axis=0)
        return cols, V
    if name in ("b", "beta"):
        return np.arange(p.size), np.ones((p.size, n))
    if isinstance(layer, BatchNorm) and name == "gamma":
        mu = x_in.mean(axis=0)
        xc = x_in - mu
        xhat = xc / np.sqrt(np.mean(xc * xc, axis=0) + layer.eps)
        return np.arange(p.size), xhat.T.copy()
    raise TypeError(f"no perturbation rule for {type(layer).__name__}.{name}")


def numerical_gradients_vectorized(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    lam: float = 0.0,
    *,
    h: float = 1e-5,
    upstream: np.ndarray | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, np.ndarray]:
    """Centred-difference gradients of every parameter, perturbations batched in chunks."""
    _frozen(net, X)
    io = _layer_io(net, X)
    out: dict[str, np.ndarray] = {}
    decayed = set(net.decay_names())
    for li, layer in enumerate(net.layers):
        x_in, base = io[li]
        rest = net.layers[li + 1 :]
        for pname, p in layer.params.items():
            full = f"{layer.name}.{pname}"
            cols, V = _directions(layer, pname, x_in)
            m, n = V.shape
            g = np.empty(m)
            chunk = max(1, CHUNK_ELEMENTS // (n * base.shape[1]))
            for s in range(0, m, chunk):
                c_cols, c_V = cols[s : s + chunk], V[s : s + chunk]
                c = len(c_cols)
                vals = []
                for sign in (1.0, -1.0):
                    stack = np.broadcast_to(base, (c, *base.shape)).copy()
                    stack[np.arange(c), :, c_cols] += sign * h * c_V
                    for later in rest:
                        stack = _batched_forward(later, stack)
                    vals.append(_objective(stack, y, upstream, label_smoothing))
                g[s : s + c] = (vals[0] - vals[1]) / (2 * h)
            if lam and full in decayed:
                # lam * ((w + h)^2 - (w - h)^2) / (2h) = 2 lam w, exactly
                g += 2 * lam * p.reshape(-1)
            out[full] = g.reshape(p.shape)
    return out
