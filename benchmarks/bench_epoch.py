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
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from mlplab.config import Config, load_recipe
from mlplab.machine import host_line, machine_facts
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
        threads=blas_threads(),  # recorded only: the benchmark's BLAS threads are the process's
    ).validate()


def mlplab_epoch(X, y, c: Case, seed) -> float:
    cfg = _config(c, seed)
    rng = np.random.default_rng(seed)
    net = Network.build(D, c.hidden, K, rng=rng, init="he", batch_norm=c.bn, drop_prob=c.drop)
    tr = Trainer(net, cfg, rng, progress=False)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES), help=f"among: {', '.join(CASES)}")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of rest before each run")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    names = args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose among {', '.join(CASES)}")
    threads = blas_threads()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    y = rng.integers(0, K, N)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    peak = gemm_peak()  # measured again at the end; the larger value is used
    facts = machine_facts(threads)
    print(f"host: {host_line(facts)}; numpy {np.__version__}, torch {torch.__version__}")
    print(f"measured float32 GEMM peak: {peak:.1f} GFLOP/s")
    rows: dict[str, dict] = {}
    print(
        f"{'case':<20}{'mlplab s':>10}{'torch s':>10}{'ratio':>8}{'vs SGD':>8}{'GFLOP':>8}"
        f"{'GFLOP/s':>9}{'% peak':>8}{'GEMM s':>8}{'update s':>10}"
    )
    for name in names:
        c = CASES[name]
        ours, theirs = [], []
        mlplab_epoch(X[:2000], y[:2000], c, 0)  # warm-up (page-in, BLAS buffers)
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
        sgd = rows.get(SGD_OF.get(name, ""), {}).get("mlplab_s")
        row = {
            "case": name,
            "mlplab_s": m,
            "torch_s": t,
            "ratio": m / t,
            "vs_sgd": m / sgd if sgd else None,
            "gflop_per_epoch": flops / 1e9,
            "gflops": flops / m / 1e9,
            "peak_fraction": flops / m / 1e9 / peak,
            "gemm_s": gemm,
            "update_s": update,
            "mlplab_all": ours,
            "torch_all": theirs,
        }
        rows[name] = row
        vs = f"{row['vs_sgd']:>8.2f}" if sgd else f"{'':>8}"
        print(
            f"{name:<20}{m:>10.3f}{t:>10.3f}{m / t:>8.2f}{vs}{flops / 1e9:>8.1f}"
            f"{row['gflops']:>9.1f}{100 * row['peak_fraction']:>7.1f}%{gemm:>8.3f}{update:>10.3f}"
        )
    peak_after = gemm_peak()
    if peak_after > peak:
        print(
            f"GEMM peak measured again at the end: {peak_after:.1f} GFLOP/s (used above: "
            f"{peak:.1f}); % peak with it: "
            + ", ".join(f"{n} {100 * r['gflops'] / peak_after:.1f}%" for n, r in rows.items())
        )
        peak = peak_after
    if args.json:
        with open(args.json, "w") as f:
            out = {"host": facts, "gemm_peak_gflops": peak, "rows": list(rows.values())}
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
