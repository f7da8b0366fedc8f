"""Numerical gradient check of a network's analytic gradients.

For every element ``theta_j`` of every parameter, the centred difference

    n_j = (c(theta + h e_j) - c(theta - h e_j)) / (2 h)

of the cost ``c`` is compared with the analytic gradient ``a_j`` by the relative error

    r_j = |a_j - n_j| / max(eps, |a_j| + |n_j|)

(DD2424's measure). Run it in float64. Batch norm is checked in training mode
(batch statistics); its running statistics are restored after the check. Dropout
masks are frozen so that every evaluation sees the same mask. An optional random
upstream term ``<R, logits>`` is added to the cost so that the gradient reaching
the network is not only the softmax's (a constant upstream gradient proves
nothing for batch norm).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mlplab.gradcheck.vectorized import (
    buffers_restored,
    freeze_dropout,
    numerical_gradients_vectorized,
)
from mlplab.nn.losses import cross_entropy, softmax_cross_entropy
from mlplab.nn.network import Network


@dataclass(frozen=True)
class ParamError:
    name: str
    shape: tuple[int, ...]
    max_rel_error: float
    mean_rel_error: float
    max_abs_error: float


@dataclass(frozen=True)
class GradcheckReport:
    parameters: list[ParamError]
    max_rel_error: float

    def to_dict(self) -> dict:
        return {
            "parameters": [{**asdict(p), "shape": list(p.shape)} for p in self.parameters],
            "max_rel_error": self.max_rel_error,
        }

    def table(self) -> str:
        """A plain-text table, one row per parameter."""
        rows = [
            f"{'parameter':<18}{'shape':>14}{'max rel err':>14}{'mean rel err':>14}"
            f"{'max abs err':>14}"
        ]
        for p in self.parameters:
            shape = "x".join(str(s) for s in p.shape)
            rows.append(
                f"{p.name:<18}{shape:>14}{p.max_rel_error:>14.3e}{p.mean_rel_error:>14.3e}"
                f"{p.max_abs_error:>14.3e}"
            )
        rows.append(f"{'all':<18}{'':>14}{self.max_rel_error:>14.3e}")
        return "\n".join(rows)


def relative_error(a: np.ndarray, n: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Elementwise ``|a - n| / max(eps, |a| + |n|)``."""
    return np.abs(a - n) / np.maximum(eps, np.abs(a) + np.abs(n))


class _Objective:
    """The scalar checked: ``cost + <R, logits>`` on a fixed batch, training mode."""

    def __init__(
        self, net: Network, X, y, lam: float, upstream: np.ndarray | None, label_smoothing: float
    ) -> None:
        self.net, self.X, self.y, self.lam = net, X, y, lam
        self.R = upstream
        self.ls = label_smoothing

    def value(self) -> float:
        logits = self.net.forward(self.X, train=True)
        v = cross_entropy(logits, self.y, self.ls) + self.net.l2_penalty(self.lam)
        if self.R is not None:
            v += float(np.vdot(self.R, logits))
        return v

    def analytic(self) -> dict[str, np.ndarray]:
        logits = self.net.forward(self.X, train=True)
        _, d = softmax_cross_entropy(logits, self.y, self.ls)
        if self.R is not None:
            d = d + self.R
        self.net.backward(d)
        grads = {k: g.copy() for k, g in self.net.grads().items()}
        params = self.net.params()
        for k in self.net.decay_names():
            grads[k] += 2.0 * self.lam * params[k]
        return grads


def numerical_gradients(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    lam: float = 0.0,
    *,
    h: float = 1e-5,
    upstream: np.ndarray | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, np.ndarray]:
    """Centred-difference gradients of every parameter, one element at a time (slow, exact
    reference)."""
    obj = _Objective(net, X, y, lam, upstream, label_smoothing)
    out: dict[str, np.ndarray] = {}
    with buffers_restored(net):
        freeze_dropout(net, X)
        for name, p in net.params().items():
            g = np.zeros_like(p)
            flat, gflat = p.reshape(-1), g.reshape(-1)
            for j in range(flat.size):
                old = flat[j]
                flat[j] = old + h
                fp = obj.value()
                flat[j] = old - h
                fm = obj.value()
                flat[j] = old
                gflat[j] = (fp - fm) / (2 * h)
            out[name] = g
    return out


def analytic_gradients(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    lam: float = 0.0,
    *,
    upstream: np.ndarray | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, np.ndarray]:
    """Back-propagated gradients of the same objective as :func:`numerical_gradients`."""
    with buffers_restored(net):
        freeze_dropout(net, X)
        return _Objective(net, X, y, lam, upstream, label_smoothing).analytic()


#: ``method`` name -> numerical gradients of the checked objective.
METHODS = {"loop": numerical_gradients, "vectorized": numerical_gradients_vectorized}


def gradcheck(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    lam: float = 0.0,
    *,
    h: float = 1e-5,
    eps: float = 1e-10,
    upstream: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    method: str = "loop",
) -> GradcheckReport:
    """Compare analytic and numerical gradients of every parameter of ``net``.

    ``X`` is ``(n, d_in)``, ``y`` is ``(n,)``; use a float64 network. ``method`` is
    ``"loop"`` (one perturbation at a time, the reference) or ``"vectorized"``
    (:mod:`mlplab.gradcheck_fast`, the same differences batched). Returns the max
    and mean relative error per parameter.
    """
    if net.dtype != np.float64:
        raise ValueError(f"run gradient checks in float64, the network is {net.dtype}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    num = METHODS[method](net, X, y, lam, h=h, upstream=upstream, label_smoothing=label_smoothing)
    ana = analytic_gradients(net, X, y, lam, upstream=upstream, label_smoothing=label_smoothing)
    return compare(net, ana, num, eps)


def compare(
    net: Network, ana: dict[str, np.ndarray], ref: dict[str, np.ndarray], eps: float = 1e-10
) -> GradcheckReport:
    """The report of analytic gradients ``ana`` against reference gradients ``ref``."""
    rows = []
    for name, p in net.params().items():
        r = relative_error(ana[name], ref[name], eps)
        err = float(np.abs(ana[name] - ref[name]).max())
        rows.append(ParamError(name, tuple(p.shape), float(r.max()), float(r.mean()), err))
    return GradcheckReport(rows, max(p.max_rel_error for p in rows))
