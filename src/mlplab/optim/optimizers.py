"""Optimisers: they own the whole update of a training step, L2 term included.

The trainer runs the backward pass with the ``scale`` the optimiser asks for
(:meth:`Optimizer.grad_scale`), so that ``grads`` hold ``scale * dL/dp`` of the data
loss, then calls :meth:`Optimizer.step`, and does nothing else to the parameters.
The formulas follow ``torch.optim`` exactly (the tests compare steps), with the
course's L2 term ``2 * l2 * W`` (``cost = loss + l2 * sum ||W||^2``) added to the
gradient of the parameters in ``decay_names`` (PyTorch's ``weight_decay = 2 * l2``):

- SGD: ``g = dL/dp + 2 l2 p``; ``v = mu * v + g`` (``v = g`` at the first step);
  ``p -= lr * v``, or with Nesterov ``p -= lr * (g + mu * v)``. ``momentum = 0`` is
  plain ``p -= lr * g``.
- Adam: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
  ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with bias corrections ``1 - b^t``.
- ``decoupled_weight_decay`` (AdamW / SGDW): ``p *= 1 - lr * wd`` before the step,
  on the parameters in ``decay_names``; AdamW is Adam with it.

Every update works in place, on the arrays themselves and two scratch buffers, reading
the gradient without writing it: no temporary array per step, and cache-sized blocks of
each parameter at a time, so that each array crosses the memory bus once per step. Each
in-place operation below is the same floating-point operation as the textbook
expression in the comment beside it, so the results are the same bits.

That NumPy code is the reference. A large parameter (from 16 Ki elements with more than one
thread, 256 Ki with one: :func:`mlplab.kernels.wanted`) is updated instead by a compiled kernel
(:mod:`mlplab.kernels`) that does the same operations on each element in one vectorised
pass (split among the run's threads for the largest arrays): the same bits, one trip over
memory, no Python loop over blocks. An optimiser without a kernel (``_fused`` returns
False) always takes the NumPy path.

Plain SGD (the course's optimiser) asks for ``scale = -lr``: the weight-gradient
GEMM then writes ``-lr * dL/dW``, the update itself, and the step is one in-place
scaling ``W *= 1 - 2 lr l2`` and one addition: two passes over each weight matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from mlplab import kernels
from mlplab.errors import ConfigError
from mlplab.options import Option, Real, check_options

#: elements of a parameter updated together: the few arrays of one block (parameter,
#: gradient, state, scratch; 256 KiB each in float32) stay in the CPU's cache
BLOCK = 1 << 16


class Optimizer:
    """Base class; subclasses implement :meth:`_update` (and may ask for a ``grad_scale``).

    ``options`` declares the keyword arguments a recipe may set (:mod:`mlplab.options`):
    ``--set optimizer=adam --set beta2=0.99`` reaches ``Adam(beta2=0.99)``.
    """

    name = "optimizer"
    options: ClassVar[dict[str, Option]] = {}

    def __init__(
        self,
        *,
        l2: float = 0.0,
        decoupled_weight_decay: float = 0.0,
        decay_names: Iterable[str] = (),
    ) -> None:
        for what, value in (("l2 (lam)", l2), ("decoupled_weight_decay", decoupled_weight_decay)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{what} must be >= 0, got {value!r}")
        self.l2 = float(l2)
        self.wd = float(decoupled_weight_decay)
        self.decay_names = set(decay_names)
        self.state: dict[str, np.ndarray] = {}
        self.t = 0
        self._buffers: list[np.ndarray] = []  # the two scratch arrays (see _scratch)

    def grad_scale(self, lr: float) -> float:
        """The ``scale`` of the gradients this optimiser wants from the backward pass."""
        return 1.0

    #: names of the state arrays kept per parameter (keys ``<param><slot>`` in the state)
    slots: tuple[str, ...] = ()

    def step(
        self,
        params: dict[str, np.ndarray],
        grads: dict[str, np.ndarray],
        lr: float,
        *,
        scale: float = 1.0,
    ) -> None:
        """Update every array of ``params`` in place with learning rate ``lr``.

        ``grads[k]`` hold ``scale * dL/dparams[k]`` of the data loss (no L2 term), with
        ``scale`` 1 (plain gradients) or ``self.grad_scale(lr)``; they are read, never
        written. A large parameter is updated in blocks of :data:`BLOCK` elements, so that
        the several in-place passes of an update run on arrays that stay in the CPU cache;
        every operation is elementwise, so this changes no number.
        """
        if scale != 1.0 and scale != self.grad_scale(lr):
            raise ValueError(
                f"grads must hold the gradients times 1 or times grad_scale(lr) = "
                f"{self.grad_scale(lr)!r}, not times {scale!r}"
            )
        self.t += 1
        for name, p in params.items():
            g = grads[name]
            l2 = self.l2 if name in self.decay_names else 0.0
            fresh = bool(self.slots) and f"{name}{self.slots[0]}" not in self.state
            if fresh:
                for slot in self.slots:
                    self.state[f"{name}{slot}"] = np.zeros(p.shape, p.dtype)
            arrays = [p, g, *(self.state[f"{name}{slot}"] for slot in self.slots)]
            if not all(a.flags.c_contiguous for a in arrays):  # no flat view: in one piece
                self._update(name, p, g, arrays[2:], lr=lr, l2=l2, fresh=fresh, scale=scale)
                continue
            flat = [a.reshape(-1) for a in arrays]
            same = all(a.dtype == p.dtype for a in arrays)  # NumPy's casts are not the kernels'
            if (
                same
                and kernels.wanted(p.size)
                and self._fused(
                    name, flat[0], flat[1], flat[2:], lr=lr, l2=l2, fresh=fresh, scale=scale
                )
            ):
                continue
            for start in range(0, p.size, BLOCK):
                pb, gb, *state = (a[start : start + BLOCK] for a in flat)
                self._update(name, pb, gb, state, lr=lr, l2=l2, fresh=fresh, scale=scale)

    def _update(
        self,
        name: str,
        p: np.ndarray,
        g: np.ndarray,
        state: list[np.ndarray],
        *,
        lr: float,
        l2: float,
        fresh: bool,
        scale: float,
    ) -> None:
        """Update one block ``p`` with its gradient block ``g`` (times ``scale``) and state
        blocks ``state`` (one per :attr:`slots`; ``fresh``: created for this step, zeros)."""
        raise NotImplementedError

    def _fused(
        self,
        name: str,
        p: np.ndarray,
        g: np.ndarray,
        state: list[np.ndarray],
        *,
        lr: float,
        l2: float,
        fresh: bool,
        scale: float,
    ) -> bool:
        """The whole update of the flat arrays in one parallel pass (:mod:`mlplab.kernels`),
        the same bits as :meth:`_update`; False where this optimiser has no such kernel."""
        return False

    # -- in-place building blocks ---------------------------------------------------------------
    def _scratch(self, like: np.ndarray, k: int = 0) -> np.ndarray:
        """Reusable array ``k`` (0 or 1) of ``like``'s shape and dtype."""
        bufs = self._buffers
        if not bufs or bufs[0].size < like.size or bufs[0].dtype != like.dtype:
            bufs = self._buffers = [np.empty(like.size, like.dtype) for _ in range(2)]
        return bufs[k][: like.size].reshape(like.shape)

    def _with_l2(self, p: np.ndarray, g: np.ndarray, l2: float) -> np.ndarray:
        """``g + 2 l2 p`` (in scratch array 0), or ``g`` itself without L2; ``g`` is only read,
        so its block is never written back to memory."""
        if not l2:
            return g
        s = self._scratch(p)
        np.multiply(p, 2.0 * l2, out=s)
        s += g  # s = g + (2 l2) p
        return s

    def _decay(self, name: str, p: np.ndarray, lr: float) -> None:
        if self.wd and name in self.decay_names:
            p *= 1.0 - lr * self.wd

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that make up the optimiser's state (for checkpoints)."""
        return {**{k: v.copy() for k, v in self.state.items()}, "__t__": np.array(self.t)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state.get("__t__", 0))
        self.state = {k: np.array(v) for k, v in state.items() if k != "__t__"}


