"""One configuration trained with several consecutive seeds: the mean and spread of its score.

A search trial, or any comparison that must not hinge on one lucky run: training ``r``
uses seed ``s + r`` (its own split, initialisation and batch order), exactly as
``mlplab train --set seed=s+r`` would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import Config, apply_overrides
from mlplab.data import Splits
from mlplab.errors import TrainingDiverged
from mlplab.train.prepared import load_split
from mlplab.train.trainer import Trainer, train_on_splits

#: ``on_step(run, trainer, splits)``: called after every update of training ``run``.
OnStep = Callable[[int, Trainer, Splits], None]


class StopTraining(Exception):
    """Raised by an ``on_step`` callback to end the trainings of :func:`train_seeds` early
    (a pruned search trial): ``trainer`` is the stopped one, ``info`` what the callback says
    about it (kept as the attribute ``stopped``)."""

    def __init__(self, reason: str, trainer: Trainer, info: dict[str, Any] | None = None):
        super().__init__(reason)
        self.trainer, self.info = trainer, dict(info or {})


def train_seeds(
    cfg: Config, root: Path, repeats: int = 1, *, on_step: OnStep | None = None
) -> tuple[dict[str, Any], float]:
    """Train ``cfg`` ``repeats`` times (seeds ``s, s+1, ...``) on the splits prepared under
    ``root`` (:mod:`mlplab.train.prepared`); the runs' attributes and their score.

    Training ``r`` is exactly ``mlplab train`` with seed ``s + r``; the score is the mean
    validation accuracy. A diverged training scores the trial 0 (attribute ``diverged``):
    a result, not a failure, so the slot is not retried forever. ``on_step`` (only reads the
    training, which it leaves bit for bit as it is) may raise :class:`StopTraining`: the
    trainings end there, the attribute ``stopped`` says where, and the score is 0.
    Attribute ``updates``: the updates of all trainings, a stopped one's included.
    """
    wall, base = time.perf_counter(), cfg
    attrs: dict[str, Any] = {}
    vals, trains, seconds, updates = [], [], 0.0, 0
    for r in range(repeats):
        run_cfg = apply_overrides(base, {"seed": str(base.seed + r)})
        splits, rng = load_split(root, run_cfg)
        hook = None
        if on_step is not None:
            hook = _bind(on_step, r, splits)
        try:
            _net, trainer, m = train_on_splits(run_cfg, splits, rng, progress=False, on_step=hook)
        except TrainingDiverged as e:
            attrs["diverged"] = f"seed {run_cfg.seed}: {e}"
            break
        except StopTraining as e:
            seconds, updates = seconds + e.trainer.seconds, updates + e.trainer.step
            attrs["stopped"] = {"seed": run_cfg.seed, "reason": str(e), **e.info}
            break
        seconds, updates = seconds + trainer.seconds, updates + trainer.step
        vals.append(float(m["val_accuracy"]))
        trains.append(float(m["train_accuracy"]))
    value = 0.0 if "diverged" in attrs or "stopped" in attrs else float(np.mean(vals))
    if vals:
        attrs["train_accuracy"] = float(np.mean(trains))
    if repeats > 1:
        attrs.update(seeds=[base.seed + r for r in range(repeats)], val_accuracies=vals)
        if len(vals) == repeats:
            attrs["val_sd"] = float(np.std(vals, ddof=1))
    attrs.update(seconds=seconds, updates=updates, wall_seconds=time.perf_counter() - wall)
    return attrs, value


def _bind(on_step: OnStep, run: int, splits: Splits) -> Callable[[Trainer], None]:
    return lambda trainer: on_step(run, trainer, splits)
