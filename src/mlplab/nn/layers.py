"""Layers with hand-written forward and backward passes.

Conventions shared by every layer (row-major samples):

- ``forward(x, train, rng)`` takes ``x`` of shape ``(n, d_in)`` and keeps exactly
  what ``backward`` needs; ``train`` selects training behaviour (batch statistics,
  dropout), never a global flag.
- ``backward(dout)`` takes ``dL/d(out)`` of shape ``(n, d_out)``, returns
  ``dL/dx`` of shape ``(n, d_in)`` (or ``None`` where the layer was told that no
  one needs it) and overwrites ``self.grads[k]`` with ``dL/dparams[k]`` for every
  ``k`` in ``self.params``. It never modifies ``dout``.
- A layer class that defines ``backward`` and sets ``takes_scale = True`` beside it
  accepts ``backward(dout, scale)``
  and writes ``scale * dL/dparams[k]`` instead: the optimiser asks for a scale
  (plain SGD for ``-lr``, so that the weight-gradient GEMM writes the update itself,
  see :mod:`mlplab.optim.optimizers`), and :meth:`Network.backward` scales the
  gradients of any other layer afterwards. ``dL/dx`` is never scaled.
- Learnable arrays live in ``params``; running statistics live in ``buffers``
  and are never touched by an optimiser.
- ``spec()`` is a JSON-able description; ``from_spec(spec, dtype)`` rebuilds the
  layer with zero weights. :data:`LAYERS` maps each ``kind`` to its class: a new
  layer is one class plus one line there (model files, gradient checks and
  training then handle it).

The NumPy code in each method is the formula to read. On large mini-batches (or with more
than one thread, :func:`mlplab.kernels.wanted`) the bias, ReLU and batch norm run as
compiled kernels that do the same operations on every element in one vectorised pass: the
same bits (:mod:`mlplab.kernels`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mlplab import kernels
from mlplab.errors import ConfigError
from mlplab.options import Flag, Integer, Option, Real


class Layer:
    """Base class: a named block with ``params``, ``grads`` and ``buffers``.

    A layer that a recipe may name (``layers = [...]``, see :mod:`mlplab.nn.specs`) declares
    its recipe ``options`` (:mod:`mlplab.options`; ``primary`` is the one written as
    ``{kind = value}``) and builds itself in :meth:`build` from the width of its input.
    """

    kind: ClassVar[str] = "layer"
    decay: ClassVar[tuple[str, ...]] = ()  # names of params under L2 regularisation
    takes_scale: ClassVar[bool] = False  # backward(dout, scale) scales the gradients itself
    options: ClassVar[dict[str, Option]] = {}  # what a recipe's layer spec may set
    primary: ClassVar[str | None] = None  # the option of the short form {kind = value}

    @classmethod
    def build(cls, d_in: int, opts: dict[str, Any], ctx: Any) -> Layer:
        """The layer for inputs of width ``d_in`` with the checked recipe options ``opts``;
        ``ctx`` (:class:`mlplab.nn.specs.BuildContext`) holds the generator, the weight
        initialisation and the dtype. Default: ``cls(**opts)``."""
        return cls(**opts)

    def width(self, d_in: int) -> int:
        """The width of the output for inputs of width ``d_in`` (elementwise: the same)."""
        return d_in

    def scales_itself(self) -> bool:
        """Whether ``backward`` takes ``scale``: ``takes_scale`` as set by the class that
        defines the ``backward`` in use (a subclass that overrides ``backward`` with the
        plain contract does not inherit it)."""
        for cls in type(self).__mro__:
            if "backward" in cls.__dict__:
                return bool(cls.__dict__.get("takes_scale", False))
        return False

    def __init__(self) -> None:
        self.name = self.kind
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(
        self, x: np.ndarray, train: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :meth:`from_spec` rebuilds the layer."""
        return {"kind": self.kind}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], dtype: np.dtype | type) -> Layer:
        """The layer described by :meth:`spec` (zero weights; load them with the state)."""
        return cls()

    def _alloc_grads(self) -> None:
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