class SGD(Optimizer):
    """Mini-batch gradient descent, optionally with (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, momentum: float = 0.0, nesterov: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slots = ("",) if momentum else ()  # the velocity v, under the parameter's name

    def grad_scale(self, lr: float) -> float:
        # plain SGD takes the update straight from the GEMM (the decoupled decay would have
        # to be applied before the L2 term is folded in, so it takes the general path)
        return -lr if self.momentum == 0.0 and self.wd == 0.0 else 1.0

    def _fused(self, name, p, g, state, *, lr, l2, fresh, scale):
        if scale != 1.0:
            kernels.sgd_scaled(p, g, 1.0 - 2.0 * lr * l2 if l2 else None)
            return True
        kernels.sgd(
            p,
            g,
            state[0] if state else None,
            lr=lr,
            l2=l2,
            decay=1.0 - lr * self.wd if self.wd and name in self.decay_names else None,
            momentum=self.momentum,
            nesterov=self.nesterov,
            fresh=fresh,
        )
        return True

    def _update(self, name, p, g, state, *, lr, l2, fresh, scale):
        if scale != 1.0:  # g = -lr dL/dp (grad_scale)
            if l2:
                p *= 1.0 - 2.0 * lr * l2
            p += g
            return
        g = self._with_l2(p, g, l2)
        self._decay(name, p, lr)
        mu, s = self.momentum, self._scratch(p, 1)
        if mu == 0.0:
            np.multiply(g, lr, out=s)
            p -= s  # p = p - lr g
            return
        (v,) = state
        if fresh:
            v[...] = g  # v = g at the first step
        else:
            v *= mu
            v += g  # v = mu v + g
        if self.nesterov:
            np.multiply(v, mu, out=s)
            s += g
            s *= lr
            p -= s  # p = p - lr (g + mu v)
        else:
            np.multiply(v, lr, out=s)
            p -= s  # p = p - lr v


_MOMENTUM = {"momentum": Real(0.9, 0.0, 1.0, high_open=True, help="mu")}


class Momentum(SGD):
    """SGD with heavy-ball momentum ``mu`` (``torch.optim.SGD(momentum=mu)``)."""

    name = "momentum"
    options: ClassVar[dict[str, Option]] = _MOMENTUM

    def __init__(self, momentum: float = 0.9, **kw: Any) -> None:
        super().__init__(momentum=momentum, **kw)


class Nesterov(SGD):
    """SGD with Nesterov momentum ``mu`` (``torch.optim.SGD(momentum=mu, nesterov=True)``)."""

    name = "nesterov"
    options: ClassVar[dict[str, Option]] = {
        "momentum": Real(0.9, 0.0, 1.0, low_open=True, high_open=True, help="mu")
    }

    def __init__(self, momentum: float = 0.9, **kw: Any) -> None:
        super().__init__(momentum=momentum, nesterov=True, **kw)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015); with ``decoupled_weight_decay`` it is AdamW."""

    name = "adam"
    options: ClassVar[dict[str, Option]] = {
        "beta1": Real(0.9, 0.0, 1.0, high_open=True, help="decay of the first moment"),
        "beta2": Real(0.999, 0.0, 1.0, high_open=True, help="decay of the second moment"),
        "eps": Real(1e-8, 0.0, low_open=True, help="added to the root of the second moment"),
    }

    def __init__(
        self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw: Any
    ) -> None:
        super().__init__(**kw)
        for nm, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ConfigError(f"{nm} must be in [0, 1), got {b!r}")
        if not eps > 0:
            raise ConfigError(f"eps must be positive, got {eps!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    slots = (".m", ".v")

    def _fused(self, name, p, g, state, *, lr, l2, fresh, scale):
        m, v = state
        kernels.adam(
            p,
            g,
            m,
            v,
            lr=lr,
            l2=l2,
            decay=1.0 - lr * self.wd if self.wd and name in self.decay_names else None,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            t=self.t,
        )
        return True

    def _update(self, name, p, g, state, *, lr, l2, fresh, scale):
        g = self._with_l2(p, g, l2)
        self._decay(name, p, lr)
        m, v = state
        b1, b2 = self.beta1, self.beta2
        s, t = self._scratch(p, 1), self._scratch(p, 0)  # t may hold g: last used below
        np.multiply(g, 1 - b1, out=s)
        m *= b1
        m += s  # m = b1 m + (1 - b1) g
        np.multiply(g, g, out=s)
        s *= 1 - b2
        v *= b2
        v += s  # v = b2 v + (1 - b2) g^2
        c1 = 1 - b1**self.t
        c2 = 1 - b2**self.t
        np.divide(v, c2, out=s)
        np.sqrt(s, out=s)
        s += self.eps  # s = sqrt(v / c2) + eps
        np.multiply(m, lr / c1, out=t)
        t /= s
        p -= t  # p = p - (lr / c1) m / s


#: name -> optimiser class; ``Config.validate`` and ``--set optimizer=`` look names up here.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adam": Adam,  # AdamW with weight_decay > 0
}


def make_optimizer(
    name: str,
    *,
    l2: float = 0.0,
    weight_decay: float = 0.0,
    decay_names: Iterable[str] = (),
    **options: Any,
) -> Optimizer:
    """Optimiser by name (see :data:`OPTIMIZERS`) with its own ``options`` (each checked by
    its declaration; ``momentum`` is ignored by optimisers without momentum).

    ``l2`` is the course's L2 weight ``lam`` (its gradient ``2 lam W`` is folded into the
    update); ``weight_decay`` is decoupled (``p *= 1 - lr * wd``). Both apply to the
    parameters in ``decay_names``.
    """
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    if "momentum" not in cls.options:
        options.pop("momentum", None)
    values = check_options(f"optimizer {name}", cls.options, options)
    return cls(l2=l2, decoupled_weight_decay=weight_decay, decay_names=decay_names, **values)
