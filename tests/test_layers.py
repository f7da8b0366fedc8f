"""The layers of :mod:`mlplab.nn.layers` by their own formulas (PyTorch comparisons are in
``test_torch_compare.py``)."""

from __future__ import annotations

import numpy as np

from mlplab.nn.layers import BatchNorm
from mlplab.nn.network import Network


def test_batchnorm_course_running_stats_use_biased_variance_and_first_batch():
    rng = np.random.default_rng(1)
    bn = BatchNorm(3, alpha=0.9, dtype=np.float64)
    x1, x2 = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    bn.forward(x1, train=True)
    np.testing.assert_allclose(bn.buffers["running_mean"], x1.mean(0))
    np.testing.assert_allclose(bn.buffers["running_var"], x1.var(0))  # biased
    bn.forward(x2, train=True)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.9 * x1.mean(0) + 0.1 * x2.mean(0))
    np.testing.assert_allclose(bn.buffers["running_var"], 0.9 * x1.var(0) + 0.1 * x2.var(0))


def test_batchnorm_eval_uses_running_statistics_not_the_batch():
    rng = np.random.default_rng(2)
    net = Network.build(6, [8], 3, rng=rng, batch_norm=True, dtype="float64")
    for _ in range(5):
        net.forward(rng.normal(size=(20, 6)), train=True)
    x = rng.normal(5.0, 1.0, size=(4, 6))  # shifted batch
    full = net.logits(x)
    one_at_a_time = np.vstack([net.logits(x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(full, one_at_a_time, rtol=1e-12)
    bn = next(ly for ly in net.layers if isinstance(ly, BatchNorm))
    h = x @ net.layers[0].params["W"]
    expected = (h - bn.buffers["running_mean"]) / np.sqrt(bn.buffers["running_var"] + bn.eps)
    np.testing.assert_allclose(
        bn.forward(h, train=False), expected * bn.params["gamma"] + bn.params["beta"], rtol=1e-12
    )
    assert not np.allclose(bn.forward(h, train=False), bn.forward(h, train=True))
