"""The compiled kernels (mlplab.kernels) against their NumPy references, bit for bit.

Every kernel does the same IEEE operations per element, in the same order and precision,
as the NumPy code it replaces, so the results must be the same bits: with 1 and 2 threads,
and through a few training updates of a course-like network. ``MLPLAB_KERNELS=1`` sends
every array to a kernel, ``0`` none.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import synthetic_raw

from mlplab import kernels
from mlplab.config import Config
from mlplab.data import make_splits
from mlplab.data.augment import AUGMENTATIONS
from mlplab.images import CIFAR10_SHAPE
from mlplab.machine import blas_threads, run_threads, usable_cores
from mlplab.nn.layers import BatchNorm, Dense, ReLU
from mlplab.optim.optimizers import make_optimizer
from mlplab.train.build import build_network
from mlplab.train.trainer import Trainer

pytest.importorskip("numba")

THREADS = [1, 2] if usable_cores() >= 2 else [1]


@pytest.fixture
def use(monkeypatch):
    """``use(True)``: every array to a kernel, split among the run's threads whatever its
    size; ``use(False)``: NumPy alone."""

    def set_(on: bool) -> None:
        monkeypatch.setenv("MLPLAB_KERNELS", "1" if on else "0")
        monkeypatch.setattr(kernels, "MIN_SPLIT", 1)

    return set_


def bits_equal(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what}: not the same bits"


def _hard(rng, shape, dtype=np.float32):
    """Values of very different sizes, so that any other rounding order shows."""
    return (rng.standard_normal(shape) * np.exp(2 * rng.standard_normal(shape))).astype(dtype)


OPTIMIZERS = {
    "sgd-scaled-l2": ("sgd", {"l2": 0.01}),
    "sgd-scaled": ("sgd", {}),
    "sgd-l2-wd": ("sgd", {"l2": 0.01, "weight_decay": 0.1}),
    "momentum-l2": ("momentum", {"l2": 0.01}),
    "nesterov-l2-wd": ("nesterov", {"l2": 0.005, "weight_decay": 0.05}),
    "adam-l2-wd": ("adam", {"l2": 0.001, "weight_decay": 0.01}),
    "adam": ("adam", {}),
}


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("case", OPTIMIZERS)
def test_optimizer_kernels_are_the_numpy_update_bit_for_bit(case, threads, use):
    kind, kw = OPTIMIZERS[case]
    kw = dict(kw)
    wd = kw.pop("weight_decay", 0.0)
    rng = np.random.default_rng(0)
    shapes = {"w": (300, 170), "b": (170,)}  # w: several chunks and a part of one
    start = {k: _hard(rng, s) for k, s in shapes.items()}
    runs = []
    for on in (False, True):
        use(on)
        opt = make_optimizer(kind, weight_decay=wd, decay_names=["w"], **kw)
        p = {k: v.copy() for k, v in start.items()}
        grads = np.random.default_rng(1)
        with blas_threads(threads):
            for t in range(4):
                lr = 0.05 * (1 + t % 3)
                scale = opt.grad_scale(lr)
                g = {k: _hard(grads, s) * np.float32(scale) for k, s in shapes.items()}
                opt.step(p, g, lr, scale=scale)
        runs.append((p, opt.state))
    (p0, s0), (p1, s1) = runs
    for k in shapes:
        bits_equal(p0[k], p1[k], f"{case} {k}")
    assert s0.keys() == s1.keys()
    for k in s0:
        bits_equal(s0[k], s1[k], f"{case} state {k}")


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("scale", [1.0, -0.03])
def test_batchnorm_kernels_are_the_numpy_layer_bit_for_bit(threads, scale, use):
    rng = np.random.default_rng(2)
    n, d = 100, 300  # 300 columns: two blocks and a part of one
    x = _hard(rng, (n, d)) + np.float32(3)
    dout = _hard(rng, (n, d))
    results = []
    for on in (False, True):
        use(on)
        bn = BatchNorm(d, running_init="torch")
        bn.params["gamma"][...] = _hard(np.random.default_rng(3), d)
        bn.params["beta"][...] = _hard(np.random.default_rng(4), d)
        with blas_threads(threads):
            out = bn.forward(x, train=True)
            out2 = bn.forward(x[::-1].copy(), train=True)  # running stats: a second batch
            dx = bn.backward(dout, scale)
        results.append((out, out2, dx, *bn.grads.values(), *bn.buffers.values()))
    for a, b in zip(*results, strict=True):
        bits_equal(a, b, "batch norm")


@pytest.mark.parametrize("threads", THREADS)
def test_bias_and_relu_kernels_are_numpy_bit_for_bit(threads, use):
    rng = np.random.default_rng(5)
    x = _hard(rng, (40, 500))
    x[0, :4] = [-0.0, np.nan, np.inf, -np.inf]
    dout = _hard(rng, (40, 300))
    dout[0, :3] = [np.nan, np.inf, -0.0]
    W, b = _hard(rng, (500, 300)), _hard(rng, 300)
    results = []
    for on in (False, True):
        use(on)
        dense, relu = Dense(W.copy(), b.copy()), ReLU()
        with blas_threads(threads), np.errstate(invalid="ignore", over="ignore"):
            h = relu.forward(dense.forward(x, train=True), train=True)
            results.append((h, relu.backward(dout)))
    for a, c in zip(*results, strict=True):
        bits_equal(a, c, "bias + relu")


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("aug", ["flip", "translate", "crop", "cutout"])
def test_augmentation_kernels_move_the_same_values(aug, threads, use):
    opts = {"flip": True, "translate": 3, "crop": 4, "cutout": 9}
    x0 = _hard(np.random.default_rng(6), (37, CIFAR10_SHAPE.size))
    results = []
    for on in (False, True):
        use(on)
        a = AUGMENTATIONS[aug](CIFAR10_SHAPE, **{aug: opts[aug]})
        x, rng = x0.copy(), np.random.default_rng(7)
        with blas_threads(threads):
            a(x, rng)
            a(x, rng)
        results.append((x, rng.random()))  # the same draws, in the same order
    bits_equal(results[0][0], results[1][0], aug)
    assert results[0][1] == results[1][1]


def test_take_rows_is_np_take():
    rng = np.random.default_rng(8)
    X = _hard(rng, (500, 77))
    idx = rng.permutation(500)[:60]
    out = np.empty((60, 77), np.float32)
    kernels.take_rows(X, idx, out)
    bits_equal(out, np.take(X, idx, axis=0))


def _course_fit(cfg: Config):
    raw = synthetic_raw(n_train=400, n_test=50)
    rng = np.random.default_rng(cfg.seed)
    s = make_splits(raw, cfg.split, rng, dtype=np.float32)
    net = build_network(cfg, 3072, 10, rng)
    tr = Trainer(net, cfg, rng, progress=False)
    with blas_threads(cfg.threads):
        tr.fit(s.x_train, s.y_train, s.x_val, s.y_val, record=False, max_updates=6)
    return net, tr


@pytest.mark.parametrize(
    "kw",
    [
        {"optimizer": "sgd", "lam": 0.005},  # assignment 2: plain SGD, its update from the GEMM
        {"optimizer": "sgd", "hidden": [50, 30], "batch_norm": True},  # assignment 3
        {"optimizer": "nesterov", "batch_norm": True, "flip": True, "translate": 2},
        {"optimizer": "adam", "eta_max": 1e-3, "weight_decay": 0.01, "threads": 2},
    ],
)
def test_training_with_kernels_is_the_numpy_training_bit_for_bit(kw, use):
    if kw.get("threads", 1) > usable_cores():
        pytest.skip("needs 2 cores")
    base = dict(
        split="350/50",
        hidden=[50],
        batch_size=50,
        lam=0.01,
        schedule="cyclic",
        n_s=8,
        cycles=1,
        eta_min=1e-4,
        eta_max=5e-2,
        label_smoothing=0.1,
    )
    cfg = Config(**{**base, **kw}).validate()
    nets = []
    for on in (False, True):
        use(on)
        net, tr = _course_fit(cfg)
        assert tr.step == 6
        nets.append({**net.params(), **net.buffers()})
    for k in nets[0]:
        bits_equal(nets[0][k], nets[1][k], k)


def test_kernels_follow_the_run_threads_and_sizes(monkeypatch):
    monkeypatch.delenv("MLPLAB_KERNELS", raising=False)
    with blas_threads(1):
        assert run_threads() == 1
        assert not kernels.wanted(kernels.MIN_PARALLEL)  # the course: 1 thread, small arrays
        assert kernels.wanted(kernels.MIN_FUSED)
        with blas_threads(2):
            assert run_threads() == 2
            assert kernels.wanted(kernels.MIN_PARALLEL)
            assert not kernels.wanted(kernels.MIN_PARALLEL - 1)
        assert run_threads() == 1
    monkeypatch.setenv("MLPLAB_KERNELS", "0")
    assert not kernels.available() and not kernels.wanted(10**9)