class Dense(Layer):
    """Affine map ``out = x @ W + b`` with ``W`` of shape ``(d_in, d_out)``, ``b`` of ``(d_out,)``.

    Gradients: ``dW = x.T @ dout``, ``db = sum_i dout[i]``, ``dx = dout @ W.T``.
    ``bias=False`` drops ``b`` (it is superfluous before a batch norm, whose
    ``beta`` plays its role).
    """

    kind = "dense"
    decay = ("W",)
    takes_scale = True
    options: ClassVar[dict[str, Option]] = {
        "units": Integer(1, 1, 10**6, help="output width"),
        "bias": Flag(True, help="add a bias (default: not before a batch norm)"),
    }
    primary = "units"

    @classmethod
    def build(cls, d_in: int, opts: dict[str, Any], ctx: Any) -> Dense:
        W = ctx.weights(d_in, opts["units"])
        return cls(W, np.zeros(W.shape[1], dtype=W.dtype) if opts["bias"] else None)

    def width(self, d_in: int) -> int:
        return self.shape[1]

    def __init__(self, W: np.ndarray, b: np.ndarray | None = None, need_dx: bool = True) -> None:
        super().__init__()
        if W.ndim != 2:
            raise ConfigError(f"Dense weights must be 2-D, got shape {W.shape}")
        self.params["W"] = W = np.ascontiguousarray(W)  # (a transposed array is copied)
        if b is not None:
            if b.shape != (W.shape[1],):
                raise ConfigError(f"Dense bias must have shape ({W.shape[1]},), got {b.shape}")
            self.params["b"] = np.ascontiguousarray(b)
        self.need_dx = need_dx
        self._x: np.ndarray | None = None
        self._alloc_grads()

    @property
    def shape(self) -> tuple[int, int]:
        return self.params["W"].shape

    def forward(
        self, x: np.ndarray, train: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        out = x @ self.params["W"]
        if "b" in self.params:
            b = self.params["b"]
            if out.ndim == 2 and out.dtype == b.dtype and kernels.wanted(out.size):
                kernels.add_bias(out, b)
            else:
                out += b
        if train:
            self._x = x
        return out

    def backward(self, dout: np.ndarray, scale: float = 1.0) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError("Dense.backward called before a training forward pass")
        # scaling the small (n, d_out) ``dout`` costs nothing beside a pass over ``W``
        g = dout if scale == 1.0 else dout * scale
        np.matmul(x.T, g, out=self.grads["W"])
        if "b" in self.params:
            np.sum(g, axis=0, out=self.grads["b"])
        if not self.need_dx:
            return None
        return dout @ self.params["W"].T

    def spec(self) -> dict[str, Any]:
        d_in, d_out = self.shape
        return {"kind": self.kind, "d_in": d_in, "d_out": d_out, "bias": "b" in self.params}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], dtype: np.dtype | type) -> Dense:
        W = np.zeros((int(spec["d_in"]), int(spec["d_out"])), dtype=dtype)
        return cls(W, np.zeros(W.shape[1], dtype=dtype) if spec.get("bias", True) else None)


