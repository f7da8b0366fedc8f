"""Analytic gradients against PyTorch autograd on the same weights and batch (optional).

``mlplab gradcheck --torch`` builds the ``torch.nn.Sequential`` of the same layers (``Linear``
with the transposed weights, ``BatchNorm1d`` in training mode, ``ReLU``), computes the same
cost (mean cross-entropy + λ·ΣW² over the dense weights) in float64 and back-propagates it.
PyTorch is imported only here, when asked for; mlplab never needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplab.errors import MlplabError
from mlplab.gradcheck.check import GradcheckReport, analytic_gradients, compare
from mlplab.nn.layers import BatchNorm, Dense
from mlplab.nn.network import Network


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MlplabError("gradcheck --torch needs PyTorch: pip install torch") from None
    return torch


#: mlplab activation kind -> its torch module
_ACTIVATIONS: dict[str, Any] = {
    "relu": lambda torch, ly: torch.nn.ReLU(),
    "gelu": lambda torch, ly: torch.nn.GELU(approximate="tanh"),
    "leaky_relu": lambda torch, ly: torch.nn.LeakyReLU(negative_slope=ly.slope),
    "tanh": lambda torch, ly: torch.nn.Tanh(),
}


def torch_gradients(
    net: Network, X: np.ndarray, y: np.ndarray, lam: float
) -> dict[str, np.ndarray]:
    """Autograd's gradient of every parameter of ``net``, by mlplab name."""
    torch = _torch()
    modules, names = [], []
    for ly in net.layers:
        p = {
            k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for k, v in ly.params.items()
        }
        if isinstance(ly, Dense):
            lin = torch.nn.Linear(*ly.shape, bias="b" in p, dtype=torch.float64)
            lin.weight = torch.nn.Parameter(p["W"].detach().T.clone())
            if "b" in p:
                lin.bias = torch.nn.Parameter(p["b"].detach().clone())
            modules.append(lin)
            names.append((ly.name, lin, {"W": "weight", "b": "bias"}))
        elif isinstance(ly, BatchNorm):
            bn = torch.nn.BatchNorm1d(p["gamma"].shape[0], eps=ly.eps, dtype=torch.float64)
            bn.weight = torch.nn.Parameter(p["gamma"].detach().clone())
            bn.bias = torch.nn.Parameter(p["beta"].detach().clone())
            modules.append(bn)
            names.append((ly.name, bn, {"gamma": "weight", "beta": "bias"}))
        elif ly.kind in _ACTIVATIONS:
            modules.append(_ACTIVATIONS[ly.kind](torch, ly))
        else:
            raise MlplabError(
                f"gradcheck --torch does not handle {ly.kind} layers (use the "
                "numerical check for dropout)"
            )
    model = torch.nn.Sequential(*modules).train()
    logits = model(torch.tensor(X, dtype=torch.float64))
    cost = torch.nn.functional.cross_entropy(logits, torch.tensor(y, dtype=torch.int64))
    cost = cost + lam * sum(
        (m.weight**2).sum() for _, m, _ in names if isinstance(m, torch.nn.Linear)
    )
    cost.backward()
    out = {}
    for name, m, attrs in names:
        for ours, theirs in attrs.items():
            t = getattr(m, theirs)
            if t is not None:
                g = t.grad.numpy()
                out[f"{name}.{ours}"] = g.T if ours == "W" else g
    return out


def gradcheck_torch(net: Network, X: np.ndarray, y: np.ndarray, lam: float) -> GradcheckReport:
    """Relative errors of mlplab's analytic gradients against PyTorch autograd."""
    return compare(net, analytic_gradients(net, X, y, lam), torch_gradients(net, X, y, lam))
