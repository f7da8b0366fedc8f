"""A layer defined here, outside the library, registered with one line: it trains, saves,
loads and passes both gradient checks with no library code written for it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlplab.config import Config
from mlplab.gradcheck import gradcheck
from mlplab.nn.layers import LAYERS, Dense, Layer
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_network, save_network
from mlplab.train.trainer import Trainer


class PReLU(Layer):
    """``out = max(x, 0) + a * min(x, 0)`` with one learnable slope ``a`` per feature
    (He et al. 2015). ``da = sum_i dout * min(x, 0)``; ``dx = dout * (1 if x > 0 else a)``.
    The plain contract: ``backward(dout)`` writes ``dL/da``."""

    kind = "prelu"

    def __init__(self, d: int, dtype: Any = np.float32, slope: float = 0.25) -> None:
        super().__init__()
        self.params["a"] = np.full(d, slope, dtype=dtype)
        self._alloc_grads()
        self._x: np.ndarray | None = None

    def forward(self, x, train=False, rng=None):
        if train:
            self._x = x
        return np.maximum(x, 0) + self.params["a"] * np.minimum(x, 0)

    def backward(self, dout):
        x = self._x
        np.sum(dout * np.minimum(x, 0), axis=0, out=self.grads["a"])
        return dout * np.where(x > 0, 1.0, self.params["a"])

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "d": int(self.params["a"].shape[0])}

    @classmethod
    def from_spec(cls, spec, dtype):
        return cls(int(spec["d"]), dtype)


class BrokenPReLU(PReLU):
    def backward(self, dout):  # wrong: forgets the slope on negative inputs
        super().backward(dout)
        return dout * (self._x > 0)


class ScalingPReLU(PReLU):
    """The same layer, scaling its gradient itself (``takes_scale``)."""

    takes_scale = True

    def backward(self, dout, scale=1.0):
        dx = super().backward(dout)
        self.grads["a"] *= scale
        return dx


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(LAYERS, PReLU.kind, PReLU)  # the one registry line


def _net(rng, cls=PReLU, dtype=np.float64):
    W1 = rng.standard_normal((12, 9)).astype(dtype) * 0.5
    W2 = rng.standard_normal((9, 10)).astype(dtype) * 0.5
    act = cls(9, dtype)
    act.params["a"][...] = rng.uniform(0.1, 0.5, 9)
    return Network([Dense(W1, np.zeros(9, dtype)), act, Dense(W2, np.zeros(10, dtype))])


@pytest.mark.parametrize("method", ["loop", "vectorized"])
def test_a_new_layer_passes_the_gradient_checks(registered, method):
    rng = np.random.default_rng(0)
    net = _net(rng)
    X, y = rng.standard_normal((7, 12)), rng.integers(0, 10, 7)
    R = rng.standard_normal((7, 10)) * 0.1
    report = gradcheck(net, X, y, 0.01, upstream=R, method=method)
    assert {p.name for p in report.parameters} == {
        "dense1.W",
        "dense1.b",
        "prelu1.a",
        "dense2.W",
        "dense2.b",
    }
    assert report.max_rel_error < 1e-6, report.table()
    broken = _net(np.random.default_rng(0), BrokenPReLU)
    assert gradcheck(broken, X, y, 0.01, upstream=R, method=method).max_rel_error > 1e-2


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_the_network_scales_the_gradients_of_a_layer_that_does_not(optimizer):
    """A layer with the plain contract trains exactly as one that applies the optimiser's
    gradient scale itself (plain SGD asks for -lr)."""
    X = np.random.default_rng(2).standard_normal((200, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    cfg = Config(hidden=[9], optimizer=optimizer, batch_size=20, n_s=20, eta_max=0.01)
    nets = []
    for cls in (PReLU, ScalingPReLU):
        rng = np.random.default_rng(1)
        net = _net(rng, cls, np.float32)
        Trainer(net, cfg.validate(), rng, progress=False).fit(X, y, record=False)
        nets.append(net.params())
    for k, v in nets[0].items():
        np.testing.assert_array_equal(v, nets[1][k], err_msg=k)


def test_a_subclass_of_dense_with_the_plain_contract_is_scaled_by_the_network():
    """``takes_scale`` is not inherited by a ``backward`` that does not take the scale."""

    class ClippedDense(Dense):
        def backward(self, dout):
            dx = super().backward(dout)
            np.clip(self.grads["W"], -1, 1, out=self.grads["W"])
            return dx

    rng = np.random.default_rng(3)
    W1, W2 = rng.standard_normal((12, 9)), rng.standard_normal((9, 10))
    X, y = rng.standard_normal((7, 12)), rng.integers(0, 10, 7)
    grads = []
    for scale in (1.0, -0.1):
        net = Network([Dense(W1.copy()), ClippedDense(W2.copy(), np.zeros(10))])
        net.loss_grad(X, y, scale=scale)
        grads.append(net.grads()["dense2.W"].copy())
    assert not ClippedDense(W2).scales_itself() and Dense(W2).scales_itself()
    np.testing.assert_allclose(grads[1], -0.1 * grads[0], rtol=1e-12)


def test_a_new_layer_trains_and_round_trips_through_a_model_file(registered, tmp_path):
    rng = np.random.default_rng(1)
    net = _net(rng, dtype=np.float32)
    X = rng.standard_normal((200, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    cfg = Config(
        hidden=[9], optimizer="nesterov", lam=0.001, batch_size=20, n_s=20, eta_max=0.1
    ).validate()
    a0 = net.params()["prelu1.a"].copy()
    Trainer(net, cfg, rng, progress=False).fit(X, y, record=False)
    assert not np.array_equal(net.params()["prelu1.a"], a0)  # the optimiser updated it
    save_network(tmp_path / "m", net, np.zeros(12), np.ones(12), [str(i) for i in range(10)])
    back = load_network(tmp_path / "m").network
    assert [ly.kind for ly in back.layers] == ["dense", "prelu", "dense"]
    np.testing.assert_array_equal(back.logits(X), net.logits(X))
