"""One experiment from a recipe: data -> splits -> network -> training -> files.

Writes into the output directory ``results.json``, ``curves.png`` and
``model.npz`` + ``model.json``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import __version__, faults
from mlplab.config import Config, config_from_dict
from mlplab.data import RawDataset, Splits, load_data, locate_data
from mlplab.errors import ConfigError, MlplabError
from mlplab.fileio import atomic_write_json, prepare_out_dir, read_json
from mlplab.machine import blas_threads, check_threads, machine_facts
from mlplab.nn.network import Network
from mlplab.nn.serialize import save_network
from mlplab.train.build import build_network, resolved_n_s, total_updates
from mlplab.train.checkpoint import AWAY, check_meta, latest_checkpoint, write_checkpoint
from mlplab.train.metrics import breakdown_on_test, final_metrics, snapshot_metrics
from mlplab.train.prepared import recipe_splits, whiten_recipe_splits
from mlplab.train.reuse import Cache, config_hash
from mlplab.train.rundir import (
    PreviousRun,
    check_layout,
    clear_temporary,
    default_out,
    owned,
    recover_start,
    run_identity,
)
from mlplab.train.trainer import Trainer


def resolved_config(cfg: Config, n_train: int) -> dict[str, Any]:
    """``cfg`` as a dict with the derived quantities of this run filled in."""
    d = cfg.to_dict()
    d["n_s_resolved"] = resolved_n_s(cfg, n_train)
    d["total_updates"] = total_updates(cfg, n_train)
    d["n_train_samples"] = n_train
    return d


def train_on_splits(
    cfg: Config, splits: Splits, rng: np.random.Generator, *, progress: bool = True
) -> tuple[Network, Trainer, dict[str, Any]]:
    """Build and train the network of ``cfg`` on ``splits``; return it, its trainer and metrics."""
    net = build_network(cfg, splits.x_train.shape[1], len(splits.classes), rng)
    trainer = Trainer(net, cfg, rng, progress=progress, image_shape=splits.image_shape)
    with blas_threads(cfg.threads):
        trainer.fit(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
        return net, trainer, final_metrics(net, cfg, splits)


def run_experiment(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    raw: RawDataset | None = None,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Run ``cfg`` end to end and write its files into ``out_dir``; return the results dict.

    ``run.json`` (the configuration and the data directory) is written first, and
    checkpoints go to ``out_dir/checkpoints`` every ``cfg.checkpoint_every`` updates
    and at the end. ``resume=True`` continues from the newest good checkpoint (see
    :func:`resume_experiment`); the continued run ends bit-identical to an
    uninterrupted one.
    """
    check_threads(cfg.threads)  # recipes load on any host; a run needs the cores it names
    out = Path(out_dir) if resume else prepare_out_dir(out_dir, overwrite=overwrite)
    with owned(out), _signals() as stop:
        return _run(cfg, out, data_dir, raw, progress, resume, stop)


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """A full disk or an I/O error while writing becomes one error line; the last good
    checkpoint is kept (writes are atomic)."""
    try:
        yield
    except OSError as e:
        raise MlplabError(
            f"cannot write {e.filename or out}: {e.strerror or e}; the last good checkpoint is "
            f"kept: free space and continue with: mlplab train --resume {shlex.quote(str(out))}"
        ) from None


class RunInterrupted(MlplabError):
    """SIGINT or SIGTERM during a run: in the training loop, a checkpoint of the current
    update was written; in any other phase (data loading, whitening, the final evaluation,
    the figures) the run stopped at once, its last checkpoint kept."""

    exit_code = 130


class _Stop(list[int]):
    """The signals received under :func:`_signals` (truthy once one came). While ``message``
    is set (:meth:`phase`: data loading, whitening, the final evaluation and files), a signal
    raises :class:`RunInterrupted` at once from the handler (whitening's eigendecomposition
    runs in a helper thread, :func:`mlplab.machine.interruptible`, so the handler runs within
    a fraction of a second); while it is None (the start's writes, the training loop) it is
    only recorded, and the loop stops at its next update with a checkpoint."""

    message: str | None = None

    def phase(self, message: str | None) -> None:
        """Enter a phase that a signal stops at once (``message``) or that it does not (None);
        a signal received before stops the first kind now."""
        self.message = message
        if message is not None and self:
            raise RunInterrupted(message)

    def handle(self, signum: int, _frame: object) -> None:
        self.append(signum)
        if self.message is not None:
            raise RunInterrupted(self.message)


