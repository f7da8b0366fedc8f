"""Batch norm, bias and ReLU as fused, parallel Numba kernels (see :mod:`mlplab.kernels`).

The arrays are C-ordered ``(n, d)`` mini-batches. The batch-norm kernels give each thread
whole blocks of :data:`COLUMNS` columns and walk the rows of a block in order, so a
column's sum is ``((0 + x[0]) + x[1]) + ... + x[n-1]``, the order in which NumPy reduces
the first axis of a C-ordered array: the means, variances and gradient sums are the same
bits as NumPy's, whatever the thread count. A block (``n x 128`` values) stays in the cache
across the kernel's passes, where NumPy's version crosses the whole array once per
operation. ``fastmath`` is off (no reordering, no fused multiply-add).

Every inner loop runs over a row slice from index 0, so that LLVM can vectorise it (with
indices it cannot prove non-negative, Numba's negative-index handling kept the loops scalar).
"""

from __future__ import annotations

import numba
import numpy as np

#: columns per batch-norm block (a block of 100 rows is 50 KiB in float32)
COLUMNS = 128

#: compiled on first use, cached on disk, IEEE arithmetic as written, without the GIL
kernel = numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)


@kernel
def batchnorm_forward(x, gamma, beta, eps, one, out, xhat, inv_std, mu, var):  # pragma: no cover
    """Training-mode batch norm, written into ``out``, ``xhat`` ``(n, d)`` and ``inv_std``,
    ``mu``, ``var`` ``(d,)``. The NumPy reference (:class:`mlplab.nn.layers.BatchNorm`)::

        mu = x.mean(0);  xc = x - mu;  var = (xc * xc).mean(0)
        inv_std = 1 / sqrt(var + eps);  xhat = xc * inv_std;  out = xhat * gamma + beta

    A mean is the float32 sum divided by ``n`` in float64 and rounded, as ``np.mean`` does;
    ``eps`` and ``one`` (1) come in the arrays' dtype.
    """
    n, d = x.shape
    for blk in numba.prange((d + COLUMNS - 1) // COLUMNS):
        j0 = blk * COLUMNS
        j1 = min(d, j0 + COLUMNS)
        w = j1 - j0
        m, s, r = mu[j0:j1], var[j0:j1], inv_std[j0:j1]
        ga, be = gamma[j0:j1], beta[j0:j1]
        acc = np.zeros(w, x.dtype)
        for i in range(n):
            xi = x[i, j0:j1]
            for j in range(w):
                acc[j] += xi[j]
        for j in range(w):
            m[j] = acc[j] / np.float64(n)
            acc[j] = 0
        for i in range(n):
            xi = x[i, j0:j1]
            for j in range(w):
                c = xi[j] - m[j]
                acc[j] += c * c
        for j in range(w):
            s[j] = acc[j] / np.float64(n)
            r[j] = one / np.sqrt(s[j] + eps)
        for i in range(n):
            xi, hi, oi = x[i, j0:j1], xhat[i, j0:j1], out[i, j0:j1]
            for j in range(w):
                h = (xi[j] - m[j]) * r[j]
                hi[j] = h
                oi[j] = h * ga[j] + be[j]


@kernel
def batchnorm_backward(dout, xhat, inv_std, gamma, fn, scale, use_scale, dgamma, dbeta, dx):
    """Batch-norm backward into ``dgamma``, ``dbeta`` ``(d,)`` and ``dx`` ``(n, d)``::

        dgamma = sum_i dout * xhat;  dbeta = sum_i dout    (times scale, if use_scale)
        dxhat = dout * gamma
        dx = ((n * dxhat - sum_i dxhat) - xhat * sum_i dxhat * xhat) * (inv_std / n)

    ``fn`` is ``n`` and ``scale`` the gradient scale, both in the arrays' dtype.
    """  # pragma: no cover - compiled
    n, d = dout.shape
    for blk in numba.prange((d + COLUMNS - 1) // COLUMNS):
        j0 = blk * COLUMNS
        j1 = min(d, j0 + COLUMNS)
        w = j1 - j0
        ga, r = gamma[j0:j1], inv_std[j0:j1]
        s_gx = np.zeros(w, dout.dtype)
        s_g = np.zeros(w, dout.dtype)
        s_h = np.zeros(w, dout.dtype)
        s_hx = np.zeros(w, dout.dtype)
        for i in range(n):
            gi, xi = dout[i, j0:j1], xhat[i, j0:j1]
            for j in range(w):
                h = gi[j] * ga[j]
                s_gx[j] += gi[j] * xi[j]
                s_g[j] += gi[j]
                s_h[j] += h
                s_hx[j] += h * xi[j]
        dga, dbe = dgamma[j0:j1], dbeta[j0:j1]
        for j in range(w):
            if use_scale:
                dga[j] = s_gx[j] * scale
                dbe[j] = s_g[j] * scale
            else:
                dga[j] = s_gx[j]
                dbe[j] = s_g[j]
            s_g[j] = r[j] / fn  # reused: the final factor inv_std / n
        for i in range(n):
            gi, xi, oi = dout[i, j0:j1], xhat[i, j0:j1], dx[i, j0:j1]
            for j in range(w):
                oi[j] = ((fn * (gi[j] * ga[j]) - s_h[j]) - xi[j] * s_hx[j]) * s_g[j]


@kernel
def add_bias(out, b):  # pragma: no cover - compiled
    """``out += b`` on every row of ``out`` ``(n, d)``."""
    for i in numba.prange(out.shape[0]):
        oi = out[i]
        for j in range(oi.size):
            oi[j] = oi[j] + b[j]


@kernel
def relu(x, out):  # pragma: no cover - compiled
    """``out = np.maximum(x, 0)`` on flat arrays: ``x`` where ``x > 0`` or NaN, else ``+0``."""
    for i in numba.prange(x.size):
        v = x[i]
        out[i] = v if (v > 0 or v != v) else 0


@kernel
def relu_backward(dout, out, dx):  # pragma: no cover - compiled
    """``dx = dout * (out > 0)`` on flat arrays: the multiplication by 1 or 0 is kept, so
    that a NaN or infinite ``dout`` and the sign of zero come out as NumPy's."""
    for i in numba.prange(dout.size):
        dx[i] = dout[i] * (1 if out[i] > 0 else 0)
