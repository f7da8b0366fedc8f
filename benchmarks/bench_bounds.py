"""What bounds an epoch and how it would scale: helpers of ``bench_epoch.py``.

The optimiser's traffic at the measured memory bandwidth (with the GEMMs alone, the bound
of an epoch), Amdahl's law from measured 1- and 2-thread times, and the restart without
``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np


def bandwidth(size: int = 1 << 25, reps: int = 5) -> float:
    """Best memory bandwidth (bytes/s) of the triad ``p = p * k + g`` on two 128 MiB float32
    arrays, with the current threads (mlplab's kernel; NumPy's one thread without Numba)."""
    p = np.ones(size, np.float32)
    g = np.full(size, 1e-3, np.float32)
    try:
        from mlplab import kernels

        def triad() -> None:
            kernels.sgd_scaled(p, g, 0.999)
    except ImportError:  # an mlplab without kernels: NumPy's passes

        def triad() -> None:
            np.multiply(p, np.float32(0.999), out=p)
            np.add(p, g, out=p)

    triad()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        triad()
        best = min(best, time.perf_counter() - t)
    return 3 * 4 * size / best


def amdahl(t1: float, t2: float, n: int) -> float:
    """Amdahl's law for ``n`` threads with the serial fraction ``s`` that the measured 1- and
    2-thread times give (``t2 = t1 (s + (1 - s) / 2)``, clamped to [0, 1])."""
    s = min(1.0, max(0.0, 2.0 * t2 / t1 - 1.0))
    return t1 * (s + (1.0 - s) / n)


def without_openblas_overrides() -> None:
    """Restart this command once without ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``
    (both, together), so that OpenBLAS picks its own kernel for this CPU."""
    unset = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if not unset:
        return
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["MLPLAB_BENCH_UNSET"] = ",".join(f"{k}={os.environ[k]}" for k in unset)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def project(name: str, one: dict, two: dict) -> dict:
    """The 1 -> 2 thread speed-ups and the Amdahl projection for 4, 8 and 16 cores."""
    rest1, rest2 = one["mlplab_s"] - one["gemm_s"], two["mlplab_s"] - two["gemm_s"]
    out = {
        "case": name,
        "non_gemm_speedup": rest1 / rest2,
        "gemm_speedup": one["gemm_s"] / two["gemm_s"],
        "mlplab_speedup": one["mlplab_s"] / two["mlplab_s"],
        "torch_speedup": one["torch_s"] / two["torch_s"],
        "projected": {
            n: {
                "mlplab_s": amdahl(one["gemm_s"], two["gemm_s"], n) + amdahl(rest1, rest2, n),
                "torch_s": amdahl(one["torch_s"], two["torch_s"], n),
            }
            for n in (4, 8, 16)
        },
    }
    proj = ", ".join(
        f"N={n} {p['mlplab_s']:.2f} s vs {p['torch_s']:.2f} s" for n, p in out["projected"].items()
    )
    print(
        f"  {name}: 1 -> 2 threads: non-GEMM part {out['non_gemm_speedup']:.2f}x (target >= 1.7), "
        f"GEMMs {out['gemm_speedup']:.2f}x, epoch {out['mlplab_speedup']:.2f}x, PyTorch "
        f"{out['torch_speedup']:.2f}x; projection (Amdahl, mlplab vs PyTorch): {proj}",
        flush=True,
    )
    return out
