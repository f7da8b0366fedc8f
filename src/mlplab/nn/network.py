"""A feed-forward network: a list of layers, a softmax cross-entropy head and L2.

Cost convention (as in DD2424)::

    cost = loss + lam * sum_l ||W_l||_F^2        (weights of Dense layers only, never biases,
                                                  batch-norm gamma/beta)
    d cost / d W_l = d loss / d W_l + 2 * lam * W_l

The network back-propagates the loss; the ``2 * lam * W_l`` term is added by the
optimiser (:mod:`mlplab.optim.optimizers`) and by the gradient check.

``X`` is ``(n, d)`` (one sample per row), logits are ``(n, K)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mlplab.errors import ConfigError
from mlplab.nn.layers import Dense, Dropout, Layer
from mlplab.nn.losses import cross_entropy, softmax, softmax_cross_entropy
from mlplab.nn.specs import BuildContext, build_layers, layer_from_spec, shorthand

DTYPES = {"float32": np.float32, "float64": np.float64}


def parse_dtype(name: str | np.dtype | type) -> type:
    """Map ``"float32"``/``"float64"`` (or the numpy types) to the numpy scalar type."""
    key = np.dtype(name).name if not isinstance(name, str) else name
    if key not in DTYPES:
        raise ConfigError(f"dtype must be float32 or float64, got {name!r}")
    return DTYPES[key]


class Network:
    """Layers applied in order; named parameters ``"<layer>.<param>"`` (e.g. ``dense1.W``)."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            layer.name = f"{layer.kind}{counts[layer.kind]}"
        dense = [layer for layer in self.layers if isinstance(layer, Dense)]
        if not dense:
            raise ConfigError("a network needs at least one dense layer")
        # Nobody needs dL/dX of the input: skip the first layer's input-gradient GEMM.
        first = self.layers[0]
        if isinstance(first, Dense):
            first.need_dx = False
        self.dtype = dense[0].params["W"].dtype

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        d_in: int,
        hidden: Sequence[int],
        n_classes: int,
        *,
        rng: np.random.Generator,
        init: str = "course",
        init_sigma: float | None = None,
        batch_norm: bool = False,
        bn_position: str = "before_relu",
        bn_alpha: float = 0.9,
        bn_running_init: str = "first_batch",
        drop_prob: float = 0.0,
        activation: str = "relu",
        layers: Sequence[Any] | None = None,
        dtype: str | type = "float32",
    ) -> Network:
        """Build ``d_in - hidden[0] - ... - n_classes`` with ``activation`` between dense
        layers, or the hidden part ``layers`` (a list of layer specs, :mod:`mlplab.nn.specs`)
        when given.

        ``batch_norm`` inserts a :class:`BatchNorm` in every hidden layer, on the
        scores before the activation (``bn_position="before_relu"``, the default) or on
        its output (``"after_relu"``). A dense layer directly followed by batch
        norm has no bias. ``drop_prob > 0`` adds dropout after every hidden
        activation. Weights are drawn from ``rng`` with scheme ``init``, in layer order.
        """
        if layers is None:
            if any(isinstance(h, bool) or int(h) != h or h < 1 for h in hidden):
                raise ConfigError(f"hidden sizes must be positive integers, got {list(hidden)}")
            layers = shorthand(
                hidden,
                activation=activation,
                batch_norm=batch_norm,
                bn_position=bn_position,
                drop_prob=drop_prob,
            )
        ctx = BuildContext(rng, init, init_sigma, parse_dtype(dtype), bn_alpha, bn_running_init)
        return cls(build_layers(d_in, layers, n_classes, ctx))

    def spec(self) -> list[dict[str, Any]]:
        """The architecture as a JSON-able list of layer specs."""
        return [layer.spec() for layer in self.layers]

    @classmethod
    def from_spec(cls, spec: Sequence[dict[str, Any]], dtype: str | type = "float32") -> Network:
        """Rebuild the architecture with zero weights (load them with :meth:`set_state`)."""
        dt = parse_dtype(dtype)
        return cls([layer_from_spec(s, dt) for s in spec])

    def describe(self) -> str:
        """The layers in one line: ``3072 -> dense 50 -> relu -> dense 10``."""
        return " -> ".join([str(self.d_in), *(_describe(ly) for ly in self.layers)])

    # -- named arrays -------------------------------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        """Learnable arrays by name (the arrays themselves, not copies)."""
        return {f"{ly.name}.{k}": v for ly in self.layers for k, v in ly.params.items()}

    def grads(self) -> dict[str, np.ndarray]:
        """Gradients of the last :meth:`loss_grad`, by parameter name."""
        return {f"{ly.name}.{k}": v for ly in self.layers for k, v in ly.grads.items()}

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-learnable state (batch-norm running statistics) by name."""
        return {f"{ly.name}.{k}": v for ly in self.layers for k, v in ly.buffers.items()}

    def decay_names(self) -> list[str]:
        """Names of the parameters under L2 regularisation (dense weights)."""
        return [f"{ly.name}.{k}" for ly in self.layers for k in ly.decay]

    def state(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, for saving."""
        return {k: v.copy() for k, v in {**self.params(), **self.buffers()}.items()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the network; names, shapes and dtypes must match exactly."""
        own = {**self.params(), **self.buffers()}
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise ConfigError(
                f"state does not fit the network: missing {missing}, unexpected {extra}"
            )
        for k, dst in own.items():
            src = np.asarray(state[k])
            if src.shape != dst.shape:
                raise ConfigError(f"{k}: expected shape {dst.shape}, got {src.shape}")
            dst[...] = src

    @property
    def d_in(self) -> int:
        return next(ly for ly in self.layers if isinstance(ly, Dense)).shape[0]

    @property
    def n_classes(self) -> int:
        return [ly for ly in self.layers if isinstance(ly, Dense)][-1].shape[1]

    def dropout_layers(self) -> Iterator[Dropout]:
        return (ly for ly in self.layers if isinstance(ly, Dropout))

    # -- computation --------------------------------------------------------------------------
    def forward(
        self, X: np.ndarray, train: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Logits ``(n, K)`` for inputs ``(n, d)``; ``train`` keeps what backward needs."""
        h = X
        for layer in self.layers:
            h = layer.forward(h, train, rng)
        return h

    def backward(self, dlogits: np.ndarray, scale: float = 1.0) -> None:
        """Back-propagate ``dL/dlogits`` through every layer: the layers' ``grads`` then hold
        ``scale * dL/dparam`` (see the layer contract in :mod:`mlplab.nn.layers`)."""
        d: np.ndarray | None = dlogits
        for layer in reversed(self.layers):
            assert d is not None
            if layer.scales_itself():
                d = layer.backward(d, scale)  # type: ignore[call-arg]  # takes_scale layers
                continue
            d = layer.backward(d)
            if scale != 1.0:
                for g in layer.grads.values():
                    g *= scale

    def l2_penalty(self, lam: float) -> float:
        """``lam * sum ||W||^2`` over the dense weights."""
        if not lam:
            return 0.0
        return float(lam * sum(float(np.vdot(w, w)) for w in self._decayed()))

    def _decayed(self) -> Iterator[np.ndarray]:
        return (ly.params[k] for ly in self.layers for k in ly.decay)

    def loss_grad(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        rng: np.random.Generator | None = None,
        label_smoothing: float = 0.0,
        scale: float = 1.0,
    ) -> float:
        """Training step's forward + backward: returns the data loss and fills ``grads()``
        with ``scale * d loss / d param``.

        The L2 term is not here: its gradient ``2 * lam * W`` is the optimiser's to add
        (folded into its update, see :mod:`mlplab.optim.optimizers`), and the cost
        ``loss + self.l2_penalty(lam)`` would cost a pass over every weight per step.
        """
        logits = self.forward(X, train=True, rng=rng)
        loss, dlogits = softmax_cross_entropy(logits, y, label_smoothing)
        self.backward(dlogits, scale)
        return loss

    def logits(self, X: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Evaluation-mode logits, computed ``batch_size`` rows at a time."""
        out = np.empty((X.shape[0], self.n_classes), dtype=self.dtype)
        for i in range(0, X.shape[0], batch_size):
            out[i : i + batch_size] = self.forward(X[i : i + batch_size], train=False)
        return out

    def predict_proba(
        self, X: np.ndarray, batch_size: int = 1000, *, mirror: np.ndarray | None = None
    ) -> np.ndarray:
        """Class probabilities ``(n, K)`` in evaluation mode.

        ``mirror``: a column permutation (an image's :meth:`~mlplab.images.ImageShape.
        flip_permutation`); the result is then the mean of the probabilities of each row and
        of its mirror image (:meth:`mirror_proba`).
        """
        probs = softmax(self.logits(X, batch_size))
        if mirror is not None:
            probs += self.mirror_proba(X, batch_size, mirror)
            probs *= 0.5
        return probs

    def mirror_proba(self, X: np.ndarray, batch_size: int, mirror: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, K)`` of the rows ``X[:, mirror]`` (each image mirrored as
        the trainer's flips mirror it), in evaluation mode."""
        if len(mirror) != X.shape[1]:
            raise ConfigError(f"a mirror permutation of {len(mirror)} columns for {X.shape[1]}")
        out = np.empty((X.shape[0], self.n_classes), dtype=self.dtype)
        for i in range(0, X.shape[0], batch_size):
            rows = np.take(X[i : i + batch_size], mirror, axis=1)
            out[i : i + batch_size] = softmax(self.forward(rows, train=False))
        return out

    def evaluate(
        self, X: np.ndarray, y: np.ndarray, lam: float = 0.0, batch_size: int = 1000
    ) -> dict[str, float]:
        """``{"cost", "loss", "accuracy"}`` of the whole set in evaluation mode."""
        if X.shape[0] == 0:
            return {"cost": float("nan"), "loss": float("nan"), "accuracy": float("nan")}
        logits = self.logits(X, batch_size)
        loss = cross_entropy(logits, y)
        acc = float(np.mean(np.argmax(logits, axis=1) == y))
        return {"cost": loss + self.l2_penalty(lam), "loss": loss, "accuracy": acc}


def _describe(layer: Layer) -> str:
    spec = layer.spec()
    if isinstance(layer, Dense):
        return f"dense {layer.shape[1]}" + ("" if "b" in layer.params else " (no bias)")
    opts = [f"{k}={v}" for k, v in spec.items() if k not in ("kind", "d")]
    return layer.kind + (f" ({', '.join(opts)})" if opts and layer.kind != "batchnorm" else "")
