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
from mlplab.data.augment import AUGMENTATIONS, Augmentation
from mlplab.errors import ConfigError
from mlplab.fileio import atomic_write_bytes, atomic_write_json
from mlplab.report.document import Table, markdown_table
from mlplab.train.build import values_for
from mlplab.train.reuse import Cache
from mlplab.train.run import cached_experiment

Ingredient = tuple[Callable[[Config], bool], dict[str, str]]


def _augmentation(cls: type[Augmentation]) -> Ingredient:
    """An augmentation's ingredient: used when its switch is on; removed by its default."""
    switch = cls.switch()
    off = str(cls.options[switch].default).lower()
    return (lambda c: cls.active(values_for(c, cls)), {switch: off})


def ingredients(cfg: Config) -> dict[str, Ingredient]:
    """Name -> (does ``cfg`` use it, the overrides that remove it). The augmentations come
    from :data:`~mlplab.data.augment.AUGMENTATIONS` (each under its ``ablation_name``), then
    all those ``cfg`` uses at once."""
    augs = {cls.ablation_name: _augmentation(cls) for cls in AUGMENTATIONS.values()}
    every = [ingredient for ingredient in augs.values() if ingredient[0](cfg)]
    return {
        "batch-norm": (lambda c: c.batch_norm, {"batch_norm": "false"}),
        "dropout": (lambda c: c.drop_prob > 0, {"drop_prob": "0"}),
        **augs,
        "augmentation": (  # all of it at once
            lambda c: any(uses(c) for uses, _ in every),
            {k: v for _, off in every for k, v in off.items()},
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
    known = ingredients(cfg)
    names = [n for n, (uses, _) in known.items() if uses(cfg)]
    if only:
        free = {"snapshot-ensemble", "flip-averaging"}  # scored from the full run, always
        unknown = sorted(set(only) - set(known) - free)
        if unknown:
            raise ConfigError(f"unknown ingredients {unknown}; known: {sorted(set(known) | free)}")
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
    scored = {  # ingredient -> (the full run's score without it, what that score is)
        "snapshot-ensemble": (full["test_accuracy"] if ensemble else None, "final model only"),
        "flip-averaging": (
            full.get("ensemble_test_accuracy_single_view", full.get("test_accuracy_single_view")),
            "single views",
        ),
    }
    for name, (score, what) in scored.items():
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
        sub = apply_overrides(cfg, known[name][1])
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
