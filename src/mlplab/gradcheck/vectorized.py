"""Vectorised numerical gradient check: every parameter, all perturbations batched.

Perturbing one element of a layer's parameter changes only that layer's output;
the layers *after* it are then run once on a stack of ``c`` perturbed outputs of
shape ``(c, n, d)`` (batch norm normalises each perturbed batch over its own ``n``
samples, as in training). The perturbed outputs come from:

- a rule, for parameters on which the output depends linearly: moving element ``j``
  by ``h`` adds ``h * v e_j^T`` to the output, with ``e_j`` its output column and
  ``v`` an ``(n,)`` vector known in advance (dense ``W[i, j]``: ``v = x[:, i]``, the
  layer's input column; ``b[j]``: ``v = 1``; batch-norm ``gamma[j]``: ``v =
  xhat[:, j]``; ``beta[j]``: ``v = 1``);
- for any other layer, its own ``forward`` with the element moved (so a new layer
  that keeps the contract of :mod:`mlplab.nn.layers` is checked with no code here).

The stack goes through a later layer batched where a rule knows how (the four
built-in layers), else one batch at a time through its ``forward``. The L2 term
changes by exactly ``lam * ((w + h)^2 - w^2)``. Each cost value is the same
finite-difference quantity as in :func:`mlplab.gradcheck.numerical_gradients`,
computed with fewer redundant operations; a test checks both agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from mlplab.nn.layers import BatchNorm, Dense, Dropout, Layer, ReLU
from mlplab.nn.losses import log_softmax
from mlplab.nn.network import Network

CHUNK_ELEMENTS = 1 << 22  # ~32 MB of float64 per (c, n, d) stack


@contextlib.contextmanager
def buffers_restored(net: Network) -> Iterator[None]:
    """Run the block, then put back every buffer (batch-norm running statistics)."""
    saved = {k: v.copy() for k, v in net.buffers().items()}
    try:
        yield
    finally:
        for k, v in net.buffers().items():
            v[...] = saved[k]


def freeze_dropout(net: Network, X: np.ndarray) -> None:
    """Draw dropout masks once (from a fixed generator) and keep them."""
    for d in net.dropout_layers():
        d.freeze(True)
    if any(True for _ in net.dropout_layers()):
        net.forward(X, train=True, rng=np.random.default_rng(0))


def _bn_forward(layer: BatchNorm, x: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-2, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-2, keepdims=True)
    return xc / np.sqrt(var + layer.eps) * layer.params["gamma"] + layer.params["beta"]


def _dense_forward(layer: Dense, x: np.ndarray) -> np.ndarray:
    out = x @ layer.params["W"]
    return out + layer.params["b"] if "b" in layer.params else out


def _dropout_forward(layer: Dropout, x: np.ndarray) -> np.ndarray:
    m = layer._scaled_mask
    return x if m is None else x * m


#: layer class -> training-mode forward of a stack ``(c, n, d)``, without side effects.
BATCHED: dict[type, Callable[..., np.ndarray]] = {
    Dense: _dense_forward,
    ReLU: lambda layer, x: np.maximum(x, 0),
    BatchNorm: _bn_forward,
    Dropout: _dropout_forward,
}


def _batched_forward(layer: Layer, x: np.ndarray) -> np.ndarray:
    rule = BATCHED.get(type(layer))
    if rule is not None:
        return rule(layer, x)
    return np.stack([layer.forward(xi, train=True) for xi in x])


def _dense_w(layer: Layer, x_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d_in, d_out = layer.params["W"].shape
    return np.tile(np.arange(d_out), d_in), np.repeat(x_in.T, d_out, axis=0)


def _shift(layer: Layer, name: str, x_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = layer.params[name].size
    return np.arange(size), np.ones((size, x_in.shape[0]))


def _bn_gamma(layer: Layer, x_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xc = x_in - x_in.mean(axis=0)
    xhat = xc / np.sqrt(np.mean(xc * xc, axis=0) + layer.eps)  # type: ignore[attr-defined]
    return np.arange(xhat.shape[1]), xhat.T.copy()


#: (layer class, parameter) -> ``(cols, V)``: each element's output column and its
#: ``(n,)`` vector ``v`` (rows of ``V``, elements in C order).
DIRECTIONS: dict[tuple[type, str], Callable[[Layer, np.ndarray], tuple]] = {
    (Dense, "W"): _dense_w,
    (Dense, "b"): lambda layer, x: _shift(layer, "b", x),
    (BatchNorm, "gamma"): _bn_gamma,
    (BatchNorm, "beta"): lambda layer, x: _shift(layer, "beta", x),
}


def _perturbed_outputs(
    layer: Layer, name: str, x_in: np.ndarray, base: np.ndarray
) -> Callable[[np.ndarray, float], np.ndarray]:
    """``shifted(idx, delta)``: the layer's outputs ``(len(idx), n, d)``, one per element
    ``idx[i]`` of ``layer.params[name]`` moved by ``delta``."""
    rule = DIRECTIONS.get((type(layer), name))
    if rule is not None:
        cols, V = rule(layer, x_in)

        def by_rule(idx: np.ndarray, delta: float) -> np.ndarray:
            stack = np.broadcast_to(base, (len(idx), *base.shape)).copy()
            stack[np.arange(len(idx)), :, cols[idx]] += delta * V[idx]
            return stack

        return by_rule
    flat = layer.params[name].reshape(-1)  # a view: params are contiguous

    def by_forward(idx: np.ndarray, delta: float) -> np.ndarray:
        outs = []
        for j in idx:
            old = flat[j]
            flat[j] = old + delta
            try:
                outs.append(layer.forward(x_in, train=True))
            finally:
                flat[j] = old
        return np.stack(outs)

    return by_forward


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
    """Centred-difference gradients of every parameter, perturbations batched in chunks.

    Layers' buffers (batch-norm running statistics) are restored afterwards."""
    with buffers_restored(net):
        freeze_dropout(net, X)
        return _gradients(net, X, y, lam, h, upstream, label_smoothing)


def _gradients(net, X, y, lam, h, upstream, label_smoothing) -> dict[str, np.ndarray]:
    io = _layer_io(net, X)
    out: dict[str, np.ndarray] = {}
    decayed = set(net.decay_names())
    for li, layer in enumerate(net.layers):
        x_in, base = io[li]
        rest = net.layers[li + 1 :]
        for pname, p in layer.params.items():
            full = f"{layer.name}.{pname}"
            shifted = _perturbed_outputs(layer, pname, x_in, base)
            g = np.empty(p.size)
            chunk = max(1, CHUNK_ELEMENTS // base.size)
            for s in range(0, p.size, chunk):
                idx = np.arange(s, min(s + chunk, p.size))
                vals = []
                for sign in (1.0, -1.0):
                    stack = shifted(idx, sign * h)
                    for later in rest:
                        stack = _batched_forward(later, stack)
                    vals.append(_objective(stack, y, upstream, label_smoothing))
                g[idx] = (vals[0] - vals[1]) / (2 * h)
            if lam and full in decayed:
                # lam * ((w + h)^2 - (w - h)^2) / (2h) = 2 lam w, exactly
                g += 2 * lam * p.reshape(-1)
            out[full] = g.reshape(p.shape)
    return out