class ReLU(Layer):
    """``out = max(x, 0)``; ``dx = dout * [x > 0]`` (the other activations are in
    :mod:`mlplab.nn.activations`; this one keeps only its output, as the course's does)."""

    kind = "relu"

    def __init__(self) -> None:
        super().__init__()
        self._out: np.ndarray | None = None

    def forward(
        self, x: np.ndarray, train: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        if kernels.wanted(x.size) and x.flags.c_contiguous:
            out = kernels.relu(x)
        else:
            out = np.maximum(x, 0)
        if train:
            self._out = out
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._out is None:
            raise RuntimeError("ReLU.backward called before a training forward pass")
        if (
            dout.shape == self._out.shape
            and dout.dtype == self._out.dtype
            and kernels.wanted(dout.size)
        ):
            return kernels.relu_backward(dout, self._out)
        return dout * (self._out > 0)


class BatchNorm(Layer):
    """Batch normalisation over the batch axis (Ioffe & Szegedy 2015).

    Training, for ``x`` of shape ``(n, d)``::

        mu = mean_i x[i]            v = mean_i (x[i] - mu)^2      (biased, divides by n)
        xhat = (x - mu) / sqrt(v + eps)
        out = gamma * xhat + beta

    and the running statistics are updated as exponential moving averages
    ``r <- alpha * r + (1 - alpha) * batch_stat`` (``alpha = 0.9`` is PyTorch's
    ``momentum = 0.1``). Evaluation normalises with the running statistics.

    ``running_init``: ``"first_batch"`` (default, as in the course) sets the
    running statistics to the first training batch's statistics;
    ``"torch"`` starts from mean 0, variance 1 as ``torch.nn.BatchNorm1d`` does.
    ``unbiased_running_var``: PyTorch feeds the unbiased batch variance
    (``v * n / (n - 1)``) into the running variance; the course feeds ``v``.

    Backward (with ``dxhat = dout * gamma``)::

        dgamma = sum_i dout[i] * xhat[i]        dbeta = sum_i dout[i]
        dx = (n * dxhat - sum_i dxhat[i] - xhat * sum_i dxhat[i] * xhat[i]) / (n * sqrt(v + eps))
    """

    kind = "batchnorm"
    takes_scale = True
    options: ClassVar[dict[str, Option]] = {
        "alpha": Real(0.9, 0.0, 1.0, high_open=True, help="running-average factor"),
    }
    primary = "alpha"

    @classmethod
    def build(cls, d_in: int, opts: dict[str, Any], ctx: Any) -> BatchNorm:
        return cls(d_in, alpha=opts["alpha"], running_init=ctx.bn_running_init, dtype=ctx.dtype)

    def __init__(
        self,
        d: int,
        *,
        alpha: float = 0.9,
        eps: float = 1e-5,
        running_init: str = "first_batch",
        unbiased_running_var: bool = False,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"batch-norm alpha must be in [0, 1), got {alpha!r}")
        if not eps > 0:
            raise ConfigError(f"batch-norm eps must be positive, got {eps!r}")
        if running_init not in ("first_batch", "torch"):
            raise ConfigError(
                f"batch-norm running_init must be 'first_batch' or 'torch', got {running_init!r}"
            )
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.running_init = running_init
        self.unbiased_running_var = bool(unbiased_running_var)
        self.params["gamma"] = np.ones(d, dtype=dtype)
        self.params["beta"] = np.zeros(d, dtype=dtype)
        self.buffers["running_mean"] = np.zeros(d, dtype=dtype)
        self.buffers["running_var"] = np.ones(d, dtype=dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), dtype=np.int64)
        self._alloc_grads()
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def forward(
        self, x: np.ndarray, train: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not train:
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
            return (x - self.buffers["running_mean"]) * (gamma * inv_std) + beta
        n = x.shape[0]
        if n < 2:
            raise ConfigError("batch normalisation needs at least 2 samples per training batch")
        if x.dtype == gamma.dtype and x.flags.c_contiguous and kernels.wanted(x.size):
            out, xhat, inv_std, mu, var = kernels.batchnorm_forward(x, gamma, beta, self.eps)
            self._cache = (xhat, inv_std)
            self._update_running(mu, var * (n / (n - 1)) if self.unbiased_running_var else var)
            return out
        mu = x.mean(axis=0)
        xc = x - mu
        var = np.mean(xc * xc, axis=0)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = xc * inv_std
        self._cache = (xhat, inv_std)
        self._update_running(mu, var * (n / (n - 1)) if self.unbiased_running_var else var)
        return xhat * gamma + beta

    def _update_running(self, mu: np.ndarray, var: np.ndarray) -> None:
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        if self.running_init == "first_batch" and int(self.buffers["num_batches_tracked"]) == 0:
            rm[...] = mu
            rv[...] = var
        else:
            a = self.alpha
            rm *= a
            rm += (1.0 - a) * mu
            rv *= a
            rv += (1.0 - a) * var
        self.buffers["num_batches_tracked"][...] += 1

    def backward(self, dout: np.ndarray, scale: float = 1.0) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("BatchNorm.backward called before a training forward pass")
        xhat, inv_std = self._cache
        if dout.dtype == xhat.dtype and kernels.wanted(dout.size):
            g = self.grads
            return kernels.batchnorm_backward(
                dout, xhat, inv_std, self.params["gamma"], scale, g["gamma"], g["beta"]
            )
        n = dout.shape[0]
        dgamma, dbeta = self.grads["gamma"], self.grads["beta"]
        np.sum(dout * xhat, axis=0, out=dgamma)
        np.sum(dout, axis=0, out=dbeta)
        if scale != 1.0:
            dgamma *= scale
            dbeta *= scale
        dxhat = dout * self.params["gamma"]
        dx = n * dxhat
        dx -= dxhat.sum(axis=0)
        dx -= xhat * np.sum(dxhat * xhat, axis=0)
        dx *= inv_std / n
        return dx

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "d": int(self.params["gamma"].shape[0]),
            "alpha": self.alpha,
            "eps": self.eps,
            "running_init": self.running_init,
            "unbiased_running_var": self.unbiased_running_var,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], dtype: np.dtype | type) -> BatchNorm:
        if not isinstance(spec["unbiased_running_var"], bool):
            raise ConfigError("batch-norm unbiased_running_var must be true or false")
        return cls(
            int(spec["d"]),
            alpha=float(spec["alpha"]),
            eps=float(spec["eps"]),
            running_init=str(spec["running_init"]),
            unbiased_running_var=bool(spec["unbiased_running_var"]),
            dtype=dtype,
        )


