"""Elementwise activations: ``out = f(x)``, ``dx = dout * f'(x)``.

An activation is a :class:`~mlplab.nn.layers.Layer` without parameters. Subclass
:class:`Activation`, write ``f`` and ``df`` (the derivative, given the input and the
output), name its ``kind`` and its recipe ``options``, and add one line to
:data:`ACTIVATIONS`: recipes (``activation = "gelu"``, or ``"gelu"`` in a ``layers``
list), model files, training and the gradient checks then handle it.

``relu`` is :class:`mlplab.nn.layers.ReLU` (it keeps only its output, as the course's does).
PyTorch equivalents: ``nn.ReLU``, ``nn.GELU(approximate="tanh")``,
``nn.LeakyReLU(negative_slope)``, ``nn.Tanh``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from mlplab.nn.layers import Layer, ReLU
from mlplab.options import Option, Real, check_options


class Activation(Layer):
    """``out = f(x)``; ``backward(dout) = dout * df(x, out)``. Options are attributes of the
    same names, and the layer's spec holds them."""

    kind = "activation"

    def __init__(self, **opts: Any) -> None:
        super().__init__()
        for name, value in check_options(self.kind, self.options, opts).items():
            setattr(self, name, value)
        self._x: np.ndarray | None = None
        self._out: np.ndarray | None = None

    def f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def df(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``f'(x)`` (``out`` is ``f(x)``, for derivatives written through the output)."""
        raise NotImplementedError

    def forward(
        self, x: np.ndarray, train: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        out = self.f(x)
        if train:
            self._x, self._out = x, out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._x is None or self._out is None:
            raise RuntimeError(f"{self.kind}.backward called before a training forward pass")
        return dout * self.df(self._x, self._out)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, **{name: getattr(self, name) for name in self.options}}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], dtype: np.dtype | type) -> Layer:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


class GELU(Activation):
    """``0.5 x (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x^3)`` (Hendrycks & Gimpel
    2016, the tanh form; PyTorch ``GELU(approximate="tanh")``).
    ``f'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``, ``t = tanh(u)``.
    """

    kind = "gelu"
    C = math.sqrt(2.0 / math.pi)
    A = 0.044715

    def _t(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(self.C * (x + self.A * x * x * x))

    def f(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1.0 + self._t(x))

    def df(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        t = self._t(x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * self.C * (1.0 + 3 * self.A * x * x)


class LeakyReLU(Activation):
    """``x`` where ``x > 0``, else ``slope * x`` (Maas et al. 2013); ``f' = 1`` or ``slope``."""

    kind = "leaky_relu"
    options: ClassVar[dict[str, Option]] = {
        "slope": Real(0.01, 0.0, 1.0, high_open=True, help="slope of the negative part"),
    }
    primary = "slope"
    slope: float

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x, x * x.dtype.type(self.slope))

    def df(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x.dtype.type(1), x.dtype.type(self.slope))


class Tanh(Activation):
    """``tanh(x)``; ``f' = 1 - tanh(x)^2``."""

    kind = "tanh"

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def df(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return 1.0 - out * out


#: name -> activation class: the recipe field ``activation`` and ``layers`` lists name them.
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "gelu": GELU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
}
