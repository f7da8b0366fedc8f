"""Fused, parallel elementwise kernels (Numba) for the training step's non-GEMM work.

With several threads a training step's matrix products run on all of them (BLAS), while
NumPy's elementwise operations run on one core, and each term of a formula is one more pass
over memory: the optimiser's update, batch norm, bias and ReLU, the augmentations and the
batch gather. The kernels here do that work in one pass over the data (split among the
run's threads only for very large arrays, see **Threads** below):

=========================  ================================================  ==============
kernel                     NumPy reference (the readable formula)            used by
=========================  ================================================  ==============
``sgd_scaled``/``sgd``     ``SGD._update``                                   SGD, momentum,
``adam``                   ``Adam._update``                                  Nesterov, Adam
``batchnorm_forward`` /    ``BatchNorm.forward`` / ``backward``              ``BatchNorm``
``batchnorm_backward``
``add_bias``, ``relu``,    ``out += b``; ``np.maximum(x, 0)``;               ``Dense``,
``relu_backward``          ``dout * (out > 0)``                              ``ReLU``
``flip``, ``translate``,   :mod:`mlplab.data.augment`                        augmentations
``crop``, ``cutout``
``take_rows``              ``np.take(X, idx, axis=0, out=out)``              batch gather
=========================  ================================================  ==============

**Same numbers.** Each kernel does, for every element, the same IEEE operations in the
same order and precision as its NumPy reference (``fastmath`` off: no reordering, no fused
multiply-add; scalars converted to the arrays' dtype first, as NumPy converts them). Sums
over the batch (batch norm) run down each column in row order, which is NumPy's order for
the first axis of a C-ordered array. So a kernel gives the reference's bits, whatever the
thread count (``tests/test_kernels.py`` checks every kernel bit for bit, and a few training
updates with and without kernels).

**When they run** (:func:`wanted`): only for arrays of at least :data:`MIN_PARALLEL`
elements when the run has more than one thread, or :data:`MIN_FUSED` elements with one
(where the single fused pass still beats NumPy's several). Smaller arrays, the course's
networks with their one thread among them, keep the NumPy code: a kernel launch costs a few
microseconds, and short runs never import Numba. ``MLPLAB_KERNELS=0`` turns the kernels
off, ``MLPLAB_KERNELS=1`` uses them for every array (the tests); without Numba installed,
NumPy does all the work.

**Threads**: the run's count, :func:`mlplab.machine.run_threads` (the recipe's ``threads``,
which also sets the BLAS threads), for work of at least :data:`MIN_SPLIT` elements; smaller
work, every array of the benchmark's networks among it, runs on the calling thread: one
vectorised pass already saturates a core's memory bandwidth, and split among threads it
waits for the cores that OpenBLAS's threads spin on between matrix products.

**Idle threads sleep**: Numba's OpenMP threads wait passively between kernels
(``OMP_WAIT_POLICY=PASSIVE``, set when the first kernel loads unless the environment sets
it). By default they spin for a while after each kernel, on the core that the BLAS threads
need for the next matrix product; a step alternates between the two pools a dozen times.
Numba's OpenMP runtime is not fork-safe: mlplab's own worker processes are spawned.

**Compile time**: each kernel is compiled by Numba on its first call for a dtype and cached
on disk (``cache=True``): in ``__pycache__`` beside this package, or, where that is not
writable (an installed, read-only package), in Numba's per-user cache directory
(``~/.cache/numba``; ``NUMBA_CACHE_DIR`` overrides both). A later process loads the
machine code instead of compiling it: about 1 s (Numba's import included) instead of about
8 s for the kernels of ``bonus/best`` and 15-20 s for all of them (2-core host).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any

import numpy as np

from mlplab.machine import run_threads

#: with more than one thread: arrays of at least this many elements go to a kernel
MIN_PARALLEL = 1 << 14
#: with one thread: arrays of at least this many elements go to a kernel (one fused pass)
MIN_FUSED = 1 << 18
#: a kernel on fewer elements runs in the calling thread alone. Split among the threads,
#: the kernels lost beside OpenBLAS's threads, which spin between the step's matrix products
#: on the cores the kernel's threads need: 100 updates of ``bonus/best`` with 2 threads on a
#: 2-core host took 1.8-2.2 s with every kernel on the calling thread, 2.3-2.4 s split with
#: OpenMP's threads spinning briefly, 2.9-3.7 s split with them sleeping, 2.7-3.0 s with only
#: the update's two large arrays split (NumPy: 1.9-2.5 s). Nor does it pay with OpenBLAS's
#: threads sleeping at once after each product (``OPENBLAS_THREAD_TIMEOUT=4``): a whole
#: epoch of ``bonus/best``'s network took 11.6-12.2 s split, 6.9-7.6 s on the calling
#: thread (29.6-30.6 s split with OpenBLAS's default timeout; shared host, GEMMs 5.4 s)
MIN_SPLIT = 1 << 22


@functools.cache
def _numba_installed() -> bool:
    return importlib.util.find_spec("numba") is not None


def available() -> bool:
    """Whether Numba is installed and ``MLPLAB_KERNELS`` does not turn the kernels off."""
    return _setting() not in ("0", "off", "false", "no") and _numba_installed()


def _setting() -> str:
    return os.environ.get("MLPLAB_KERNELS", "").strip().lower()


def wanted(size: int, threads: int | None = None) -> bool:
    """Whether work on an array of ``size`` elements goes to a kernel (see the module's
    docstring); ``threads``: the run's count (default :func:`mlplab.machine.run_threads`)."""
    if not available():
        return False
    if _setting() in ("1", "on", "true", "yes"):
        return True
    if size >= MIN_FUSED:
        return True
    return size >= MIN_PARALLEL and (run_threads() if threads is None else threads) > 1


