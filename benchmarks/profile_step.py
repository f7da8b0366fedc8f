"""Where a training epoch's time goes, by function (cProfile), for one benchmark case.

    python benchmarks/profile_step.py [--case bonus/best] [--updates 200] [--top 14] [--threads 1]

Trains ``--updates`` updates of the case (see ``bench_epoch.py``) on random
CIFAR-shaped data under cProfile and prints the functions with the most own time
(``tottime``), each as a share of the total: the GEMMs show up inside the layers'
``forward``/``backward``, the elementwise updates inside the optimiser's ``_update`` (or,
for large arrays, its compiled kernel, :mod:`mlplab.kernels`). ``--threads`` sets the BLAS
threads and the kernels' threads alike.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import bench_epoch
import numpy as np
from bench_epoch import CASES, mlplab_epoch

from mlplab.machine import blas_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="bonus/best", choices=list(CASES))
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--top", type=int, default=14)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with blas_threads(args.threads):
        profile(args)


def profile(args: argparse.Namespace) -> None:
    n = args.updates * 100  # one epoch of that many batches of 100
    bench_epoch.N = n
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3072), dtype=np.float32)
    y = rng.integers(0, 10, n)
    mlplab_epoch(X[:2000], y[:2000], CASES[args.case], 0)  # warm-up
    prof = cProfile.Profile()
    prof.enable()
    mlplab_epoch(X, y, CASES[args.case], 0)
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    print(f"{args.case}: {args.updates} updates, {total:.2f} s of own time in all functions")
    for (file, line, func), (_, calls, tottime, _, _) in rows[: args.top]:
        where = f"{file.rsplit('/', 1)[-1]}:{line}" if line else file
        print(f"{100 * tottime / total:6.1f} %  {tottime:7.3f} s  {calls:>7}  {func} ({where})")


if __name__ == "__main__":
    main()
