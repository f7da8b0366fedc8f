"""Mini-batch gradient descent with per-epoch reshuffling: the training loop.

Every epoch draws one permutation of the training rows from the run's
generator; mini-batch ``b`` of the epoch is rows ``perm[b*B:(b+1)*B]``, gathered
into one of two preallocated buffers (:mod:`mlplab.train.gather`). An epoch
has ``floor(n / B)`` updates; the few rows left over by a permutation are seen
in other epochs. The learning rate of update ``t`` (counted from 0) is
``schedule(t)``.

An update is the network's backward pass with the gradient scale the optimiser
asks for, then ``optimizer.step``: the optimiser owns the update, L2 term included
(see :mod:`mlplab.optim.optimizers`; plain SGD takes its update straight from the
weight-gradient GEMM). After an update the loop calls its strategies
(:mod:`mlplab.train.callbacks`): the cycle's snapshot, the history point with the best
validation score and early stopping, then ``on_step`` (a run's checkpoints).

The trainer's whole state (step, current permutation, generator state,
optimiser state, history, the strategies' state) is available as :meth:`Trainer.state` so
that a run can be checkpointed and resumed bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mlplab.config import Config
from mlplab.data import Splits
from mlplab.errors import ConfigError, TrainingDiverged
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.machine import blas_threads
from mlplab.nn.network import Network
from mlplab.optim.optimizers import Optimizer
from mlplab.optim.schedules import Cyclic, Schedule
from mlplab.train.build import (
    build_augmentations,
    build_network,
    build_optimizer,
    build_schedule,
    resolved_n_s,
    total_updates,
)
from mlplab.train.callbacks import History, Snapshots, ValidationWatch
from mlplab.train.gather import BatchGather, gather_ahead
from mlplab.train.metrics import final_metrics


def record_interval(cfg: Config, n_train: int) -> int:
    """Updates between two history points."""
    if cfg.record_every:
        return cfg.record_every
    n_s = resolved_n_s(cfg, n_train)
    if n_s is not None:  # cyclic: record_per_cycle points per cycle
        return max(1, (2 * n_s) // cfg.record_per_cycle)
    return max(1, n_train // cfg.batch_size)


class Trainer:
    """Train ``network`` by the settings of ``cfg`` with the generator ``rng``.

    ``on_step(trainer)`` is called after every update (a run's checkpoints). ``optimizer``
    replaces the one the configuration names; its ``l2`` must be the configuration's
    ``lam`` (the recorded cost includes it), and without ``decay_names`` it decays the
    network's dense weights. ``schedule`` replaces the configuration's (the learning-rate
    range test). ``image_shape``: the geometry of the rows, for the image augmentations
    (None: flat features, which those refuse). ``prefetch``: gather the next batch in a
    helper thread (default: where :func:`mlplab.train.gather.gather_ahead` says it pays for
    the recipe's ``threads``).
    """

    def __init__(
        self,
        network: Network,
        cfg: Config,
        rng: np.random.Generator,
        *,
        progress: bool = True,
        optimizer: Optimizer | None = None,
        schedule: Schedule | None = None,
        on_step: Callable[[Trainer], None] | None = None,
        image_shape: ImageShape | None = CIFAR10_SHAPE,
        prefetch: bool | None = None,
    ) -> None:
        self.net = network
        self.image_shape = image_shape
        self.cfg = cfg
        self.rng = rng
        self.progress = progress
        self.on_step = on_step
        self.prefetch = gather_ahead(cfg.threads) if prefetch is None else prefetch
        self.schedule = schedule
        if optimizer is not None:
            if optimizer.l2 != cfg.lam:
                raise ConfigError(
                    f"the optimizer's l2 ({optimizer.l2}) differs from the configuration's "
                    f"lam ({cfg.lam}), which the recorded cost includes"
                )
            optimizer.decay_names = optimizer.decay_names or set(network.decay_names())
        self.optimizer: Optimizer = optimizer or build_optimizer(cfg, network)
        self.augmentations = build_augmentations(cfg, image_shape)
        self.watch = ValidationWatch(keep_best=cfg.keep_best, patience=cfg.early_stop)
        self.snapshot_states = Snapshots(0)
        self.history: list[dict[str, float]] = []
        self.record_seconds = 0.0  # of the wall time: evaluating the history points
        self.step = 0
        self.stopped_early = False
        self.perm = np.empty(0, dtype=np.int64)
        self.seconds = 0.0  # wall time of fit, history evaluations included

    @property
    def snapshots(self) -> list[dict[str, np.ndarray]]:
        """The network's state at each cycle's end (``snapshot_ensemble``)."""
        return self.snapshot_states.states

    @property
    def best_step(self) -> int:
        """The update of the best validation accuracy (-1: none recorded)."""
        return self.watch.best_step

    # -- state for checkpoints ----------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json_part, arrays)`` holding everything needed to continue bit for bit."""
        meta: dict[str, Any] = {
            "step": self.step,
            "seconds": self.seconds,
            "record_seconds": self.record_seconds,
            "rng_state": self.rng.bit_generator.state,
            "history": self.history,
        }
        arrays = {f"net/{k}": v for k, v in self.net.state().items()}
        arrays.update({f"opt/{k}": v for k, v in self.optimizer.state_dict().items()})
        for part in (self.snapshot_states, self.watch):
            more, more_arrays = part.state()
            meta.update(more)
            arrays.update(more_arrays)
        arrays["perm"] = self.perm.copy()
        return meta, arrays

    def load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""
        self.net.set_state({k[4:]: v for k, v in arrays.items() if k.startswith("net/")})
        self.optimizer.load_state_dict(
            {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
        )
        self.perm = np.array(arrays["perm"], dtype=np.int64)
        self.snapshot_states.load_state(meta, arrays)
        self.watch.load_state(meta, arrays)
        self.rng.bit_generator.state = meta["rng_state"]
        self.step = int(meta["step"])
        self.seconds = float(meta["seconds"])
        self.record_seconds = float(meta.get("record_seconds", 0.0))
        self.history = list(meta["history"])

    # -- one update ---------------------------------------------------------------------------
    def _update(self, xb: np.ndarray, yb: np.ndarray, lr: float) -> float:
        """One gradient step on the batch ``xb``, ``yb``; returns its loss (finite, or
        :class:`TrainingDiverged`)."""
        opt = self.optimizer
        scale = opt.grad_scale(lr)
        loss = self.net.loss_grad(
            xb, yb, rng=self.rng, label_smoothing=self.cfg.label_smoothing, scale=scale
        )
        opt.step(self._params, self._grads, lr, scale=scale)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became non-finite at update {self.step} "
                f"(learning rate {lr:.3g}); lower eta/eta_max or lam"
            )
        return loss

    def _batch(self, batches: BatchGather, y: np.ndarray, stop: int) -> tuple[np.ndarray, ...]:
        """The augmented mini-batch of the current update (a new epoch draws its permutation),
        and the next one's rows gathered ahead when they are known."""
        B, n = self.cfg.batch_size, len(y)
        per_epoch = n // B
        b = self.step % per_epoch
        if b == 0:
            self.perm = self.rng.permutation(n)
        idx = self.perm[b * B : (b + 1) * B]
        xb = batches.take(self.step, idx)
        if b + 1 < per_epoch and self.step + 1 < stop:
            batches.prefetch(self.step + 1, self.perm[(b + 1) * B : (b + 2) * B])
        for aug in self.augmentations:  # in place, in the batch buffer
            aug(xb, self.rng)
        return xb, y[idx]

    def check_data(self, X: np.ndarray) -> None:
        """Raise :class:`ConfigError` if ``X`` cannot be trained on with this configuration."""
        n, B, net = X.shape[0], self.cfg.batch_size, self.net
        if X.ndim != 2 or X.shape[1] != net.d_in:
            raise ConfigError(f"data has shape {X.shape}, the network expects {net.d_in} features")
        if B > n:
            raise ConfigError(f"batch_size {B} is larger than the training split ({n} samples)")
        if self.cfg.record_train_samples > n:
            raise ConfigError(
                f"record_train_samples {self.cfg.record_train_samples} is larger than the "
                f"training split ({n} samples); 0 records the train curves on all of it"
            )
        shape = self.image_shape
        if shape is None and self.cfg.flip_average:  # before anything is trained or written
            raise ConfigError("flip_average needs images; these data are flat features")
        pictures = [a.name for a in self.augmentations if a.needs_image]
        if pictures and shape is not None and shape.size != X.shape[1]:
            raise ConfigError(
                f"{', '.join(pictures)} need rows of {shape} images ({shape.size} values), "
                f"the data have {X.shape[1]}"
            )
        if X.dtype != net.dtype:
            raise ConfigError(f"data dtype {X.dtype} differs from the network's {net.dtype}")
        if total_updates(self.cfg, n) < 1:
            raise ConfigError("the run would make no update: raise epochs, cycles or n_s")

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        record: bool = True,
        max_updates: int | None = None,
    ) -> list[dict[str, float]]:
        """Train on ``X`` ``(n, d)`` / ``y`` ``(n,)`` from the current step to the end.

        Returns the history (also in ``self.history``). ``record=False`` evaluates nothing
        (no history, so no early stopping: benchmarks); ``max_updates`` stops after that
        many updates.
        """
        self.check_data(X)
        n = X.shape[0]
        schedule = self.schedule or build_schedule(self.cfg, n)
        total = total_updates(self.cfg, n)
        stop = total if max_updates is None else min(total, self.step + max_updates)
        history = self._history(n, total) if record else None
        if isinstance(schedule, Cyclic) and self.cfg.snapshot_ensemble:
            self.snapshot_states.cycle_length = schedule.cycle_length
        data = (X, y, X_val, y_val)
        if history is not None and self.step == 0 and not self.history:
            self._record(history, schedule(0), data)
        batches = BatchGather(X, self.cfg.batch_size, ahead=self.prefetch)
        self._params, self._grads = self.net.params(), self.net.grads()
        bar = tqdm(
            total=total,
            initial=self.step,
            unit="upd",
            disable=not self.progress,
            mininterval=0.5,
            desc=self.cfg.name or "train",
            leave=False,
        )
        start = time.perf_counter() - self.seconds
        # Overflow inside a diverging step is reported by the finiteness checks as one clear
        # error; NumPy's own RuntimeWarnings would only add noise before it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                while self.step < stop:
                    if history is not None and self.watch.exhausted:
                        self.stopped_early = True  # checked first: a resumed run stops too
                        break
                    xb, yb = self._batch(batches, y, stop)
                    self._update(xb, yb, schedule(self.step))
                    self.step += 1
                    bar.update(1)
                    self.snapshot_states.after_update(self.step, self.net)
                    if history is not None and history.due(self.step):
                        point = self._record(history, schedule(self.step), data)
                        if "val_accuracy" in point:
                            bar.set_postfix(val_acc=f"{point['val_accuracy']:.3f}", refresh=False)
                    self.seconds = time.perf_counter() - start
                    if self.on_step:
                        self.on_step(self)
            finally:
                batches.close()
                bar.close()
                self.seconds = time.perf_counter() - start
        if self.step >= total or self.stopped_early:
            self.watch.restore_best(self.net)  # keep_best: end with the best validated weights
        return self.history

    def _history(self, n: int, total: int) -> History:
        every = record_interval(self.cfg, n)
        return History(self.cfg, every, total, self.watch, self.record_seconds)

    def _record(self, history: History, lr: float, data: tuple) -> dict[str, float]:
        point = history.record(self.net, self.step, lr, data)
        self.history.append(point)
        self.record_seconds = history.seconds
        return point

    def summary(self, n_train: int) -> dict[str, Any]:
        return {
            "updates": self.step,
            "epochs": self.step / max(1, n_train // self.cfg.batch_size),
            "train_seconds": self.seconds,
            "record_seconds": self.record_seconds,
        }


def train_on_splits(
    cfg: Config,
    splits: Splits,
    rng: np.random.Generator,
    *,
    progress: bool = True,
    on_step: Callable[[Trainer], None] | None = None,
) -> tuple[Network, Trainer, dict[str, Any]]:
    """Build and train the network of ``cfg`` on ``splits`` under its BLAS threads, with no
    files (repeats and search trials); return it, its trainer and its metrics. ``on_step``:
    the trainer's (a search trial's reports; it may stop the training by raising)."""
    net = build_network(cfg, splits.x_train.shape[1], len(splits.classes), rng)
    trainer = Trainer(
        net,
        cfg,
        rng,
        progress=progress,
        on_step=on_step,
        image_shape=splits.image_shape,
    )
    with blas_threads(cfg.threads):
        trainer.fit(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
        return net, trainer, final_metrics(net, cfg, splits)