_LOCAL = threading.local()  # Numba's thread count is kept per launching thread


def _kernels(name: str, size: int) -> ModuleType:
    """Submodule ``name`` (``update``, ``layers``, ``data``), with Numba's thread count set for
    the calling thread: the run's threads for ``size`` elements of work from
    :data:`MIN_SPLIT` up, else 1 (Numba imports on the first call)."""
    if "mlplab.kernels.update" not in sys.modules:  # before Numba loads its OpenMP runtime
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    mod = importlib.import_module(f"mlplab.kernels.{name}")
    n = run_threads() if size >= MIN_SPLIT else 1
    if getattr(_LOCAL, "threads", None) != n:
        import numba

        numba.set_num_threads(max(1, min(n, getattr(numba.config, "NUMBA_NUM_THREADS", n))))
        _LOCAL.threads = n
    return mod


def _as(a: np.ndarray, value: float) -> Any:
    """``value`` in ``a``'s dtype: NumPy converts a Python float so before using it."""
    return a.dtype.type(value)


# -- optimisers ------------------------------------------------------------------------------
def sgd_scaled(p: np.ndarray, g: np.ndarray, keep: float | None) -> None:
    """Plain SGD on a pre-scaled gradient ``g = -lr dL/dp``: ``p = p * keep + g`` in place
    (``keep = 1 - 2 lr l2``; None: ``p += g``). Flat, contiguous arrays."""
    k = _as(p, 1.0 if keep is None else keep)
    _kernels("update", p.size).sgd_scaled(p, g, k, keep is not None)


def sgd(
    p: np.ndarray,
    g: np.ndarray,
    v: np.ndarray | None,
    *,
    lr: float,
    l2: float,
    decay: float | None,
    momentum: float,
    nesterov: bool,
    fresh: bool,
) -> None:
    """SGD with optional (Nesterov) momentum in place (``SGD._update``'s formula); ``decay``:
    the factor ``1 - lr wd`` of decoupled weight decay, or None. Flat, contiguous arrays."""
    _kernels("update", p.size).sgd(
        p,
        g,
        p if v is None else v,  # not touched without momentum
        _as(p, lr),
        _as(p, 2.0 * l2),
        bool(l2),
        _as(p, 1.0 if decay is None else decay),
        decay is not None,
        _as(p, momentum),
        nesterov,
        fresh,
    )


