"""Gradient checks of whole networks as ``mlplab gradcheck`` and ``mlplab reproduce`` run them:
the batch, the network, the check (:mod:`mlplab.gradcheck`, or PyTorch autograd).

The batch is the first ``samples`` CIFAR-10 training images scaled to [0, 1] and
standardised with the batch's own mean and standard deviation by
:func:`mlplab.transform.standardize.standardize` (a single image is only centred, at 0.5),
keeping the first ``dims`` dimensions; without data, standard-normal
inputs with uniform random labels. Everything runs in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlplab.data import RawDataset, column_stats, standardize
from mlplab.errors import MlplabError
from mlplab.gradcheck.check import GradcheckReport, gradcheck
from mlplab.nn.network import Network


def check_batch(
    raw: RawDataset | None, samples: int, dims: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(X, y, classes)``: ``samples`` rows of ``dims`` inputs from ``raw`` (or, if None,
    synthetic ones drawn from ``rng``) and their labels (see the module)."""
    if raw is None:
        X = rng.standard_normal((samples, dims))
        return X, rng.integers(0, 10, samples), 10
    if dims > raw.x_train.shape[1]:
        raise MlplabError(f"--dims {dims} exceeds the data's {raw.x_train.shape[1]} dimensions")
    x = raw.x_train[:samples].astype(np.float64) / raw.scale
    x = standardize(x, *column_stats(x), np.float64, scale=1.0) if samples > 1 else x - 0.5
    return x[:, :dims], raw.y_train[:samples].astype(np.int64), len(raw.classes)


def check_network(
    X: np.ndarray,
    y: np.ndarray,
    classes: int,
    hidden: Sequence[int],
    rng: np.random.Generator,
    *,
    lam: float = 0.01,
    init: str = "he",
    batch_norm: bool = False,
    drop_prob: float = 0.0,
    activation: str = "relu",
    h: float = 1e-5,
    method: str = "vectorized",
    use_torch: bool = False,
) -> GradcheckReport:
    """Build the ``X.shape[1]``-``hidden``-``classes`` network (weights from ``rng``) and
    compare its analytic gradients on ``(X, y)`` with centred differences of step ``h`` by
    ``method``, or with PyTorch autograd (``use_torch``)."""
    if batch_norm and len(X) < 2:
        raise MlplabError("batch norm needs --samples >= 2")
    net = Network.build(
        X.shape[1],
        list(hidden),
        classes,
        rng=rng,
        init=init,
        batch_norm=batch_norm,
        drop_prob=drop_prob,
        activation=activation,
        dtype="float64",
    )
    if use_torch:
        from mlplab.gradcheck.autograd import gradcheck_torch

        return gradcheck_torch(net, X, y, lam)
    return gradcheck(net, X, y, lam, h=h, method=method)
