"""Optimisers: ``step(params, grads, lr)`` updates the arrays in ``params`` in place.

State (momentum buffers, Adam moments) is keyed by parameter name, so it can be
saved and restored with the model. Formulas follow ``torch.optim`` exactly, so
that the same start gives the same steps:

- SGD: ``v = mu * v + g`` (``v = g`` at the first step); ``p -= lr * v``, or with
  Nesterov ``p -= lr * (g + mu * v)``. ``momentum = 0`` is plain ``p -= lr * g``.
- Adam: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
  ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with bias corrections ``1 - b^t``.
- ``decoupled_weight_decay`` (AdamW/SGDW): ``p *= 1 - lr * wd`` before the step,
  on the parameters named in ``decay_names`` only.

The course's L2 term (``2 lam W`` in the gradient) is not the optimiser's business:
it is already in ``grads`` (see :meth:`mlplab.nn.network.Network.loss_grad`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from mlplab.errors import ConfigError


class Optimizer:
    """Base class; subclasses implement :meth:`_update`."""

    name = "optimizer"

    def __init__(self, decoupled_weight_decay: float = 0.0, decay_names: Iterable[str] = ()):
        if not (math.isfinite(decoupled_weight_decay) and decoupled_weight_decay >= 0):
            raise ConfigError(
                f"decoupled_weight_decay must be >= 0, got {decoupled_weight_decay!r}"
            )
        self.wd = float(decoupled_weight_decay)
        self.decay_names = set(decay_names)
        self.state: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Apply one update with learning rate ``lr`` to every array of ``params``."""
        self.t += 1
        for name, p in params.items():
            if self.wd and name in self.decay_names:
                p *= 1.0 - lr * self.wd
            self._update(name, p, grads[name], lr)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that make up the optimiser's state (for checkpoints)."""
        return {**{k: v.copy() for k, v in self.state.items()}, "__t__": np.array(self.t)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state.get("__t__", 0))
        self.state = {k: np.array(v) for k, v in state.items() if k != "__t__"}


class SGD(Optimizer):
    """Mini-batch gradient descent, optionally with (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, momentum: float = 0.0, nesterov: bool = False, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        if self.momentum == 0.0:
            p -= lr * g
            return
        v = self.state.get(name)
        if v is None:
            v = self.state[name] = g.copy()
        else:
            v *= self.momentum
            v += g
        if self.nesterov:
            p -= lr * (g + self.momentum * v)
        else:
            p -= lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015); with ``decoupled_weight_decay`` it is AdamW."""

    name = "adam"

    def __init__(
        self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw: object
    ) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        for nm, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ConfigError(f"{nm} must be in [0, 1), got {b!r}")
        if not eps > 0:
            raise ConfigError(f"eps must be positive, got {eps!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        m = self.state.setdefault(f"{name}.m", np.zeros_like(p))
        v = self.state.setdefault(f"{name}.v", np.zeros_like(p))
        b1, b2 = self.beta1, self.beta2
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        c1 = 1 - b1**self.t
        c2 = 1 - b2**self.t
        denom = np.sqrt(v / c2)
        denom += self.eps
        p -= (lr / c1) * m / denom


#: name -> constructor from (momentum, decoupled-weight-decay keywords).
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": lambda momentum, **kw: SGD(**kw),
    "momentum": lambda momentum, **kw: SGD(momentum=momentum, **kw),
    "nesterov": lambda momentum, **kw: SGD(momentum=momentum, nesterov=True, **kw),
    "adam": lambda momentum, **kw: Adam(**kw),
    "adamw": lambda momentum, **kw: Adam(**kw),  # Adam; its weight decay is always decoupled
}


def make_optimizer(
    name: str,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    decay_names: Iterable[str] = (),
) -> Optimizer:
    """Optimiser by name (see :data:`OPTIMIZERS`).

    ``weight_decay`` is decoupled (``p *= 1 - lr * wd``) and applies to ``decay_names``.
    """
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    kw = {"decoupled_weight_decay": weight_decay, "decay_names": decay_names}
    return OPTIMIZERS[name](momentum, **kw)
