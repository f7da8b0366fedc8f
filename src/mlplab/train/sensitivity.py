"""Sensitivity to initialisation (DD2424 assignment 3).

Trains the same net with every weight drawn from N(0, sigma^2), for each sigma,
with and without batch normalisation, and draws the loss curves side by side
(with BN left, without right, one row per sigma).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlplab.config import Config
from mlplab.data import RawDataset
from mlplab.fileio import atomic_write_bytes, atomic_write_json
from mlplab.report.document import Table, markdown_table
from mlplab.report.plots import plot_sensitivity
from mlplab.train.reuse import Cache
from mlplab.train.run import cached_experiment

DEFAULT_SIGMAS = (1e-1, 1e-3, 1e-4)


def run_sensitivity(
    cfg: Config,
    out_dir: str | os.PathLike,
    raw: RawDataset,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    *,
    cache: Cache | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the 2 x len(sigmas) trainings (each reused if done, see :mod:`.reuse`); write
    ``sensitivity.png``, ``.md`` and ``.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    histories: dict[tuple[float, bool], list[dict[str, float]]] = {}
    for sigma in sigmas:
        for bn in (True, False):
            sub = dataclasses.replace(
                cfg,
                init="normal",
                init_sigma=float(sigma),
                batch_norm=bn,
                name=f"{cfg.name} sigma={sigma:g} {'BN' if bn else 'no BN'}",
            )
            sub.validate()
            run_dir = out / f"sigma-{sigma:g}-{'bn' if bn else 'nobn'}"
            res = cached_experiment(sub, run_dir, raw=raw, cache=cache, progress=progress)
            histories[(sigma, bn)] = res["history"]
            rows.append(
                {
                    "sigma": sigma,
                    "batch_norm": bn,
                    "test_accuracy": res["test_accuracy"],
                    "final_train_loss": res["history"][-1]["train_loss"],
                    "results": str(run_dir.name + "/results.json"),
                }
            )
    plot_sensitivity(histories, sigmas, out / "sensitivity.png")
    atomic_write_json(out / "sensitivity.json", rows)
    atomic_write_bytes(out / "sensitivity.md", sensitivity_table(rows).encode())
    return rows


def sensitivity_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: one row per sigma, test accuracy with and without BN."""
    by = {(r["sigma"], r["batch_norm"]): r["test_accuracy"] for r in rows}
    body = [
        (f"{sigma:g}", f"{100 * by[(sigma, True)]:.2f} %", f"{100 * by[(sigma, False)]:.2f} %")
        for sigma in dict.fromkeys(r["sigma"] for r in rows)
    ]
    head = ("σ", "test accuracy with BN", "test accuracy without BN")
    return markdown_table(Table(head, body)) + "\n"
