"""Analytic gradients of whole networks against centred differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from mlplab.gradcheck import (
    analytic_gradients,
    gradcheck,
    numerical_gradients,
    numerical_gradients_vectorized,
    relative_error,
)
from mlplab.nn.network import Network

ARCHS = [
    # (d_in, hidden, batch_norm, drop_prob, lam)
    (20, [50], False, 0.0, 0.0),
    (20, [50], False, 0.0, 0.1),
    (15, [30, 20], False, 0.0, 0.01),
    (12, [16, 12, 8], False, 0.0, 0.05),
    (10, [20, 10], True, 0.0, 0.0),  # 3 dense layers with batch norm
    (10, [12], True, 0.0, 0.02),  # 2 layers with batch norm
    (10, [12, 10, 8], True, 0.0, 0.01),  # 4 layers with batch norm
    (10, [16, 12], False, 0.4, 0.01),  # dropout, frozen mask
]


def _case(d, hidden, bn, dp, seed=0, n=8):
    rng = np.random.default_rng(seed)
    net = Network.build(
        d, hidden, 10, rng=rng, init="he", batch_norm=bn, drop_prob=dp, dtype="float64"
    )
    X = rng.standard_normal((n, d))
    y = rng.integers(0, 10, n)
    R = rng.standard_normal((n, 10)) * 0.1  # random upstream gradient
    return net, X, y, R


@pytest.mark.parametrize(("d", "hidden", "bn", "dp", "lam"), ARCHS)
def test_loop_gradcheck_below_1e6(d, hidden, bn, dp, lam):
    net, X, y, R = _case(d, hidden, bn, dp)
    report = gradcheck(net, X, y, lam, upstream=R)
    assert {p.name for p in report.parameters} == set(net.params())
    assert report.max_rel_error < 1e-6, report.table()


@pytest.mark.parametrize(("d", "hidden", "bn", "dp", "lam"), ARCHS)
def test_vectorized_matches_loop(d, hidden, bn, dp, lam):
    net, X, y, R = _case(d, hidden, bn, dp, seed=1)
    slow = numerical_gradients(net, X, y, lam, upstream=R)
    fast = numerical_gradients_vectorized(net, X, y, lam, upstream=R)
    for k in slow:
        np.testing.assert_allclose(fast[k], slow[k], rtol=1e-6, atol=1e-9)
    assert gradcheck(net, X, y, lam, upstream=R, method="vectorized").max_rel_error < 1e-6


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """A broken backward pass must show up as a large error."""
    net, X, y, R = _case(10, [12], False, 0.0)
    from mlplab.nn import layers

    orig = layers.ReLU.backward

    def leaky(self, dout, scale=1.0):  # wrong: lets gradient through negative units
        return orig(self, dout) + 0.1 * dout * (self._out <= 0)

    monkeypatch.setattr(layers.ReLU, "backward", leaky)
    assert gradcheck(net, X, y, 0.0, upstream=R).max_rel_error > 1e-2


def test_batchnorm_check_fails_if_backward_ignores_batch_coupling(monkeypatch):
    """Random upstream gradients catch a BN backward that treats mu, var as constants."""
    net, X, y, R = _case(8, [10], True, 0.0)
    from mlplab.nn import layers

    def naive(self, dout, scale=1.0):
        xhat, inv_std = self._cache
        self.grads["gamma"][...] = (dout * xhat).sum(0)
        self.grads["beta"][...] = dout.sum(0)
        return dout * self.params["gamma"] * inv_std

    monkeypatch.setattr(layers.BatchNorm, "backward", naive)
    assert gradcheck(net, X, y, 0.0, upstream=R).max_rel_error > 1e-3


def test_gradcheck_restores_batchnorm_buffers():
    net, X, y, R = _case(8, [10], True, 0.0)
    before = {k: v.copy() for k, v in net.buffers().items()}
    gradcheck(net, X, y, 0.0, upstream=R)
    for k, v in net.buffers().items():
        np.testing.assert_array_equal(v, before[k])


def test_relative_error_formula():
    a = np.array([1.0, 0.0, 1e-3])
    n = np.array([1.0 + 1e-6, 0.0, -1e-3])
    r = relative_error(a, n, eps=1e-10)
    np.testing.assert_allclose(r, [1e-6 / (2 + 1e-6), 0.0, 1.0])


@pytest.mark.slow
def test_full_3072_50_10_vectorized_every_parameter():
    rng = np.random.default_rng(3)
    net = Network.build(3072, [50], 10, rng=rng, dtype="float64")
    X = rng.standard_normal((20, 3072))
    y = rng.integers(0, 10, 20)
    num = numerical_gradients_vectorized(net, X, y, 0.01)
    ana = analytic_gradients(net, X, y, 0.01)
    for k, a in ana.items():
        assert num[k].shape == a.shape
        # absolute accuracy of a centred difference in float64 with h = 1e-5
        np.testing.assert_allclose(num[k], a, rtol=1e-4, atol=1e-8)


def test_gradcheck_against_torch_autograd(monkeypatch):
    import json
    import sys

    from click.testing import CliRunner

    from mlplab.cli import cli

    pytest.importorskip("torch")
    args = ["gradcheck", "--hidden", "30,20", "--batch-norm", "--lam", "0.01", "--torch"]
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    names = [p["name"] for p in rep["parameters"]]
    assert "batchnorm1.gamma" in names and "dense3.b" in names and rep["max_rel_error"] < 1e-8
    r = CliRunner().invoke(cli, ["gradcheck", "--drop-prob", "0.2", "--torch"])
    assert r.exit_code == 2 and "does not handle dropout" in r.stderr
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and r.stderr.strip() == (
        "error: gradcheck --torch needs PyTorch: pip install torch"
    )
