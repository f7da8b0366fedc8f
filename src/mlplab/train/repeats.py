"""One configuration trained with several consecutive seeds: the mean and spread of its score.

A search trial, or any comparison that must not hinge on one lucky run: training ``r``
uses seed ``s + r`` (its own split, initialisation and batch order), exactly as
``mlplab train --set seed=s+r`` would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import Config, apply_overrides
from mlplab.errors import TrainingDiverged
from mlplab.train.prepared import load_split
from mlplab.train.trainer import train_on_splits


def train_seeds(cfg: Config, root: Path, repeats: int = 1) -> tuple[dict[str, Any], float]:
    """Train ``cfg`` ``repeats`` times (seeds ``s, s+1, ...``) on the splits prepared under
    ``root`` (:mod:`mlplab.train.prepared`); the runs' attributes and their score.

    Training ``r`` is exactly ``mlplab train`` with seed ``s + r``; the score is the mean
    validation accuracy. A diverged training scores the trial 0 (attribute ``diverged``):
    a result, not a failure, so the slot is not retried forever.
    """
    wall, base = time.perf_counter(), cfg
    attrs: dict[str, Any] = {}
    vals, trains, seconds = [], [], 0.0
    for r in range(repeats):
        run_cfg = apply_overrides(base, {"seed": str(base.seed + r)})
        splits, rng = load_split(root, run_cfg)
        try:
            _net, trainer, m = train_on_splits(run_cfg, splits, rng, progress=False)
        except TrainingDiverged as e:
            attrs["diverged"] = f"seed {run_cfg.seed}: {e}"
            break
        seconds += trainer.seconds
        vals.append(float(m["val_accuracy"]))
        trains.append(float(m["train_accuracy"]))
    value = 0.0 if "diverged" in attrs else float(np.mean(vals))
    if vals:
        attrs["train_accuracy"] = float(np.mean(trains))
    if repeats > 1:
        attrs.update(seeds=[base.seed + r for r in range(repeats)], val_accuracies=vals)
        if len(vals) == repeats:
            attrs["val_sd"] = float(np.std(vals, ddof=1))
    attrs.update(seconds=seconds, wall_seconds=time.perf_counter() - wall)
    return attrs, value
