"""Ablation of a recipe: the full recipe, then each ingredient removed in turn.

Ingredients are recognised from the recipe's own settings (only those it uses
are ablated). The snapshot ensemble and test-time flip averaging need no extra
training: removing the ensemble means scoring the final model (the last snapshot)
of the full run, removing flip averaging scoring the single views of the same run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlplab.config import Config, apply_overrides
from mlplab.data import RawDataset
from mlplab.errors import ConfigError
from mlplab.fileio import atomic_write_bytes, atomic_write_json
from mlplab.report.document import Table, markdown_table
from mlplab.train.reuse import Cache
from mlplab.train.run import cached_experiment

INGREDIENTS: dict[str, tuple[Callable[[Config], bool], dict[str, str]]] = {
    "batch-norm": (lambda c: c.batch_norm, {"batch_norm": "false"}),
    "dropout": (lambda c: c.drop_prob > 0, {"drop_prob": "0"}),
    "flips": (lambda c: c.flip, {"flip": "false"}),
    "translations": (lambda c: c.translate > 0, {"translate": "0"}),
    "noise": (lambda c: c.noise_std > 0, {"noise_std": "0"}),
    "augmentation": (  # all of it at once: flips, translations and noise
        lambda c: c.flip or c.translate > 0 or c.noise_std > 0,
        {"flip": "false", "translate": "0", "noise_std": "0"},
    ),
    "whitening": (lambda c: c.zca_eps > 0, {"zca_eps": "0"}),
    "label-smoothing": (lambda c: c.label_smoothing > 0, {"label_smoothing": "0"}),
    "l2": (lambda c: c.lam > 0, {"lam": "0"}),
}


def _score(res: dict[str, Any]) -> float:
    """The headline test accuracy of a run: the ensemble's if it has one."""
    return res.get("ensemble_test_accuracy", res["test_accuracy"])


def run_ablation(
    cfg: Config,
    out_dir: str | os.PathLike,
    raw: RawDataset,
    *,
    only: Sequence[str] | None = None,
    cache: Cache | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train the full recipe and every applicable ablation (each reused if done, see
    :mod:`.reuse`); write ``ablation.md`` and ``ablation.json``."""
    names = [n for n, (uses, _) in INGREDIENTS.items() if uses(cfg)]
    if only:
        free = {"snapshot-ensemble", "flip-averaging"}  # scored from the full run, always
        unknown = sorted(set(only) - set(INGREDIENTS) - free)
        if unknown:
            known = sorted(set(INGREDIENTS) | free)
            raise ConfigError(f"unknown ingredients {unknown}; known: {known}")
        names = [n for n in names if n in only]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = cached_experiment(cfg, out / "full", raw=raw, cache=cache, progress=progress)
    rows = [
        {
            "removed": "nothing (full recipe)",
            "test_accuracy": _score(full),
            "wall_seconds": full["wall_seconds"],
            "results": "full/results.json",
        }
    ]
    ensemble = "ensemble_test_accuracy" in full
    free = {  # ingredient -> (the full run's score without it, what that score is)
        "snapshot-ensemble": (full["test_accuracy"] if ensemble else None, "final model only"),
        "flip-averaging": (
            full.get("ensemble_test_accuracy_single_view", full.get("test_accuracy_single_view")),
            "single views",
        ),
    }
    for name, (score, what) in free.items():
        if score is not None:
            rows.append(
                {
                    "removed": name,
                    "test_accuracy": score,
                    "wall_seconds": full["wall_seconds"],
                    "results": f"full/results.json ({what})",
                }
            )
    for name in names:
        sub = apply_overrides(cfg, INGREDIENTS[name][1])
        sub.name = f"{cfg.name} without {name}"
        res = cached_experiment(sub, out / f"no-{name}", raw=raw, cache=cache, progress=progress)
        rows.append(
            {
                "removed": name,
                "test_accuracy": _score(res),
                "wall_seconds": res["wall_seconds"],
                "results": f"no-{name}/results.json",
            }
        )
    base = rows[0]["test_accuracy"]
    for r in rows:
        r["delta"] = r["test_accuracy"] - base
    atomic_write_json(out / "ablation.json", rows)
    atomic_write_bytes(out / "ablation.md", ablation_table(rows).encode())
    return rows


def ablation_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per removed ingredient with test accuracy, change and wall time."""
    body = [
        (
            r["removed"],
            f"{100 * r['test_accuracy']:.2f} %",
            f"{100 * r['delta']:+.2f}",
            f"{r['wall_seconds'] / 60:.1f} min",
        )
        for r in rows
    ]
    head = ("removed", "test accuracy", "change", "wall time")
    return markdown_table(Table(head, body)) + "\n"
