"""One training epoch, mlplab against PyTorch on the CPU, alternated in one run.

    python benchmarks/bench_epoch.py [--repeats 5] [--cases 3072-50-10,...] [--json out.json]

Each case trains one epoch of 45,000 CIFAR-shaped float32 samples (450 updates of
batch 100, cyclical learning rate) with mlplab and with the same layers, optimiser,
L2 term (PyTorch's weight_decay = 2 * lam on the dense weights), batch norm, dropout,
label smoothing and augmentation work in PyTorch (``torch.set_num_threads`` =
mlplab's BLAS threads). The two alternate ``--repeats`` times; the table gives the
medians, the ratio mlplab / PyTorch, the ratio to plain SGD on the same net (the
optimisers' own cost), the FLOPs per epoch and the fraction of the machine's float32
GEMM peak (measured here with a large matrix product) that mlplab reaches.

Two more columns say what bounds each epoch, measured in the same run: ``GEMM s``, the
epoch's matrix products alone (forward, weight and input gradients, on arrays of the
epoch's shapes), and ``update s``, the optimiser's 450 steps alone on the case's
parameters (each the best of 2). Case ``bonus/best`` is built from that shipped recipe
(network, optimiser, batch norm, dropout, flips, translations, label smoothing, L2, peak
rate), so it follows the recipe; its whitening and flip averaging happen outside the epoch.

Every case runs at each thread count of ``--threads`` (default 1 and 2: BLAS, PyTorch and
mlplab's kernels alike), and the table states the performance targets per case and count:

- ``bound s``: the GEMMs alone plus the optimiser's minimal memory traffic (each parameter,
  gradient and state array read once, each written array written once, at the bandwidth
  measured here with the same threads); ``/bound`` = mlplab s / bound s, target <= 1.10;
- ``rest s`` = mlplab s - GEMM s - update s; the non-GEMM part (mlplab s - GEMM s) should be
  >= 1.7x faster with 2 threads than with 1;
- ``ratio`` = mlplab / PyTorch in the same run, target <= 0.6;
- a projection for N = 4, 8, 16 cores (Amdahl's law, each part's serial fraction taken from
  its measured 1- and 2-thread times), beside PyTorch's measured scaling from 1 to 2 threads
  projected the same way. It is a projection, not a measurement.

Some hosts set ``OPENBLAS_CORETYPE`` (and ``OPENBLAS_L2_SIZE``) for old OpenBLAS builds; the
benchmark restarts itself once without both (``--keep-openblas-env`` keeps them), so that
OpenBLAS picks its own kernel, and the header names the kernel that ran.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from bench_bounds import bandwidth, project, without_openblas_overrides

from mlplab.config import Config, load_recipe
from mlplab.machine import blas_threads as run_with_threads
from mlplab.machine import host_line, machine_facts, usable_cores
from mlplab.nn.network import Network
from mlplab.train.trainer import Trainer

N, D, K, B = 45_000, 3072, 10, 100
WIDE = [1024, 512]


@dataclass(frozen=True)
class Case:
    hidden: list[int]
    optimizer: str = "sgd"
    bn: bool = False
    drop: float = 0.0
    flip: bool = False
    translate: int = 0
    smoothing: float = 0.0
    lam: float = 0.01
    eta_max: float = 0.1
    momentum: float = 0.9


def recipe_case(name: str) -> Case:
    """The network and ingredients of a shipped recipe, as a benchmark case."""
    cfg = load_recipe(name)
    return Case(
        list(cfg.hidden),
        cfg.optimizer,
        bn=cfg.batch_norm,
        drop=cfg.drop_prob,
        flip=cfg.flip,
        translate=cfg.translate,
        smoothing=cfg.label_smoothing,
        lam=cfg.lam,
        eta_max=cfg.eta_max,
        momentum=cfg.momentum,
    )


CASES = {
    "3072-50-10": Case([50]),
    "3072-50-50-10-bn": Case([50, 50], bn=True),
    "3072-1024-512-10": Case(WIDE),
    "wide momentum": Case(WIDE, "momentum", eta_max=0.05),
    "wide nesterov": Case(WIDE, "nesterov", eta_max=0.05),
    "wide adam": Case(WIDE, "adam", eta_max=1e-3),
    "bonus/best": recipe_case("bonus/best"),
}
#: the plain-SGD case each optimiser case is compared with
SGD_OF = {name: "3072-1024-512-10" for name, c in CASES.items() if c.hidden == WIDE}


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

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


def gemm_seconds(c: Case, reps: int = 2) -> float:
    """Best time of one epoch's matrix products alone: per update, ``x @ W`` for every
    layer, ``x.T @ dout`` for every weight gradient and ``dout @ W.T`` for every input
    gradient but the first layer's (which mlplab skips), on float32 arrays of its shapes."""
    rng = np.random.default_rng(0)
    sizes = [D, *c.hidden, K]
    Ws = [rng.standard_normal((a, b), dtype=np.float32) for a, b in itertools.pairwise(sizes)]
    xs = [rng.standard_normal((B, a), dtype=np.float32) for a in sizes[:-1]]
    ds = [rng.standard_normal((B, b), dtype=np.float32) for b in sizes[1:]]
    outs = [np.empty((B, b), np.float32) for b in sizes[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    dxs = [np.empty((B, a), np.float32) for a in sizes[:-1]]
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(N // B):
            for i, W in enumerate(Ws):
                np.matmul(xs[i], W, out=outs[i])
                np.matmul(xs[i].T, ds[i], out=dWs[i])
                if i:
                    np.matmul(ds[i], W.T, out=dxs[i])
        best = min(best, time.perf_counter() - t)
    return best


def update_seconds(c: Case, reps: int = 2) -> float:
    """Best time of one epoch's optimiser steps alone (450 ``step`` calls on the case's
    parameters and gradients, with the gradient scale the optimiser asks for)."""
    cfg = _config(c, 0)
    net = Network.build(D, c.hidden, K, rng=np.random.default_rng(0), init="he", batch_norm=c.bn)
    opt = Trainer(net, cfg, np.random.default_rng(0), progress=False).optimizer
    params, grads = net.params(), net.grads()
    for g in grads.values():
        g[...] = np.random.default_rng(1).standard_normal(g.shape, dtype=np.float32) * 1e-3
    lr = c.eta_max / 10
    scale = opt.grad_scale(lr)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(N // B):
            opt.step(params, grads, lr, scale=scale)
        best = min(best, time.perf_counter() - t)
    return best


def _config(c: Case, seed: int) -> Config:
    return Config(
        name="bench",
        split="all",
        hidden=c.hidden,
        batch_norm=c.bn,
        drop_prob=c.drop,
        flip=c.flip,
        translate=c.translate,
        label_smoothing=c.smoothing,
        optimizer=c.optimizer,
        momentum=c.momentum,
        init="he",
        lam=c.lam,
        batch_size=B,
        eta_max=c.eta_max,
        n_s=900,
        cycles=1,
        seed=seed,
        threads=blas_threads(),  # the count main() set; the trainer gathers ahead with 1
    ).validate()


def mlplab_epoch(X, y, c: Case, seed) -> float:
    cfg = _config(c, seed)
    rng = np.random.default_rng(seed)
    net = Network.build(D, c.hidden, K, rng=rng, init="he", batch_norm=c.bn, drop_prob=c.drop)
    tr = Trainer(net, cfg, rng, progress=False)  # gathers ahead as a run does
    t = time.perf_counter()
    tr.fit(X, y, record=False, max_updates=N // B)
    return time.perf_counter() - t


def torch_model(c: Case) -> torch.nn.Sequential:
    layers, d = [], D
    for h in c.hidden:
        layers.append(torch.nn.Linear(d, h, bias=not c.bn))
        if c.bn:
            layers.append(torch.nn.BatchNorm1d(h))
        layers.append(torch.nn.ReLU())
        if c.drop:
            layers.append(torch.nn.Dropout(c.drop))
        d = h
    layers.append(torch.nn.Linear(d, K))
    return torch.nn.Sequential(*layers)


def torch_optimizer(c: Case, groups: list[dict]) -> torch.optim.Optimizer:
    if c.optimizer == "adam":
        return torch.optim.Adam(groups, lr=1e-5)
    mom = {
        "sgd": {},
        "momentum": {"momentum": c.momentum},
        "nesterov": {"momentum": c.momentum, "nesterov": True},
    }
    return torch.optim.SGD(groups, lr=1e-5, **mom[c.optimizer])


def torch_augment(xb: torch.Tensor, c: Case, g: torch.Generator) -> torch.Tensor:
    """The same work as mlplab's augment_batch: flip half the images, shift each by up to
    ``translate`` pixels (vacated pixels 0) with one gather from a zero-padded batch."""
    n, k = xb.shape[0], c.translate
    img = xb.view(n, 3, 32, 32)
    if c.flip:
        rows = torch.nonzero(torch.rand(n, generator=g) < 0.5).flatten()
        img[rows] = img[rows].flip(-1)
    if k:
        shifts = torch.randint(-k, k + 1, (n, 2), generator=g)
        padded = torch.nn.functional.pad(img, (k, k, k, k))
        r = (k - shifts[:, 0])[:, None] + torch.arange(32)
        q = (k - shifts[:, 1])[:, None] + torch.arange(32)
        i = torch.arange(n)[:, None, None, None]
        ch = torch.arange(3)[None, :, None, None]
        img = padded[i, ch, r[:, None, :, None], q[:, None, None, :]]
    return img.reshape(n, -1)


def torch_epoch(Xt, yt, c: Case, seed) -> float:
    torch.manual_seed(seed)
    model = torch_model(c).float()  # float32, whatever torch's default dtype was set to
    decay = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    rest = [p for p in model.parameters() if all(p is not w for w in decay)]
    opt = torch_optimizer(
        c, [{"params": decay, "weight_decay": 2 * c.lam}, {"params": rest, "weight_decay": 0.0}]
    )
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, c.eta_max / 100, c.eta_max, step_size_up=900, cycle_momentum=False
    )
    g = torch.Generator().manual_seed(seed)
    augment = c.flip or c.translate
    t = time.perf_counter()
    model.train()
    perm = torch.randperm(N, generator=g)
    for b in range(N // B):
        idx = perm[b * B : (b + 1) * B]
        xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
        if augment:
            xb = torch_augment(xb, c, g)
        out = model(xb)
        loss = torch.nn.functional.cross_entropy(out, yb, label_smoothing=c.smoothing)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - t


def update_bytes(c: Case) -> int:
    """The optimiser's minimal memory traffic per step: every parameter, gradient and state
    element read once, every parameter and state element written once (float32)."""
    net = Network.build(D, c.hidden, K, rng=np.random.default_rng(0), init="he", batch_norm=c.bn)
    slots = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}[c.optimizer]
    return sum(p.size for p in net.params().values()) * 4 * (3 + 2 * slots)


HEADER = (
    f"{'case':<17}{'thr':>4}{'mlplab s':>10}{'torch s':>9}{'ratio':>7}{'vs SGD':>7}"
    f"{'GEMM s':>8}{'update s':>9}{'rest s':>8}{'bound s':>9}{'/bound':>7}{'%peak':>7}"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES), help=f"among: {', '.join(CASES)}")
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2 (at most the cores)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of rest before each run")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE if the environment sets them",
    )
    args = ap.parse_args()
    names = args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose among {', '.join(CASES)}")
    counts = [int(t) for t in args.threads.split(",")]
    if not all(1 <= t <= usable_cores() for t in counts):
        ap.error(f"--threads must be in 1..{usable_cores()}, the cores this process may use")
    if not args.keep_openblas_env:
        without_openblas_overrides()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, K, N)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    facts = machine_facts(max(counts))
    unset = os.environ.get("MLPLAB_BENCH_UNSET")
    print(
        f"host: {host_line(facts)}; numpy {np.__version__}, torch {torch.__version__}"
        + (f"; unset for this command: {unset}" if unset else "")
    )
    peak, bw = {}, {}
    for n in counts:
        with run_with_threads(n):
            peak[n], bw[n] = gemm_peak(), bandwidth()
        print(
            f"{n} thread(s): float32 GEMM peak {peak[n]:.1f} GFLOP/s, "
            f"triad bandwidth {bw[n] / 1e9:.1f} GB/s"
        )
    rows: dict[tuple[str, int], dict] = {}
    scaling = []
    print(HEADER)
    for name in names:
        c = CASES[name]
        for n in counts:
            with run_with_threads(n):
                torch.set_num_threads(n)
                rows[name, n] = row = measure(name, c, n, X, y, Xt, yt, args)
            sgd = rows.get((SGD_OF.get(name, ""), n), {}).get("mlplab_s")
            row["vs_sgd"] = row["mlplab_s"] / sgd if sgd else None
            row["bound_s"] = row["gemm_s"] + update_bytes(c) * (N // B) / bw[n]
            row["vs_bound"] = row["mlplab_s"] / row["bound_s"]
            row["peak_fraction"] = row["gflops"] / peak[n]
            print_row(row)
        if 1 in counts and 2 in counts:
            scaling.append(project(name, rows[name, 1], rows[name, 2]))
    if args.json:
        with open(args.json, "w") as f:
            out = {
                "host": facts,
                "openblas_unset": unset,
                "gemm_peak_gflops": peak,
                "bandwidth_bytes_per_s": bw,
                "rows": list(rows.values()),
                "scaling": scaling,
            }
            json.dump(out, f, indent=2)


def measure(name: str, c: Case, n: int, X, y, Xt, yt, args) -> dict:
    """One case at ``n`` threads: the epochs (medians), the GEMMs alone, the update alone."""
    ours, theirs = [], []
    mlplab_epoch(X[:2000], y[:2000], c, 0)  # warm-up (page-in, BLAS buffers, kernels)
    for r in range(args.repeats):
        # a pause before each timed run lets the other library's worker threads stop
        # spinning (OpenMP and OpenBLAS threads busy-wait for a while after their work)
        time.sleep(args.pause)
        ours.append(mlplab_epoch(X, y, c, r))
        time.sleep(args.pause)
        theirs.append(torch_epoch(Xt, yt, c, r))
    m, t = statistics.median(ours), statistics.median(theirs)
    time.sleep(args.pause)
    gemm = gemm_seconds(c)
    time.sleep(args.pause)
    update = update_seconds(c)
    flops = epoch_flops([D, *c.hidden, K])
    return {
        "case": name,
        "threads": n,
        "mlplab_s": m,
        "torch_s": t,
        "ratio": m / t,
        "gflop_per_epoch": flops / 1e9,
        "gflops": flops / m / 1e9,
        "gemm_s": gemm,
        "update_s": update,
        "rest_s": m - gemm - update,
        "mlplab_all": ours,
        "torch_all": theirs,
    }


def print_row(r: dict) -> None:
    vs = f"{r['vs_sgd']:>7.2f}" if r["vs_sgd"] else f"{'':>7}"
    print(
        f"{r['case']:<17}{r['threads']:>4}{r['mlplab_s']:>10.3f}{r['torch_s']:>9.3f}"
        f"{r['ratio']:>7.2f}{vs}{r['gemm_s']:>8.3f}{r['update_s']:>9.3f}{r['rest_s']:>8.3f}"
        f"{r['bound_s']:>9.3f}{r['vs_bound']:>7.2f}{100 * r['peak_fraction']:>6.1f}%",
        flush=True,
    )


if __name__ == "__main__":
    main()
