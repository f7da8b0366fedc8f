"""The phases of a run, shared by a fresh start and a resume (:mod:`mlplab.train.run`).

1. :func:`prepare`: the data, the splits, the network and its trainer, every check, then the
   whitening (the slow part of the setup); nothing is written yet.
2. :func:`write_start` (a fresh start: the earlier run's files set aside, ``run.json``) or
   :func:`restore` (a resume: the newest good checkpoint loaded).
3. :func:`train`: the training loop, with a checkpoint every ``checkpoint_every`` updates
   (:class:`Checkpoints`).
4. :func:`finish`: the metrics on the test set and the files (models, curves, results).

A signal stops phases 1 and 4 at once and phase 3 at its next update, with a checkpoint
(:mod:`mlplab.train.signals`).
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import __version__, faults
from mlplab.config import Config
from mlplab.data import Splits, load_data, locate_data
from mlplab.data.batches import RawDataset
from mlplab.errors import MlplabError
from mlplab.fileio import atomic_write_json
from mlplab.machine import blas_threads, machine_facts
from mlplab.nn.network import Network
from mlplab.nn.serialize import save_network
from mlplab.train.build import build_network, resolved_config, total_updates
from mlplab.train.checkpoint import AWAY, check_meta, latest_checkpoint, write_checkpoint
from mlplab.train.metrics import breakdown_on_test, final_metrics, snapshot_metrics
from mlplab.train.prepared import recipe_splits, whiten_recipe_splits
from mlplab.train.reuse import config_hash
from mlplab.train.rundir import PreviousRun, check_layout, clear_temporary, run_identity
from mlplab.train.signals import RunInterrupted, Stop, interrupted, writing
from mlplab.train.trainer import Trainer


class Checkpoints:
    """The trainer's ``on_step``: a checkpoint every ``checkpoint_every`` updates, at the
    last one, and when a signal came (then :class:`RunInterrupted`). The first checkpoint of
    a fresh start commits its :class:`PreviousRun` (the earlier run's files go for good)."""

    def __init__(self, cfg: Config, out: Path, total: int, identity: dict[str, str], stop: Stop):
        self.cfg, self.out, self.total, self.identity, self.stop = cfg, out, total, identity, stop
        self.previous: PreviousRun | None = None

    def __call__(self, tr: Trainer) -> None:
        every = self.cfg.checkpoint_every
        due = tr.step == self.total or (every and tr.step % every == 0)
        if due or self.stop:
            meta, arrays = tr.state()
            with writing(self.out):
                write_checkpoint(self.out / "checkpoints", {**meta, "run": self.identity}, arrays)
            if self.previous is not None:
                self.previous.commit()
        faults.maybe_die("update", tr.step)
        if self.stop:
            raise RunInterrupted(
                f"interrupted at update {tr.step} of {self.total} (checkpoint written); "
                f"continue with: mlplab train --resume {shlex.quote(str(self.out))}"
            )


@dataclass
class Run:
    """A run between its phases: what :func:`prepare` built."""

    cfg: Config
    out: Path
    splits: Splits
    net: Network
    trainer: Trainer
    checkpoints: Checkpoints
    data_source: str
    data_dir: str | None  # the directory the data were read from (None: given as arrays)
    started: float  # time.perf_counter() at the start

    @property
    def n_train(self) -> int:
        return int(self.splits.x_train.shape[0])


def prepare(
    cfg: Config,
    out: Path,
    *,
    data_dir: str | os.PathLike | None,
    raw: RawDataset | None,
    progress: bool,
    stop: Stop,
    resuming: bool,
) -> Run:
    """Phase 1: the data (``raw``, or read from ``data_dir``), the recipe's splits, the
    network and its trainer, all checked; then the whitening, after the raw pixels are freed
    (the fit's eigendecomposition is the largest transient of a run)."""
    started = time.perf_counter()
    resume_at = out if resuming else None
    stop.phase(interrupted("while loading the data", resume_at))  # a signal stops it at once
    source_dir: str | None = None
    if raw is None:
        located = locate_data(data_dir, progress=progress)
        raw = load_data(located, size=cfg.image_size(), progress=progress)
        source_dir = str(located.resolve())
    rng = np.random.default_rng(cfg.seed)
    splits = recipe_splits(raw, cfg, rng, whiten=False)
    identity, data_source = run_identity(config_hash(cfg), raw), raw.source
    del raw  # the splits hold what the run needs (a raw set loaded here is freed now)
    net = build_network(cfg, splits.x_train.shape[1], len(splits.classes), rng)
    total = total_updates(cfg, splits.x_train.shape[0])
    checkpoints = Checkpoints(cfg, out, total, identity, stop)
    trainer = Trainer(
        net,
        cfg,
        rng,
        progress=progress,
        on_step=checkpoints,
        image_shape=splits.image_shape,
    )
    trainer.check_data(splits.x_train)  # before the whitening, the slow part of the setup
    stop.phase(interrupted("while whitening the data", resume_at))
    splits = whiten_recipe_splits(splits, cfg)
    stop.phase(None)  # the start's writes, and the loop: stopped at an update, with a checkpoint
    check_layout(out)
    return Run(cfg, out, splits, net, trainer, checkpoints, data_source, source_dir, started)


def write_start(run: Run) -> None:
    """Phase 2 of a fresh start: only now, with everything validated, does the run write:
    an earlier run's files are set aside (:class:`PreviousRun`, put back if this start
    fails before its first checkpoint) and ``run.json`` names the configuration and data."""
    with writing(run.out):
        run.checkpoints.previous = PreviousRun(run.out)
        description = {
            "config": run.cfg.to_dict(),
            "data_dir": run.data_dir,
            "mlplab_version": __version__,
        }
        atomic_write_json(run.out / "run.json", description)
    faults.maybe_die("start-run-json", 0)


def restore(run: Run) -> None:
    """Phase 2 of a resume: the newest good checkpoint, if it is this run's and makes sense,
    loaded into the trainer (none: the run starts from update 0)."""
    where = run.out / "checkpoints"
    clear_temporary(where)  # left by a killed write
    found = latest_checkpoint(where)
    if found is None:
        return
    meta, arrays = found
    problem = check_meta(meta, arrays)  # before anything trusts its values
    step = meta.get("step")
    if problem is not None:
        shown = step if isinstance(step, int) else "?"
        raise MlplabError(
            f"the checkpoint of update {shown} in {where} is damaged: {problem}; {AWAY}"
        )
    if meta.get("run") != run.checkpoints.identity:
        raise MlplabError(
            f"the checkpoint of update {step} in {where} belongs to another run "
            "(other configuration or data); resume with the run's own data, or start afresh "
            "with --overwrite"
        )
    total, n = run.checkpoints.total, run.n_train
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= total:
        raise MlplabError(f"the checkpoint in {where} is damaged: update {step!r} of {total}")
    perm = arrays.get("perm")
    if (
        perm is None
        or perm.dtype.kind not in "iu"
        or perm.ndim != 1
        or (len(perm) and not np.array_equal(np.sort(perm), np.arange(n)))
    ):
        raise MlplabError(
            f"the checkpoint in {where} is damaged: 'perm' is not a permutation "
            f"of the {n} training rows"
        )
    try:
        run.trainer.load_state(meta, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise MlplabError(f"the checkpoint in {where} is damaged: {e}") from None


def train(run: Run) -> None:
    """Phase 3: the training loop under the recipe's BLAS threads. A start that fails before
    its first checkpoint puts the earlier run's files back (``--out`` as it was)."""
    sp = run.splits
    try:
        with blas_threads(run.cfg.threads):
            run.trainer.fit(sp.x_train, sp.y_train, sp.x_val, sp.y_val)
    except BaseException:
        if run.checkpoints.previous is not None:
            run.checkpoints.previous.restore()
        raise


def finish(run: Run, stop: Stop) -> dict[str, Any]:
    """Phase 4: the metrics (test set, per class, the snapshot ensemble) and the files:
    the model (and its snapshots), ``curves.png`` and, last, ``results.json``."""
    cfg, net, trainer, splits, n = run.cfg, run.net, run.trainer, run.splits, run.n_train
    done = (
        f"after update {trainer.step} of {run.checkpoints.total}, before the results were written"
    )
    stop.phase(interrupted(done + " (the last checkpoint is kept)", run.out))
    with blas_threads(cfg.threads):
        metrics = {**final_metrics(net, cfg, splits), **breakdown_on_test(net, cfg, splits)}
        snaps = trainer.snapshots
        ensemble = snapshot_metrics(net, snaps, cfg, splits) if snaps else {}
    summary = trainer.summary(n)
    results: dict[str, Any] = {
        "name": cfg.name,
        **metrics,
        **ensemble,
        **summary,
        "stopped_early": trainer.stopped_early,
        "best_val_step": trainer.best_step if trainer.best_step >= 0 else None,
        "seconds_per_epoch": summary["train_seconds"] / max(summary["epochs"], 1e-12),
        "wall_seconds": time.perf_counter() - run.started,
        "n_train": n,
        "n_val": int(splits.x_val.shape[0]),
        "n_test": int(splits.x_test.shape[0]),
        "data_source": run.data_source,
        "config": resolved_config(cfg, n),
        "mlplab_version": __version__,
        "machine": machine_facts(cfg.threads),
        "history": trainer.history,
    }
    with writing(run.out):
        _write_files(run, results)
    stop.phase(None)  # finished: a signal now changes nothing
    return results


def _write_files(run: Run, results: dict[str, Any]) -> None:
    cfg, out = run.cfg, run.out
    _save_model(out / "model", run.net, run, {"config": cfg.to_dict()})
    for i, snap in enumerate(run.trainer.snapshots, start=1):
        snap_net = Network.from_spec(run.net.spec(), cfg.dtype)
        snap_net.set_state(snap)
        extra = {"config": cfg.to_dict(), "snapshot": i}
        _save_model(out / f"model-snapshot-{i}", snap_net, run, extra)
    from mlplab.report.plots import plot_curves  # matplotlib: only when a run writes figures

    accuracy = results["test_accuracy"]
    shown = "n/a" if accuracy is None else f"{100 * accuracy:.2f} %"
    plot_curves(
        run.trainer.history,
        out / "curves.png",
        title=f"{cfg.name}: test accuracy {shown}",
        train_label=(
            f"training (first {cfg.record_train_samples:,} samples)"
            if cfg.record_train_samples
            else "training"
        ),
    )
    atomic_write_json(out / "results.json", results)


def _save_model(path: Path, net: Network, run: Run, extra: dict[str, Any]) -> None:
    """The model file of ``net`` with the splits' input transform and geometry."""
    sp = run.splits
    save_network(
        path,
        net,
        sp.mean,
        sp.std,
        sp.classes,
        extra,
        whiten=sp.whiten,
        flip_average=run.cfg.flip_average,
        image_shape=sp.image_shape,
        scale=sp.scale,
    )
