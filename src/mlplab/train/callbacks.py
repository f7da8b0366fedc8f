"""What the training loop does besides updating: small strategies it calls after updates.

* :class:`History` evaluates the network every ``record_every`` updates and at the end (the
  curves of ``results.json`` and ``curves.png``) and hands each point to a
  :class:`ValidationWatch`;
* :class:`ValidationWatch` follows the best validation accuracy: its update, the points since
  (``early_stop``) and, with ``keep_best``, the network's state at it;
* :class:`Snapshots` keeps the network's state at the end of every cycle of a cyclic
  schedule (``snapshot_ensemble``).

Each holds part of a checkpoint: ``state()`` gives JSON values and arrays, ``load_state``
takes them back, under the keys a checkpoint has always used.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from mlplab.config import Config
from mlplab.errors import TrainingDiverged
from mlplab.nn.network import Network

Arrays = dict[str, np.ndarray]


def _prefixed(arrays: Arrays, prefix: str) -> Arrays:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


class ValidationWatch:
    """The best validation accuracy so far, the update it came at, the history points since
    (``stale``: :attr:`exhausted` after ``patience`` of them, 0 never) and, with
    ``keep_best``, the network's state at it (:meth:`restore_best` puts it back)."""

    def __init__(self, *, keep_best: bool, patience: int) -> None:
        self.keep_best, self.patience = keep_best, patience
        self.best: Arrays | None = None
        self.best_score = -math.inf
        self.best_step = -1
        self.stale = 0

    def observe(self, point: dict[str, float], net: Network) -> None:
        """Take one history point (points without a validation accuracy change nothing)."""
        if "val_accuracy" not in point:
            return
        if point["val_accuracy"] > self.best_score:
            self.best_score, self.best_step = point["val_accuracy"], int(point["step"])
            self.stale = 0
            if self.keep_best:
                self.best = net.state()
        else:
            self.stale += 1

    @property
    def exhausted(self) -> bool:
        """Early stopping: ``patience`` points in a row without a better validation score."""
        return bool(self.patience) and self.stale >= self.patience

    def restore_best(self, net: Network) -> None:
        """``keep_best``: give ``net`` the best validated weights (nothing without them)."""
        if self.best is not None:
            net.set_state(self.best)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        score = self.best_score if math.isfinite(self.best_score) else None
        meta = {"best_score": score, "best_step": self.best_step, "stale": self.stale}
        arrays = {} if self.best is None else {f"best/{k}": v for k, v in self.best.items()}
        return meta, arrays

    def load_state(self, meta: dict[str, Any], arrays: Arrays) -> None:
        self.best = _prefixed(arrays, "best/") or None
        self.best_score = -math.inf if meta.get("best_score") is None else meta["best_score"]
        self.best_step = int(meta.get("best_step", -1))
        self.stale = int(meta.get("stale", 0))


class Snapshots:
    """The network's state after every ``cycle_length`` updates (0: never)."""

    def __init__(self, cycle_length: int) -> None:
        self.cycle_length = cycle_length
        self.states: list[Arrays] = []

    def after_update(self, step: int, net: Network) -> None:
        if self.cycle_length and step % self.cycle_length == 0:
            self.states.append(net.state())

    def state(self) -> tuple[dict[str, Any], Arrays]:
        arrays = {f"snap{i}/{k}": v for i, s in enumerate(self.states) for k, v in s.items()}
        return {"n_snapshots": len(self.states)}, arrays

    def load_state(self, meta: dict[str, Any], arrays: Arrays) -> None:
        n = int(meta.get("n_snapshots", 0))
        self.states = [_prefixed(arrays, f"snap{i}/") for i in range(n)]


class History:
    """History points: the cost, loss and accuracy on the training rows (the first
    ``record_train_samples`` of them, or all) and on the validation split, at update 0, every
    ``every`` updates and at update ``total``. Each point goes to ``watch``."""

    def __init__(
        self, cfg: Config, every: int, total: int, watch: ValidationWatch, seconds: float = 0.0
    ) -> None:
        self.cfg, self.every, self.total, self.watch = cfg, every, total, watch
        self.seconds = seconds  # wall time spent evaluating, from ``seconds`` on

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.total

    def record(
        self,
        net: Network,
        step: int,
        lr: float,
        data: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None],
    ) -> dict[str, float]:
        """Evaluate ``net`` at update ``step`` on ``data = (X, y, X_val, y_val)``."""
        X, y, X_val, y_val = data
        lam, eb, n = self.cfg.lam, self.cfg.eval_batch, len(X)
        # the train curves on the first k samples (a fixed, seeded draw for every split but
        # the official batch 1, itself in no particular order); the training is unchanged
        k = self.cfg.record_train_samples or n
        started = time.perf_counter()
        tr = net.evaluate(X[:k], y[:k], lam, eb)
        point: dict[str, float] = {
            "step": step,
            "epoch": step / max(1, n // self.cfg.batch_size),
            "lr": lr,
            "train_cost": tr["cost"],
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
        }
        if X_val is not None and y_val is not None and len(X_val):
            va = net.evaluate(X_val, y_val, lam, eb)
            point.update(val_cost=va["cost"], val_loss=va["loss"], val_accuracy=va["accuracy"])
        self.seconds += time.perf_counter() - started
        check_finite(net, step, lr)
        self.watch.observe(point, net)
        return point


def check_finite(net: Network, step: int, lr: float) -> None:
    """:class:`TrainingDiverged` if a parameter of ``net`` is NaN or infinite."""
    for name, p in net.params().items():
        if not np.all(np.isfinite(p)):
            raise TrainingDiverged(
                f"parameter {name} became non-finite by update {step} "
                f"(learning rate {lr:.3g}); lower eta/eta_max or lam"
            )