def adam(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    *,
    lr: float,
    l2: float,
    decay: float | None,
    beta1: float,
    beta2: float,
    eps: float,
    t: int,
) -> None:
    """Adam step ``t`` in place (``Adam._update``'s formula); flat, contiguous arrays."""
    c1, c2 = 1 - beta1**t, 1 - beta2**t
    _kernels("update", p.size).adam(
        p,
        g,
        m,
        v,
        _as(p, 2.0 * l2),
        bool(l2),
        _as(p, 1.0 if decay is None else decay),
        decay is not None,
        _as(p, beta1),
        _as(p, 1 - beta1),
        _as(p, beta2),
        _as(p, 1 - beta2),
        _as(p, c2),
        _as(p, eps),
        _as(p, lr / c1),
    )


# -- layers ----------------------------------------------------------------------------------
def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode batch norm of C-ordered ``x`` ``(n, d)``: ``(out, xhat, inv_std, mu,
    var)`` as :meth:`mlplab.nn.layers.BatchNorm.forward` computes them."""
    d = x.shape[1]
    out, xhat = np.empty_like(x), np.empty_like(x)
    inv_std, mu, var = (np.empty(d, x.dtype) for _ in range(3))
    _kernels("layers", x.size).batchnorm_forward(
        x, gamma, beta, _as(x, eps), _as(x, 1.0), out, xhat, inv_std, mu, var
    )
    return out, xhat, inv_std, mu, var


def batchnorm_backward(
    dout: np.ndarray,
    xhat: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    scale: float,
    dgamma: np.ndarray,
    dbeta: np.ndarray,
) -> np.ndarray:
    """Batch-norm backward (:meth:`mlplab.nn.layers.BatchNorm.backward`): writes
    ``scale * dL/dgamma`` and ``scale * dL/dbeta`` into ``dgamma``, ``dbeta``, returns
    ``dL/dx``."""
    dx = np.empty_like(xhat)
    _kernels("layers", xhat.size).batchnorm_backward(
        np.ascontiguousarray(dout),
        xhat,
        inv_std,
        gamma,
        _as(xhat, dout.shape[0]),
        _as(xhat, scale),
        scale != 1.0,
        dgamma,
        dbeta,
        dx,
    )
    return dx


def add_bias(out: np.ndarray, b: np.ndarray) -> None:
    """``out += b`` on every row of C-ordered ``out`` ``(n, d)``."""
    _kernels("layers", out.size).add_bias(out, b)


def relu(x: np.ndarray) -> np.ndarray:
    """``np.maximum(x, 0)`` of a C-ordered array, as a new array."""
    out = np.empty_like(x)
    _kernels("layers", x.size).relu(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout * (out > 0)`` of C-ordered arrays of one shape, as a new array."""
    dx = np.empty_like(dout)
    _kernels("layers", dx.size).relu_backward(
        np.ascontiguousarray(dout).reshape(-1), out.reshape(-1), dx.reshape(-1)
    )
    return dx


# -- data ------------------------------------------------------------------------------------
def take_rows(X: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    """``out[r] = X[idx[r]]`` for C-ordered ``X`` and ``out``, rows in parallel."""
    _kernels("data", out.size).take_rows(X, idx, out)


def flip(img: np.ndarray, rows: np.ndarray) -> None:
    """Mirror images ``rows`` of ``img`` ``(n, C, H, W)`` left-right, in place."""
    _kernels("data", rows.size * img[0].size).flip(img, rows)


def translate(img: np.ndarray, shifts: np.ndarray) -> None:
    """Shift image ``i`` by ``shifts[i] = (dy, dx)``, zeros coming in, in place."""
    _kernels("data", img.size).translate(img, shifts)


def crop(img: np.ndarray, offsets: np.ndarray, k: int) -> None:
    """Crop image ``i`` at ``offsets[i]`` from its ``k``-pixel reflection padding, in place."""
    _kernels("data", img.size).crop(img, offsets, k)


def cutout(img: np.ndarray, top: np.ndarray, left: np.ndarray, s: int) -> None:
    """Zero the ``s x s`` square at ``(top[i], left[i])`` of image ``i``, clipped, in place."""
    _kernels("data", img.size).cutout(img, top, left, s)