class Dropout(Layer):
    """Inverted dropout: ``out = x * m / (1 - drop_prob)``, ``m ~ Bernoulli(1 - drop_prob)``.

    The mask is drawn from the generator passed to ``forward`` (the run's RNG).
    ``freeze()`` keeps the last mask for later passes of the same shape, which
    makes the layer deterministic for gradient checks. Evaluation is the identity.
    """

    kind = "dropout"
    options: ClassVar[dict[str, Option]] = {
        "drop_prob": Real(0.5, 0.0, 1.0, high_open=True, help="probability of dropping a unit"),
    }
    primary = "drop_prob"

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ConfigError(f"drop_prob must be in [0, 1), got {drop_prob!r}")
        self.drop_prob = float(drop_prob)
        self.frozen = False
        self._scaled_mask: np.ndarray | None = None

    def freeze(self, frozen: bool = True) -> None:
        self.frozen = frozen

    def forward(
        self, x: np.ndarray, train: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        if not train or self.drop_prob == 0.0:
            self._scaled_mask = None
            return x
        m = self._scaled_mask
        if not (self.frozen and m is not None and m.shape == x.shape):
            if rng is None:
                raise ValueError("Dropout in training mode needs the run's random generator")
            keep = 1.0 - self.drop_prob
            m = (rng.random(x.shape) < keep).astype(x.dtype)
            m /= keep
            self._scaled_mask = m
        return x * m

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self._scaled_mask is None:
            return dout
        return dout * self._scaled_mask

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "drop_prob": self.drop_prob}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], dtype: np.dtype | type) -> Dropout:
        return cls(float(spec["drop_prob"]))


#: ``kind`` -> layer class; model files and recipes look layers up here and in
#: :data:`mlplab.nn.activations.ACTIVATIONS` (:func:`mlplab.nn.specs.layer_class`).
LAYERS: dict[str, type[Layer]] = {cls.kind: cls for cls in (Dense, ReLU, BatchNorm, Dropout)}


def layer_from_spec(spec: dict[str, Any], dtype: np.dtype | type = np.float32) -> Layer:
    """Rebuild an (unweighted: zeros) layer from :meth:`Layer.spec`."""
    from mlplab.nn.specs import layer_from_spec as rebuild  # the one place that looks up kinds

    return rebuild(spec, dtype)
