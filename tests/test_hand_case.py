"""One tiny network computed by hand."""

from __future__ import annotations

import numpy as np

from mlplab.gradcheck import analytic_gradients
from mlplab.nn.layers import Dense, ReLU
from mlplab.nn.network import Network


def test_two_layer_by_hand():
    # x = [1, -1]; W1 = [[1, 2], [3, 4]] -> s1 = [1-3, 2-4] + b1 = [-2, -2] + [3, 1] = [1, -1]
    # h = relu(s1) = [1, 0]; W2 = [[1, -1], [0, 5]], b2 = [0, 0] -> s = [1, -1]
    # p = softmax([1, -1]) = [e/(e+1/e), ...]; label 0 -> loss = log(1 + e^-2)
    W1 = np.array([[1.0, 2.0], [3.0, 4.0]])
    net = Network(
        [
            Dense(W1.copy(), np.array([3.0, 1.0])),
            ReLU(),
            Dense(np.array([[1.0, -1.0], [0.0, 5.0]]), np.zeros(2)),
        ]
    )
    X = np.array([[1.0, -1.0]])
    y = np.array([0])
    loss = net.loss_grad(X, y)
    cost = loss + net.l2_penalty(0.5)
    grads = analytic_gradients(net, X, y, lam=0.5)  # of the cost: loss + L2
    assert np.isclose(loss, np.log1p(np.exp(-2.0)))
    # L2: 0.5 * (1 + 4 + 9 + 16 + 1 + 1 + 0 + 25) = 28.5
    assert np.isclose(cost, loss + 28.5)
    p0 = 1 / (1 + np.exp(-2.0))
    g = np.array([p0 - 1, 1 - p0])  # dL/ds
    np.testing.assert_allclose(net.grads()["dense2.W"], np.outer([1, 0], g))  # loss only
    np.testing.assert_allclose(
        grads["dense2.W"], np.outer([1, 0], g) + 2 * 0.5 * net.params()["dense2.W"]
    )
    np.testing.assert_allclose(grads["dense2.b"], g)
    dh = np.array([[1.0, -1.0], [0.0, 5.0]]) @ g  # back through W2
    ds1 = dh * np.array([1.0, 0.0])  # ReLU mask
    np.testing.assert_allclose(grads["dense1.W"], np.outer([1, -1], ds1) + W1)
    np.testing.assert_allclose(grads["dense1.b"], ds1)
