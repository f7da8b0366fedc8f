"""One experiment from a recipe: data -> splits -> network -> training -> files.

Writes into the output directory ``results.json``, ``curves.png`` and
``model.npz`` + ``model.json``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import __version__
from mlplab.config import Config
from mlplab.data import RawDataset, Splits, load_cifar10, make_splits
from mlplab.fileio import atomic_write_json, prepare_out_dir
from mlplab.nn.network import Network
from mlplab.nn.serialize import save_network
from mlplab.report.plots import plot_curves
from mlplab.train.trainer import Trainer


def build_network(cfg: Config, d_in: int, n_classes: int, rng: np.random.Generator) -> Network:
    """The network described by ``cfg`` with weights drawn from ``rng``."""
    return Network.build(
        d_in,
        cfg.hidden,
        n_classes,
        rng=rng,
        init=cfg.init,
        init_sigma=cfg.init_sigma or None,
        batch_norm=cfg.batch_norm,
        bn_position=cfg.bn_position,
        bn_alpha=cfg.bn_alpha,
        drop_prob=cfg.drop_prob,
        dtype=cfg.dtype,
    )


def resolved_config(cfg: Config, n_train: int) -> dict[str, Any]:
    """``cfg`` as a dict with the derived quantities of this run filled in."""
    d = cfg.to_dict()
    d["n_s_resolved"] = cfg.resolved_n_s(n_train) if cfg.schedule == "cyclic" else None
    d["total_updates"] = cfg.total_updates(n_train)
    d["n_train_samples"] = n_train
    return d


def train_on_splits(
    cfg: Config, splits: Splits, rng: np.random.Generator, *, progress: bool = True
) -> tuple[Network, Trainer, dict[str, Any]]:
    """Build and train the network of ``cfg`` on ``splits``; return it, its trainer and metrics."""
    net = build_network(cfg, splits.x_train.shape[1], len(splits.classes), rng)
    trainer = Trainer(net, cfg, rng, progress=progress)
    trainer.fit(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    metrics: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        X, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        if len(X):
            ev = net.evaluate(X, y, cfg.lam, cfg.eval_batch)
            metrics.update(
                {
                    f"{part}_accuracy": ev["accuracy"],
                    f"{part}_loss": ev["loss"],
                    f"{part}_cost": ev["cost"],
                }
            )
        else:
            metrics.update({f"{part}_accuracy": None, f"{part}_loss": None, f"{part}_cost": None})
    return net, trainer, metrics


def run_experiment(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    raw: RawDataset | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run ``cfg`` end to end and write its files into ``out_dir``; return the results dict."""
    out = prepare_out_dir(out_dir, overwrite=overwrite)
    wall = time.perf_counter()
    if raw is None:
        raw = load_cifar10(data_dir, progress=progress)
    rng = np.random.default_rng(cfg.seed)
    splits = make_splits(raw, cfg.split, rng, n_train=cfg.n_train or None, dtype=cfg.dtype)
    net, trainer, metrics = train_on_splits(cfg, splits, rng, progress=progress)
    n = splits.x_train.shape[0]
    summary = trainer.summary(n)
    results: dict[str, Any] = {
        "name": cfg.name,
        **metrics,
        **summary,
        "seconds_per_epoch": summary["train_seconds"] / max(summary["epochs"], 1e-12),
        "wall_seconds": time.perf_counter() - wall,
        "n_train": n,
        "n_val": int(splits.x_val.shape[0]),
        "n_test": int(splits.x_test.shape[0]),
        "data_source": raw.source,
        "config": resolved_config(cfg, n),
        "mlplab_version": __version__,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "history": trainer.history,
    }
    save_network(
        out / "model", net, splits.mean, splits.std, splits.classes, {"config": cfg.to_dict()}
    )
    plot_curves(
        trainer.history,
        out / "curves.png",
        title=f"{cfg.name}: test accuracy {_pct(metrics['test_accuracy'])}",
    )
    atomic_write_json(out / "results.json", results)
    return results


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def results_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "results.json"


def config_hash(cfg: Config) -> str:
    """Content hash of a configuration (what decides a run's numbers), for skipping reruns."""
    import hashlib
    import json

    d = cfg.to_dict()
    d.pop("description", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def cached_experiment(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    raw: RawDataset,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`run_experiment`, unless ``out_dir`` already holds results of the same configuration.

    The configuration's content hash is stored in ``results.json``; a directory with
    results of another configuration is re-run (and overwritten), as is any with
    ``force``.
    """
    import json

    path = results_path(out_dir)
    h = config_hash(cfg)
    if path.is_file() and not force:
        try:
            old = json.loads(path.read_text())
            if old.get("config_hash") == h:
                old["reused"] = True
                return old
        except (OSError, ValueError):
            pass
    res = run_experiment(cfg, out_dir, raw=raw, progress=progress, overwrite=True)
    res["config_hash"] = h
    atomic_write_json(path, res)
    return res
