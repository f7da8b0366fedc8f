"""Mini-batch gradient descent with per-epoch reshuffling.

Every epoch draws one permutation of the training rows from the run's
generator; mini-batch ``b`` of the epoch is rows ``perm[b*B:(b+1)*B]``, gathered
into one of two preallocated buffers (no per-step allocation of batch arrays; the
next batch is gathered while the current one computes, see :class:`BatchGather`). An epoch
has ``floor(n / B)`` updates; the few rows left over by a permutation are seen
in other epochs. The learning rate of update ``t`` (counted from 0) is
``schedule(t)``. The history is recorded at step 0, every ``record_every``
updates and at the end.

An update is the network's backward pass with the gradient scale the optimiser
asks for, then ``optimizer.step``: the optimiser owns the update, L2 term included
(see :mod:`mlplab.optim.optimizers`; plain SGD takes its update straight from the
weight-gradient GEMM).

The trainer's whole state (step, current permutation, generator state,
optimiser state, history) is available as :meth:`Trainer.state` so that a run
can be checkpointed and resumed bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mlplab.config import Config
from mlplab.errors import ConfigError, TrainingDiverged
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.nn.network import Network
from mlplab.optim.optimizers import Optimizer
from mlplab.optim.schedules import Cyclic, Schedule
from mlplab.train.build import (
    build_augmentations,
    build_optimizer,
    build_schedule,
    resolved_n_s,
    total_updates,
)


def record_interval(cfg: Config, n_train: int) -> int:
    """Updates between two history points."""
    if cfg.record_every:
        return cfg.record_every
    n_s = resolved_n_s(cfg, n_train)
    if n_s is not None:  # cyclic: record_per_cycle points per cycle
        return max(1, (2 * n_s) // cfg.record_per_cycle)
    return max(1, n_train // cfg.batch_size)


class BatchGather:
    """Mini-batches of ``X`` gathered into two alternating buffers of ``B`` rows.

    While one update computes, a helper thread gathers the rows of the next one when they
    are known, that is within an epoch (the next epoch's permutation is drawn from the run's
    generator only when it starts); NumPy releases the GIL inside ``np.take``. It only moves
    data: no number changes. The trainer gathers ahead only with 1 BLAS thread, when the
    second core is free: with 2 the helper competes with the BLAS threads (3072-50-10: 0.35 s
    per epoch gathering in the training thread, 0.38 s ahead; with 1 BLAS thread 0.43 and
    0.42 s).
    """

    def __init__(self, X: np.ndarray, B: int) -> None:
        self.X = X
        self.buffers = [np.empty((B, X.shape[1]), dtype=X.dtype) for _ in range(2)]
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mlplab-gather")
        self.pending: tuple[int, Future[None]] | None = None

    def _gather(self, idx: np.ndarray, out: np.ndarray) -> None:
        # mode="clip": with the default "raise", numpy gathers into a fresh temporary and
        # copies it into ``out`` (twice the traffic plus an allocation per step); indices from
        # a permutation are always in range.
        np.take(self.X, idx, axis=0, out=out, mode="clip")

    def take(self, step: int, idx: np.ndarray) -> np.ndarray:
        """The rows ``idx`` of update ``step``, in that update's buffer."""
        out = self.buffers[step % 2]
        if self.pending is not None and self.pending[0] == step:
            self.pending[1].result()
        else:
            self._gather(idx, out)
        self.pending = None
        return out

    def prefetch(self, step: int, idx: np.ndarray) -> None:
        """Start gathering the rows ``idx`` of update ``step`` (the next one)."""
        self.pending = (step, self.pool.submit(self._gather, idx, self.buffers[step % 2]))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class Trainer:
    """Train ``network`` by the settings of ``cfg`` with the generator ``rng``.

    Callbacks: ``on_record(point)`` with every history point; ``on_cycle_end(k)``
    after the last update of cycle ``k`` of a cyclic schedule (snapshot
    ensembles); ``on_step(trainer)`` after every update (checkpoints). ``optimizer``
    replaces the one the configuration names; its ``l2`` must be the configuration's
    ``lam`` (the recorded cost includes it), and without ``decay_names`` it decays the
    network's dense weights. ``image_shape``: the geometry of the rows, for the image
    augmentations (None: flat features, which those refuse).
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
        on_record: Callable[[dict[str, float]], None] | None = None,
        on_cycle_end: Callable[[int], None] | None = None,
        on_step: Callable[[Trainer], None] | None = None,
        image_shape: ImageShape | None = CIFAR10_SHAPE,
    ) -> None:
        self.net = network
        self.image_shape = image_shape
        self.cfg = cfg
        self.rng = rng
        self.progress = progress
        self.on_record = on_record
        self.on_cycle_end = on_cycle_end
        self.on_step = on_step
        self.schedule = schedule  # overrides the configuration's (learning-rate range test)
        if optimizer is not None:
            if optimizer.l2 != cfg.lam:
                raise ConfigError(
                    f"the optimizer's l2 ({optimizer.l2}) differs from the configuration's "
                    f"lam ({cfg.lam}), which the recorded cost includes"
                )
            optimizer.decay_names = optimizer.decay_names or set(network.decay_names())
        self.optimizer: Optimizer = optimizer or build_optimizer(cfg, network)
        self.augmentations = build_augmentations(cfg, image_shape)
        self.history: list[dict[str, float]] = []
        self.snapshots: list[dict[str, np.ndarray]] = []  # network state at each cycle's end
        self.best: dict[str, np.ndarray] | None = None  # state of the best validation accuracy
        self.best_score = -math.inf
        self.best_step = -1
        self.stale = 0  # history points since the last improvement
        self.step = 0
        self.stopped_early = False
        self.perm = np.empty(0, dtype=np.int64)
        self.seconds = 0.0  # wall time of fit, history evaluations included
        self.record_seconds = 0.0  # of which: evaluating the history points

    # -- state for checkpoints ----------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json_part, arrays)`` holding everything needed to continue bit for bit."""
        meta = {
            "step": self.step,
            "seconds": self.seconds,
            "record_seconds": self.record_seconds,
            "rng_state": self.rng.bit_generator.state,
            "history": self.history,
            "n_snapshots": len(self.snapshots),
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "best_step": self.best_step,
            "stale": self.stale,
        }
        arrays = {f"net/{k}": v for k, v in self.net.state().items()}
        arrays.update({f"opt/{k}": v for k, v in self.optimizer.state_dict().items()})
        for i, snap in enumerate(self.snapshots):
            arrays.update({f"snap{i}/{k}": v for k, v in snap.items()})
        if self.best is not None:
            arrays.update({f"best/{k}": v for k, v in self.best.items()})
        arrays["perm"] = self.perm.copy()
        return meta, arrays

    def load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""
        self.net.set_state({k[4:]: v for k, v in arrays.items() if k.startswith("net/")})
        self.optimizer.load_state_dict(
            {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
        )
        self.perm = np.array(arrays["perm"], dtype=np.int64)
        self.snapshots = [
            {k[len(f"snap{i}/") :]: v for k, v in arrays.items() if k.startswith(f"snap{i}/")}
            for i in range(int(meta.get("n_snapshots", 0)))
        ]
        best = {k[5:]: v for k, v in arrays.items() if k.startswith("best/")}
        self.best = best or None
        self.best_score = -math.inf if meta.get("best_score") is None else meta["best_score"]
        self.best_step = int(meta.get("best_step", -1))
        self.stale = int(meta.get("stale", 0))
        self.rng.bit_generator.state = meta["rng_state"]
        self.step = int(meta["step"])
        self.seconds = float(meta["seconds"])
        self.record_seconds = float(meta.get("record_seconds", 0.0))
        self.history = list(meta["history"])

    # -- one update ---------------------------------------------------------------------------
    def _update(self, xb: np.ndarray, yb: np.ndarray, lr: float) -> float:
        opt = self.optimizer
        scale = opt.grad_scale(lr)
        loss = self.net.loss_grad(
            xb, yb, rng=self.rng, label_smoothing=self.cfg.label_smoothing, scale=scale
        )
        opt.step(self._params, self._grads, lr, scale=scale)
        return loss

    def _record(self, X, y, X_val, y_val, lr: float, n: int) -> dict[str, float]:
        lam, eb = self.cfg.lam, self.cfg.eval_batch
        # the train curves on the first k samples (a fixed, seeded draw for every split but
        # the official batch 1, itself in no particular order); the training is unchanged
        k = self.cfg.record_train_samples or len(X)
        started = time.perf_counter()
        tr = self.net.evaluate(X[:k], y[:k], lam, eb)
        point: dict[str, float] = {
            "step": self.step,
            "epoch": self.step / max(1, n // self.cfg.batch_size),
            "lr": lr,
            "train_cost": tr["cost"],
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
        }
        if X_val is not None and len(X_val):
            va = self.net.evaluate(X_val, y_val, lam, eb)
            point.update(val_cost=va["cost"], val_loss=va["loss"], val_accuracy=va["accuracy"])
        self.record_seconds += time.perf_counter() - started
        self._check_finite(lr)
        if "val_accuracy" in point:
            if point["val_accuracy"] > self.best_score:
                self.best_score, self.best_step, self.stale = point["val_accuracy"], self.step, 0
                if self.cfg.keep_best:
                    self.best = self.net.state()
            else:
                self.stale += 1
        self.history.append(point)
        if self.on_record:
            self.on_record(point)
        return point

    def _check_finite(self, lr: float) -> None:
        for name, p in self.net.params().items():
            if not np.all(np.isfinite(p)):
                raise TrainingDiverged(
                    f"parameter {name} became non-finite by update {self.step} "
                    f"(learning rate {lr:.3g}); lower eta/eta_max or lam"
                )

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

        Returns the history (also in ``self.history``). ``record=False`` skips all
        evaluation (benchmarks); ``max_updates`` stops early after that many updates.
        """
        cfg, rng, net = self.cfg, self.rng, self.net
        self.check_data(X)
        n = X.shape[0]
        B = cfg.batch_size
        schedule = self.schedule or build_schedule(cfg, n)
        total = total_updates(cfg, n)
        stop = total if max_updates is None else min(total, self.step + max_updates)
        every = record_interval(cfg, n)
        per_epoch = n // B
        cycle_len = schedule.cycle_length if isinstance(schedule, Cyclic) else 0
        batches = BatchGather(X, B)
        ahead = cfg.threads == 1  # gather the next batch in a helper thread (BatchGather)
        self._params, self._grads = net.params(), net.grads()
        start = time.perf_counter() - self.seconds
        if record and self.step == 0 and not self.history:
            self._record(X, y, X_val, y_val, schedule(0), n)
        bar = tqdm(
            total=total,
            initial=self.step,
            unit="upd",
            disable=not self.progress,
            mininterval=0.5,
            desc=cfg.name or "train",
            leave=False,
        )
        # Overflow inside a diverging step is reported by the finiteness checks below as one
        # clear error; NumPy's own RuntimeWarnings would only add noise before it.
        errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore")
        errstate.__enter__()
        try:
            while self.step < stop:
                if record and cfg.early_stop and self.stale >= cfg.early_stop:
                    self.stopped_early = True  # checked first: a resumed run stops here too
                    break
                b = self.step % per_epoch
                if b == 0:
                    self.perm = rng.permutation(n)
                idx = self.perm[b * B : (b + 1) * B]
                xb = batches.take(self.step, idx)
                if ahead and b + 1 < per_epoch and self.step + 1 < stop:  # rows known
                    batches.prefetch(self.step + 1, self.perm[(b + 1) * B : (b + 2) * B])
                yb = y[idx]
                for aug in self.augmentations:  # in place, in the batch buffer
                    aug(xb, rng)
                lr = schedule(self.step)
                loss = self._update(xb, yb, lr)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"the loss became non-finite at update {self.step} "
                        f"(learning rate {lr:.3g}); lower eta/eta_max or lam"
                    )
                self.step += 1
                bar.update(1)
                if cycle_len and self.step % cycle_len == 0:
                    if cfg.snapshot_ensemble:
                        self.snapshots.append(net.state())
                    if self.on_cycle_end:
                        self.on_cycle_end(self.step // cycle_len)
                if record and (self.step % every == 0 or self.step == total):
                    pt = self._record(X, y, X_val, y_val, schedule(self.step), n)
                    if "val_accuracy" in pt:
                        bar.set_postfix(val_acc=f"{pt['val_accuracy']:.3f}", refresh=False)
                self.seconds = time.perf_counter() - start
                if self.on_step:
                    self.on_step(self)
        finally:
            batches.close()
            errstate.__exit__(None, None, None)
            bar.close()
            self.seconds = time.perf_counter() - start
        if self.best is not None and (self.step >= total or self.stopped_early):
            self.net.set_state(self.best)  # keep_best: end with the best validated weights
        return self.history

    def summary(self, n_train: int) -> dict[str, Any]:
        return {
            "updates": self.step,
            "epochs": self.step / max(1, n_train // self.cfg.batch_size),
            "train_seconds": self.seconds,
            "record_seconds": self.record_seconds,
        }
