"""One training epoch, mlplab against PyTorch on the CPU, alternated in one run.

    python benchmarks/bench_epoch.py [--repeats 5] [--nets 3072-50-10,...] [--json out.json]

Each net trains one epoch of 45,000 CIFAR-shaped float32 samples (450 updates of
batch 100, L2 weight 0.01, cyclical learning rate) with mlplab and with the
same layers in PyTorch (``torch.set_num_threads`` = mlplab's BLAS threads,
weight decay 2*lam which is the same L2 gradient). The two alternate
``--repeats`` times; the table gives the medians, the ratio mlplab / PyTorch,
the FLOPs per epoch and the fraction of the machine's float32 GEMM peak (measured
here with a large matrix product) that mlplab reaches.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_info

from mlplab.config import Config
from mlplab.nn.network import Network
from mlplab.train.trainer import Trainer

N, D, K, B, LAM = 45_000, 3072, 10, 100, 0.01
NETS = {
    "3072-50-10": ([50], False),
    "3072-50-50-10-bn": ([50, 50], True),
    "3072-1024-512-10": ([1024, 512], False),
}


def blas_threads() -> int:
    return max(int(i.get("num_threads", 1)) for i in threadpool_info() if i["user_api"] == "blas")


def gemm_peak(size: int = 2048, reps: int = 10) -> float:
    """Best float32 GFLOP/s of a ``size``-cubed matrix product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def epoch_flops(sizes: list[int]) -> float:
    """Multiply-adds x 2 of one epoch: forward, weight gradients and input gradients."""
    macs = [a * b for a, b in itertools.pairwise(sizes)]
    per_sample = 2 * (sum(macs) + sum(macs) + sum(macs[1:]))
    return per_sample * (N // B) * B


def mlplab_epoch(X, y, hidden, bn, seed) -> float:
    cfg = Config(
        name="bench",
        split="all",
        hidden=hidden,
        batch_norm=bn,
        init="he",
        lam=LAM,
        batch_size=B,
        n_s=900,
        cycles=1,
        seed=seed,
    ).validate()
    rng = np.random.default_rng(seed)
    net = Network.build(D, hidden, K, rng=rng, init="he", batch_norm=bn)
    tr = Trainer(net, cfg, rng, progress=False)
    t = time.perf_counter()
    tr.fit(X, y, record=False, max_updates=N // B)
    return time.perf_counter() - t


def torch_model(hidden, bn):
    layers, d = [], D
    for h in hidden:
        layers.append(torch.nn.Linear(d, h, bias=not bn))
        if bn:
            layers.append(torch.nn.BatchNorm1d(h))
        layers.append(torch.nn.ReLU())
        d = h
    layers.append(torch.nn.Linear(d, K))
    return torch.nn.Sequential(*layers)


def torch_epoch(Xt, yt, hidden, bn, seed) -> float:
    torch.manual_seed(seed)
    model = torch_model(hidden, bn)
    decay = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    rest = [p for p in model.parameters() if all(p is not w for w in decay)]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 2 * LAM}, {"params": rest, "weight_decay": 0.0}], lr=1e-5
    )
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, 1e-5, 1e-1, step_size_up=900, cycle_momentum=False
    )
    g = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    perm = torch.randperm(N, generator=g)
    for b in range(N // B):
        idx = perm[b * B : (b + 1) * B]
        xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of rest before each run")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    threads = blas_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, K, N)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    peak = gemm_peak()  # measured again at the end; the larger value is used
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"BLAS threads {threads}, numpy {np.__version__}, torch {torch.__version__}"
    )
    print(f"measured float32 GEMM peak: {peak:.1f} GFLOP/s")
    rows = []
    header = (
        f"{'net':<20}{'mlplab s':>10}{'torch s':>10}{'ratio':>8}{'GFLOP':>8}"
        f"{'GFLOP/s':>9}{'% peak':>8}"
    )
    print(header)
    for name in args.nets.split(","):
        hidden, bn = NETS[name]
        ours, theirs = [], []
        mlplab_epoch(X[:2000], y[:2000], hidden, bn, 0)  # warm-up (page-in, BLAS buffers)
        for r in range(args.repeats):
            # a pause before each timed run lets the other library's worker threads stop
            # spinning (OpenMP and OpenBLAS threads busy-wait for a while after their work)
            time.sleep(args.pause)
            ours.append(mlplab_epoch(X, y, hidden, bn, r))
            time.sleep(args.pause)
            theirs.append(torch_epoch(Xt, yt, hidden, bn, r))
        m, t = statistics.median(ours), statistics.median(theirs)
        flops = epoch_flops([D, *hidden, K])
        row = {
            "net": name,
            "mlplab_s": m,
            "torch_s": t,
            "ratio": m / t,
            "gflop_per_epoch": flops / 1e9,
            "gflops": flops / m / 1e9,
            "peak_fraction": flops / m / 1e9 / peak,
            "mlplab_all": ours,
            "torch_all": theirs,
        }
        rows.append(row)
        print(
            f"{name:<20}{m:>10.3f}{t:>10.3f}{m / t:>8.2f}{flops / 1e9:>8.1f}"
            f"{row['gflops']:>9.1f}{100 * row['peak_fraction']:>7.1f}%"
        )
    peak_after = gemm_peak()
    if peak_after > peak:
        print(
            f"GEMM peak measured again at the end: {peak_after:.1f} GFLOP/s (used above: "
            f"{peak:.1f}); % peak with it: "
            + ", ".join(f"{r['net']} {100 * r['gflops'] / peak_after:.1f}%" for r in rows)
        )
        peak = peak_after
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "gemm_peak_gflops": peak, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
