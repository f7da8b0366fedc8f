"""The optimisers' updates as fused, parallel Numba kernels (see :mod:`mlplab.kernels`).

Each kernel is the in-place NumPy code of :mod:`mlplab.optim.optimizers` in one pass: every
element goes through the same IEEE operations, in the same order and the same precision
(the scalars arrive already converted to the arrays' dtype, as NumPy converts a Python float
before it multiplies a float32 array), so the results are the same bits. ``fastmath`` is off,
so LLVM neither reorders nor contracts ``a * b + c`` into a fused multiply-add.

The arrays are flat (``p.reshape(-1)``); ``prange`` splits the elements among the threads
in contiguous ranges, and LLVM vectorises each loop (8 floats per AVX2 instruction; a loop
over chunks whose bounds it cannot prove non-negative was not vectorised, and ran 2.7x
slower). Every element is independent of the others, so the result does not depend on the
thread count at all.
"""

from __future__ import annotations

import numba
import numpy as np

#: compiled on first use, cached on disk, IEEE arithmetic as written, without the GIL
kernel = numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)


@kernel
def sgd_scaled(p, g, keep, use_keep):  # pragma: no cover - compiled
    """Plain SGD with the gradient pre-scaled by ``-lr``: ``p = p * keep + g``
    (``keep = 1 - 2 lr l2``, skipped when ``use_keep`` is False, as NumPy skips it)."""
    for i in numba.prange(p.size):
        x = p[i]
        if use_keep:
            x = x * keep
        p[i] = x + g[i]


@kernel
def sgd(p, g, v, lr, c2l2, use_l2, decay, use_decay, mu, nesterov, fresh):  # pragma: no cover
    """SGD, heavy-ball or Nesterov momentum, one pass (``v`` is ignored when ``mu == 0``)::

    gg = g + c2l2 * p        (c2l2 = 2 l2; only with use_l2)
    p  = p * decay           (decoupled weight decay; only with use_decay)
    v  = gg (fresh) or v * mu + gg
    p  = p - (gg * lr)               mu == 0
    p  = p - (v * lr)                heavy ball
    p  = p - ((v * mu + gg) * lr)    Nesterov
    """
    for i in numba.prange(p.size):
        x = p[i]
        gg = g[i]
        if use_l2:
            gg = x * c2l2 + gg
        if use_decay:
            x = x * decay
        if mu == 0:
            p[i] = x - gg * lr
        else:
            vi = gg if fresh else v[i] * mu + gg
            v[i] = vi
            if nesterov:
                p[i] = x - (vi * mu + gg) * lr
            else:
                p[i] = x - vi * lr


@kernel
def adam(p, g, m, v, c2l2, use_l2, decay, use_decay, b1, one_b1, b2, one_b2, c2, eps, step):
    """Adam in one pass (``step = lr / c1``, ``c_k = 1 - b_k^t``)::

    gg = g + c2l2 * p;  p = p * decay                     (as in sgd)
    m  = m * b1 + gg * (1 - b1)
    v  = v * b2 + (gg * gg) * (1 - b2)
    p  = p - (m * step) / (sqrt(v / c2) + eps)
    """  # pragma: no cover - compiled
    for i in numba.prange(p.size):
        x = p[i]
        gg = g[i]
        if use_l2:
            gg = x * c2l2 + gg
        if use_decay:
            x = x * decay
        mi = m[i] * b1 + gg * one_b1
        vi = v[i] * b2 + (gg * gg) * one_b2
        m[i] = mi
        v[i] = vi
        p[i] = x - (mi * step) / (np.sqrt(vi / c2) + eps)
