"""Learning-rate range test (Smith 2017, "Cyclical learning rates for training neural networks").

The network of a recipe is trained from scratch while the learning rate grows
from ``lr_min`` to ``lr_max`` (linearly or geometrically) over ``epochs``; the
validation accuracy and the training loss are recorded against the rate.

Suggestion rule (documented, deterministic): smooth the validation accuracy with
a centred moving average of 3 points; let ``a0`` be its first value and ``a*``
its maximum, reached at rate ``eta*``.

- ``eta_max``: the first rate at which the smoothed accuracy reaches
  ``a0 + 0.95 (a* - a0)``: where the gain levels off, before it gets ragged or falls.
- ``eta_min``: the first rate at which the smoothed accuracy exceeds
  ``a0 + 0.1 (a* - a0)``, i.e. where it "starts to increase".
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import Config
from mlplab.data import RawDataset, Splits
from mlplab.errors import ConfigError, TrainingDiverged
from mlplab.fileio import atomic_write_json
from mlplab.optim import Ramp
from mlplab.report.plots import plot_lr_range
from mlplab.train.build import build_network
from mlplab.train.prepared import recipe_splits
from mlplab.train.reuse import Cache
from mlplab.train.trainer import Trainer


def suggest_bounds(lrs: np.ndarray, acc: np.ndarray) -> tuple[float, float]:
    """``(eta_min, eta_max)`` from accuracies ``acc`` recorded at rates ``lrs`` (see module)."""
    if len(lrs) < 3:
        raise ConfigError("the range test needs at least 3 recorded points")
    smooth = np.convolve(np.pad(acc, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    peak = int(np.argmax(smooth))
    a0, top = smooth[0], smooth[peak]
    head = smooth[: peak + 1]
    lo = int(np.flatnonzero(head >= a0 + 0.1 * (top - a0))[0])
    hi = int(np.flatnonzero(head >= a0 + 0.95 * (top - a0))[0])
    return float(lrs[lo]), float(lrs[hi])


def lr_range_test(
    cfg: Config,
    splits: Splits,
    rng: np.random.Generator,
    out_dir: str | os.PathLike,
    *,
    lr_min: float = 1e-5,
    lr_max: float = 0.5,
    epochs: float = 8.0,
    mode: str = "linear",
    points: int = 40,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the range test of ``cfg``'s network; write ``lr_range.png`` and ``lr_range.json``."""
    if not len(splits.x_val):
        raise ConfigError("the range test scores the validation split: use a split with one")
    n = splits.x_train.shape[0]
    per_epoch = n // cfg.batch_size
    total = max(1, round(epochs * per_epoch))
    run_cfg = dataclasses.replace(
        cfg,
        schedule="constant",
        eta=lr_min,
        epochs=total / per_epoch,
        record_every=max(1, total // points),
        snapshot_ensemble=False,
        keep_best=False,
        early_stop=0,
    ).validate()
    schedule = Ramp(lr_min, lr_max, total, mode)
    net = build_network(run_cfg, splits.x_train.shape[1], len(splits.classes), rng)
    trainer = Trainer(
        net,
        run_cfg,
        rng,
        progress=progress,
        schedule=schedule,
        image_shape=splits.image_shape,
    )
    diverged_at = None
    try:
        trainer.fit(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    except TrainingDiverged:  # expected near the top of the range: the test ends there
        diverged_at = schedule(trainer.step)
    hist = trainer.history
    lrs = np.array([p["lr"] for p in hist])
    acc = np.array([p["val_accuracy"] for p in hist])
    eta_min, eta_max = suggest_bounds(lrs, acc)
    out = Path(out_dir)
    result = {
        "recipe": cfg.name,
        "lr_min": lr_min,
        "lr_max": lr_max,
        "epochs": epochs,
        "mode": mode,
        "updates": trainer.step,
        "diverged_at_lr": diverged_at,
        "seconds": trainer.seconds,
        "suggested_eta_min": eta_min,
        "suggested_eta_max": eta_max,
        "rule": "3-point smoothed validation accuracy a, a0 its first value, a* its peak: "
        "eta_min = first rate with a >= a0 + 0.1 (a* - a0), "
        "eta_max = first rate with a >= a0 + 0.95 (a* - a0)",
        "history": hist,
    }
    plot_lr_range(hist, eta_min, eta_max, out / "lr_range.png", title=cfg.name)
    atomic_write_json(out / "lr_range.json", result)
    return result


def run_lr_range(
    cfg: Config,
    out_dir: str | os.PathLike,
    raw: RawDataset,
    *,
    cache: Cache | None = None,
    lr_min: float = 1e-5,
    lr_max: float = 0.5,
    epochs: float = 8.0,
    mode: str = "linear",
    points: int = 40,
    progress: bool = True,
) -> dict[str, Any]:
    """The range test of ``cfg`` on the splits it makes of ``raw`` (``mlplab lr-range``), or
    its result already in ``out_dir`` for the same configuration, data and options (see
    :mod:`.reuse`)."""
    options: dict[str, Any] = {
        "lr_min": float(lr_min),
        "lr_max": float(lr_max),
        "epochs": float(epochs),
        "mode": mode,
        "points": int(points),
    }

    def run(_resume: bool) -> dict[str, Any]:  # nothing to resume: it runs in one go
        rng = np.random.default_rng(cfg.seed)
        splits = recipe_splits(raw, cfg, rng)
        return lr_range_test(cfg, splits, rng, out_dir, progress=progress, **options)

    cache = cache if cache is not None else Cache()
    key = cache.key("lr-range", cfg, raw, **options)
    return cache.get(out_dir, "lr-range", key, "lr_range.json", run)
