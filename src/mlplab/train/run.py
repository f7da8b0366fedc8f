"""One experiment from a recipe: data -> splits -> network -> training -> files.

Writes into the output directory ``results.json``, ``curves.png`` and
``model.npz`` + ``model.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import __version__, faults
from mlplab.config import Config, config_from_dict
from mlplab.data import RawDataset, Splits, load_cifar10, locate_data
from mlplab.data.prepared import recipe_splits, whiten_recipe_splits
from mlplab.errors import ConfigError, MlplabError
from mlplab.fileio import atomic_write_json, prepare_out_dir
from mlplab.machine import blas_threads, machine_facts
from mlplab.nn.network import Network
from mlplab.nn.serialize import save_network
from mlplab.train.checkpoint import latest_checkpoint, write_checkpoint
from mlplab.train.reuse import Cache, config_hash
from mlplab.train.rundir import (
    PreviousRun,
    check_layout,
    clear_temporary,
    owned,
    run_identity,
)
from mlplab.train.trainer import Trainer


def build_network(cfg: Config, d_in: int, n_classes: int, rng: np.random.Generator) -> Network:
    """The network described by ``cfg`` with weights drawn from ``rng``."""
    return Network.build(
        d_in,
        cfg.hidden,
        n_classes,
        rng=rng,
        init=cfg.init,
        init_sigma=cfg.init_sigma or None,
        batch_norm=cfg.batch_norm,
        bn_position=cfg.bn_position,
        bn_alpha=cfg.bn_alpha,
        drop_prob=cfg.drop_prob,
        dtype=cfg.dtype,
    )


def resolved_config(cfg: Config, n_train: int) -> dict[str, Any]:
    """``cfg`` as a dict with the derived quantities of this run filled in."""
    d = cfg.to_dict()
    d["n_s_resolved"] = cfg.resolved_n_s(n_train) if cfg.schedule == "cyclic" else None
    d["total_updates"] = cfg.total_updates(n_train)
    d["n_train_samples"] = n_train
    return d


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(1) == y))


def final_metrics(net: Network, cfg: Config, splits: Splits) -> dict[str, Any]:
    """Accuracy, loss and cost of the trained network on each non-empty part of ``splits``.

    With ``cfg.flip_average`` the accuracies are those of the saved model's predictions
    (the mean over each image and its mirror) and ``{part}_accuracy_single_view`` keeps
    the plain ones; losses and costs are always those of the single view.
    """
    metrics: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        X, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        if len(X):
            ev = net.evaluate(X, y, cfg.lam, cfg.eval_batch)
            metrics.update(
                {
                    f"{part}_accuracy": ev["accuracy"],
                    f"{part}_loss": ev["loss"],
                    f"{part}_cost": ev["cost"],
                }
            )
            if cfg.flip_average:
                metrics[f"{part}_accuracy_single_view"] = ev["accuracy"]
                probs = net.predict_proba(X, cfg.eval_batch, flip_average=True)
                metrics[f"{part}_accuracy"] = _accuracy(probs, y)
        else:
            metrics.update({f"{part}_accuracy": None, f"{part}_loss": None, f"{part}_cost": None})
    return metrics


def breakdown_on_test(net: Network, cfg: Config, splits: Splits) -> dict[str, Any]:
    """Per-class test accuracy and the confusion matrix (rows true class, columns predicted)."""
    from mlplab.train.inspect import confusion_matrix, per_class_accuracy

    if not len(splits.x_test):
        return {}
    probs = net.predict_proba(splits.x_test, cfg.eval_batch, flip_average=cfg.flip_average)
    conf = confusion_matrix(splits.y_test, probs.argmax(1), len(splits.classes))
    return {"test_per_class_accuracy": per_class_accuracy(conf), "test_confusion": conf.tolist()}


def snapshot_metrics(
    net: Network, snapshots: list[dict[str, np.ndarray]], cfg: Config, splits: Splits
) -> dict[str, Any]:
    """Accuracy of each snapshot and of their average probabilities on validation and test
    (each snapshot's predictions flip-averaged with ``cfg.flip_average``, and then the
    ensemble of single views kept as ``ensemble_{part}_accuracy_single_view``)."""
    from mlplab.train.ensemble import combine

    out: dict[str, Any] = {"n_snapshots": len(snapshots)}
    snap_net = Network.from_spec(net.spec(), cfg.dtype)
    for part in ("val", "test"):
        X, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
        if not len(X):
            continue
        probs, single = [], []
        for snap in snapshots:
            snap_net.set_state(snap)
            single.append(snap_net.predict_proba(X, cfg.eval_batch))
            if cfg.flip_average:  # as predict_proba(flip_average=True), one forward fewer
                probs.append((single[-1] + snap_net.mirror_proba(X, cfg.eval_batch)) * 0.5)
        probs = probs or single
        out[f"snapshot_{part}_accuracies"] = [_accuracy(p, y) for p in probs]
        out[f"ensemble_{part}_accuracy"] = float(np.mean(combine(probs, "mean") == y))
        if cfg.flip_average:
            out[f"ensemble_{part}_accuracy_single_view"] = float(
                np.mean(combine(single, "mean") == y)
            )
    return out


def train_on_splits(
    cfg: Config, splits: Splits, rng: np.random.Generator, *, progress: bool = True
) -> tuple[Network, Trainer, dict[str, Any]]:
    """Build and train the network of ``cfg`` on ``splits``; return it, its trainer and metrics."""
    net = build_network(cfg, splits.x_train.shape[1], len(splits.classes), rng)
    trainer = Trainer(net, cfg, rng, progress=progress)
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
    """SIGINT or SIGTERM during a run: a checkpoint of the current update was written."""

    exit_code = 130


@contextlib.contextmanager
def _signals() -> Iterator[list[int]]:
    """Catch SIGINT and SIGTERM while the block runs (main thread only): the signal numbers
    land in the yielded list, and the training loop stops at the next update."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = {
        s: signal.signal(s, lambda n, _f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run(
    cfg: Config,
    out: Path,
    data_dir: str | os.PathLike | None,
    raw: RawDataset | None,
    progress: bool,
    resume: bool,
    stop: list[int],
) -> dict[str, Any]:
    wall = time.perf_counter()
    source_dir: str | None = None
    if raw is None:
        located = locate_data(data_dir, progress=progress)
        raw = load_cifar10(located, progress=progress)
        source_dir = str(located.resolve())
    rng = np.random.default_rng(cfg.seed)
    splits = recipe_splits(raw, cfg, rng, whiten=False)
    identity, data_source = run_identity(config_hash(cfg), raw), raw.source
    del raw  # the splits hold what the run needs (a raw set loaded here is freed now)
    net = build_network(cfg, splits.x_train.shape[1], len(splits.classes), rng)
    n = splits.x_train.shape[0]
    total = cfg.total_updates(n)
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

    trainer = Trainer(net, cfg, rng, progress=progress, on_step=checkpoint)
    trainer.check_data(splits.x_train)  # before the whitening, the slow part of the setup
    splits = whiten_recipe_splits(splits, cfg)  # after the raw pixels are freed (memory)
    check_layout(out)
    previous = None
    if not resume:  # only now, with everything validated, does the run write anything
        previous = PreviousRun(out)  # an earlier run's checkpoints are not this run's
        atomic_write_json(
            out / "run.json",
            {"config": cfg.to_dict(), "data_dir": source_dir, "mlplab_version": __version__},
        )
    if resume:
        clear_temporary(ckpt_dir)  # left by a killed write
        shutil.rmtree(out / ".previous", ignore_errors=True)  # replaced by the run resumed
        found = latest_checkpoint(ckpt_dir)
        if found is not None:
            _load(trainer, found, identity, total, n, ckpt_dir)
    try:
        with blas_threads(cfg.threads):
            trainer.fit(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    except BaseException:
        if previous is not None:
            previous.restore()  # failed before its first checkpoint: --out as it was
        raise
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
        save_network(
            out / "model",
            net,
            splits.mean,
            splits.std,
            splits.classes,
            {"config": cfg.to_dict()},
            whiten=splits.whiten,
            flip_average=cfg.flip_average,
        )
        for i, snap in enumerate(trainer.snapshots, start=1):
            snap_net = Network.from_spec(net.spec(), cfg.dtype)
            snap_net.set_state(snap)
            save_network(
                out / f"model-snapshot-{i}",
                snap_net,
                splits.mean,
                splits.std,
                splits.classes,
                {"config": cfg.to_dict(), "snapshot": i},
                whiten=splits.whiten,
                flip_average=cfg.flip_average,
            )
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
    return results


def resume_experiment(
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Continue the interrupted run in ``out_dir`` from its newest good checkpoint."""
    out = Path(out_dir)
    run_file = out / "run.json"
    if not run_file.is_file():
        raise MlplabError(f"{out} holds no run to resume (no run.json)")
    if (out / "results.json").is_file():
        raise MlplabError(f"the run in {out} has already finished (results.json exists)")
    try:
        info = json.loads(run_file.read_text(encoding="utf-8"))
        cfg = config_from_dict(info["config"])
    except (ValueError, KeyError, TypeError, ConfigError) as e:
        raise MlplabError(f"{run_file} is damaged: {e}") from None
    data = data_dir if data_dir is not None else info.get("data_dir")
    if data is not None and (not isinstance(data, str | os.PathLike) or not str(data)):
        raise MlplabError(f"{run_file} is damaged: data_dir must be a directory name: {data!r}")
    return run_experiment(cfg, out, data_dir=data, progress=progress, resume=True)


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