@contextlib.contextmanager
def _signals() -> Iterator[_Stop]:
    """Catch SIGINT and SIGTERM while the block runs (main thread only), into the yielded
    :class:`_Stop`."""
    got = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = {s: signal.signal(s, got.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _interrupted(what: str, resume: Path | None) -> str:
    """The message of an interrupt outside the training loop (``resume``: the run directory
    to resume, or None when nothing was written)."""
    then = "nothing was written; run the same command again"
    if resume is not None:
        then = f"continue with: mlplab train --resume {shlex.quote(str(resume))}"
    return f"interrupted {what}; {then}"


def _run(
    cfg: Config,
    out: Path,
    data_dir: str | os.PathLike | None,
    raw: RawDataset | None,
    progress: bool,
    resume: bool,
    stop: _Stop,
) -> dict[str, Any]:
    wall = time.perf_counter()
    note = recover_start(out)  # a start killed here before: the run it replaced comes back
    _note(note)
    if note and not resume and (out / "results.json").exists():  # checked before the put-back
        raise MlplabError(
            f"{out} holds a finished run again (put back after a start that was stopped); "
            "run the command again to replace it (it needs --overwrite)"
        )
    stop.phase(_interrupted("while loading the data", out if resume else None))  # at once
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
    n = splits.x_train.shape[0]
    total = total_updates(cfg, n)
    ckpt_dir = out / "checkpoints"

    def checkpoint(tr: Trainer) -> None:
        due = tr.step == total or (cfg.checkpoint_every and tr.step % cfg.checkpoint_every == 0)
        if due or stop:
            meta, arrays = tr.state()
            with _writing(out):
                write_checkpoint(ckpt_dir, {**meta, "run": identity}, arrays)
            if previous is not None:
                previous.commit()
        faults.maybe_die("update", tr.step)
        if stop:
            raise RunInterrupted(
                f"interrupted at update {tr.step} of {total} (checkpoint written); continue "
                f"with: mlplab train --resume {shlex.quote(str(out))}"
            )

    trainer = Trainer(
        net, cfg, rng, progress=progress, on_step=checkpoint, image_shape=splits.image_shape
    )
    trainer.check_data(splits.x_train)  # before the whitening, the slow part of the setup
    stop.phase(_interrupted("while whitening the data", out if resume else None))
    splits = whiten_recipe_splits(splits, cfg)  # after the raw pixels are freed (memory)
    stop.phase(None)  # the start's writes, and the loop: stopped at an update, with a checkpoint
    check_layout(out)
    previous = None
    try:
        if not resume:  # only now, with everything validated, does the run write anything
            with _writing(out):
                previous = PreviousRun(out)  # an earlier run's files are not this run's
                atomic_write_json(
                    out / "run.json",
                    {
                        "config": cfg.to_dict(),
                        "data_dir": source_dir,
                        "mlplab_version": __version__,
                    },
                )
            faults.maybe_die("start-run-json", 0)
        else:
            clear_temporary(ckpt_dir)  # left by a killed write
            found = latest_checkpoint(ckpt_dir)
            if found is not None:
                _load(trainer, found, identity, total, n, ckpt_dir)
        with blas_threads(cfg.threads):
            trainer.fit(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    except BaseException:
        if previous is not None:
            previous.restore()  # failed before its first checkpoint: --out as it was
        raise
    done = f"after update {trainer.step} of {total}, before the results were written"
    stop.phase(_interrupted(done + " (the last checkpoint is kept)", out))
    with blas_threads(cfg.threads):
        metrics = {**final_metrics(net, cfg, splits), **breakdown_on_test(net, cfg, splits)}
        ensemble = (
            snapshot_metrics(net, trainer.snapshots, cfg, splits) if trainer.snapshots else {}
        )
    summary = trainer.summary(n)
    results: dict[str, Any] = {
        "name": cfg.name,
        **metrics,
        **ensemble,
        **summary,
        "stopped_early": trainer.stopped_early,
        "best_val_step": trainer.best_step if trainer.best_step >= 0 else None,
        "seconds_per_epoch": summary["train_seconds"] / max(summary["epochs"], 1e-12),
        "wall_seconds": time.perf_counter() - wall,
        "n_train": n,
        "n_val": int(splits.x_val.shape[0]),
        "n_test": int(splits.x_test.shape[0]),
        "data_source": data_source,
        "config": resolved_config(cfg, n),
        "mlplab_version": __version__,
        "machine": machine_facts(cfg.threads),
        "history": trainer.history,
    }
    with _writing(out):  # the final files
        _save_model(out / "model", net, cfg, splits, {"config": cfg.to_dict()})
        for i, snap in enumerate(trainer.snapshots, start=1):
            snap_net = Network.from_spec(net.spec(), cfg.dtype)
            snap_net.set_state(snap)
            extra = {"config": cfg.to_dict(), "snapshot": i}
            _save_model(out / f"model-snapshot-{i}", snap_net, cfg, splits, extra)
        from mlplab.report.plots import plot_curves  # matplotlib: only when a run writes figures

        plot_curves(
            trainer.history,
            out / "curves.png",
            title=f"{cfg.name}: test accuracy {_pct(metrics['test_accuracy'])}",
            train_label=(
                f"training (first {cfg.record_train_samples:,} samples)"
                if cfg.record_train_samples
                else "training"
            ),
        )
        atomic_write_json(out / "results.json", results)
    stop.phase(None)  # finished: a signal now changes nothing
    return results


def _save_model(
    path: Path, net: Network, cfg: Config, splits: Splits, extra: dict[str, Any]
) -> None:
    """The model file of ``net`` with the splits' input transform and geometry."""
    save_network(
        path,
        net,
        splits.mean,
        splits.std,
        splits.classes,
        extra,
        whiten=splits.whiten,
        flip_average=cfg.flip_average,
        image_shape=splits.image_shape,
        scale=splits.scale,
    )


def train(
    recipe: str | Config = "assignment2/ex3",
    *,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``mlplab train`` from Python: the recipe (a shipped name, a TOML path or a
    :class:`Config`) with ``overrides`` (``{"lam": 0.005, "split": "4000/500"}``) trained
    on ``data`` (a directory or an ``.npz``; default ``$MLPLAB_DATA``) into ``out``
    (default ``runs/<recipe name>``). Returns the results (``results.json``)."""
    from mlplab.config import apply_overrides, load_recipe

    cfg = recipe if isinstance(recipe, Config) else load_recipe(recipe)
    cfg = apply_overrides(cfg, dict(overrides or {}), from_text=False)
    out = out if out is not None else default_out(cfg.name)
    return run_experiment(cfg, out, data_dir=data, progress=progress, overwrite=overwrite)


def resume_experiment(
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Continue the interrupted run in ``out_dir`` from its newest good checkpoint.

    A start of another run that was stopped (even by kill -9) before its first checkpoint
    is undone first (:func:`~mlplab.train.rundir.recover_start`): the run it replaced
    continues."""
    out = Path(out_dir)
    if not any(os.path.lexists(out / n) for n in ("run.json", ".previous")):
        raise MlplabError(f"{out} holds no run to resume (no run.json)")
    with owned(out), _signals() as stop:
        _note(recover_start(out))
        run_file = out / "run.json"
        if not os.path.lexists(run_file):
            raise MlplabError(f"{out} holds no run to resume (no run.json)")
        if os.path.lexists(out / "results.json"):
            raise MlplabError(f"the run in {out} has already finished (results.json exists)")
        info = read_json(run_file, what="run description", max_bytes=1 << 20, base=out)
        try:
            if not isinstance(info, dict):
                raise TypeError("not a JSON object")
            cfg = config_from_dict(info["config"])
        except (ValueError, KeyError, TypeError, ConfigError) as e:
            raise MlplabError(f"{run_file} is damaged: {e}") from None
        data = data_dir if data_dir is not None else info.get("data_dir")
        if data is not None and (not isinstance(data, str | os.PathLike) or not str(data)):
            raise MlplabError(f"{run_file} is damaged: data_dir must be a directory name: {data!r}")
        return _run(cfg, out, data, None, progress, True, stop)


def _note(text: str | None) -> None:
    """A line on stderr about what was found and done in a run directory."""
    if text:
        print(f"note: {text}", file=sys.stderr, flush=True)


def _load(
    trainer: Trainer,
    found: tuple[dict[str, Any], dict[str, np.ndarray]],
    identity: dict[str, str],
    total: int,
    n_rows: int,
    where: Path,
) -> None:
    """Restore a checkpoint into ``trainer`` if it is this run's and makes sense."""
    meta, arrays = found
    problem = check_meta(meta, arrays)  # before anything trusts its values
    if problem is not None:
        step = meta.get("step") if isinstance(meta.get("step"), int) else "?"
        raise MlplabError(
            f"the checkpoint of update {step} in {where} is damaged: {problem}; {AWAY}"
        )
    if meta.get("run") != identity:
        raise MlplabError(
            f"the checkpoint of update {meta.get('step')} in {where} belongs to another run "
            "(other configuration or data); resume with the run's own data, or start afresh "
            "with --overwrite"
        )
    step, perm = meta.get("step"), arrays.get("perm")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= total:
        raise MlplabError(f"the checkpoint in {where} is damaged: update {step!r} of {total}")
    if (
        perm is None
        or perm.dtype.kind not in "iu"
        or perm.ndim != 1
        or (len(perm) and not np.array_equal(np.sort(perm), np.arange(n_rows)))
    ):
        raise MlplabError(
            f"the checkpoint in {where} is damaged: 'perm' is not a permutation "
            f"of the {n_rows} training rows"
        )
    try:
        trainer.load_state(meta, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise MlplabError(f"the checkpoint in {where} is damaged: {e}") from None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def cached_experiment(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    raw: RawDataset,
    cache: Cache | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`run_experiment`, unless ``out_dir`` holds its results already (see
    :mod:`mlplab.train.reuse`): the results of the same configuration on the same data are
    read back, an interrupted run of it continues from its last checkpoint, and anything
    else (another configuration, ``cache.force``) is run afresh, overwriting ``out_dir``."""
    out = Path(out_dir)

    def run(resume: bool) -> dict[str, Any]:
        resume = resume and (out / "run.json").is_file()
        return run_experiment(cfg, out, raw=raw, progress=progress, overwrite=True, resume=resume)

    cache = cache if cache is not None else Cache()
    return cache.get(out, "train", cache.key("train", cfg, raw), "results.json", run)
