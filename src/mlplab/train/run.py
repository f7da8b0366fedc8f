"""One experiment from a recipe: data -> splits -> network -> training -> files.

Two entry points, one per story: :func:`run_experiment` starts a run afresh,
:func:`resume_experiment` continues an interrupted one from its newest good checkpoint.
Both hold the run directory (:func:`~mlplab.train.rundir.owned`), catch signals
(:mod:`mlplab.train.signals`) and go through the same phases
(:mod:`mlplab.train.phases`): prepare, write the start or restore, train, finish. A run
writes ``run.json``, ``checkpoints/``, ``model.npz`` + ``model.json``, ``curves.png`` and,
last, ``results.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mlplab.config import Config, config_from_dict
from mlplab.data.batches import RawDataset
from mlplab.errors import ConfigError, MlplabError
from mlplab.fileio import prepare_out_dir, read_json
from mlplab.machine import check_threads
from mlplab.train import phases
from mlplab.train.reuse import Cache
from mlplab.train.rundir import default_out, owned, recover_start
from mlplab.train.signals import RunInterrupted, catch_signals

__all__ = [
    "RunInterrupted",
    "cached_experiment",
    "resume_experiment",
    "run_experiment",
    "train",
]


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

    Data: ``raw``, or the data set at ``data_dir`` (default ``$MLPLAB_DATA``). ``run.json``
    (the configuration and the data directory) is written once everything is checked, and
    checkpoints go to ``out_dir/checkpoints`` every ``cfg.checkpoint_every`` updates and at
    the end. An ``out_dir`` holding files needs ``overwrite=True``; the earlier run's files
    come back if this start fails before its first checkpoint. ``resume=True``: continue
    the run of ``cfg`` in ``out_dir`` instead (:func:`resume_experiment`, with this
    configuration and data); the continued run ends bit-identical to an uninterrupted one.
    """
    check_threads(cfg.threads)  # recipes load on any host; a run needs the cores it names
    if resume:
        return _continue(cfg, Path(out_dir), data_dir, raw, progress)
    out = prepare_out_dir(out_dir, overwrite=overwrite)
    with owned(out), catch_signals() as stop:
        note = recover_start(out)  # a start killed here before: the run it replaced comes back
        _note(note)
        if note and (out / "results.json").exists():  # checked before the put-back
            raise MlplabError(
                f"{out} holds a finished run again (put back after a start that was stopped); "
                "run the command again to replace it (it needs --overwrite)"
            )
        run = phases.prepare(
            cfg, out, data_dir=data_dir, raw=raw, progress=progress, stop=stop, resuming=False
        )
        phases.write_start(run)
        phases.train(run)
        return phases.finish(run, stop)


def resume_experiment(
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Continue the interrupted run in ``out_dir`` from its newest good checkpoint, with the
    configuration of its ``run.json`` and its data (or ``data_dir``).

    A start of another run that was stopped (even by kill -9) before its first checkpoint
    is undone first (:func:`~mlplab.train.rundir.recover_start`): the run it replaced
    continues."""
    out = Path(out_dir)
    if not any(os.path.lexists(out / n) for n in ("run.json", ".previous")):
        raise MlplabError(f"{out} holds no run to resume (no run.json)")
    return _continue(None, out, data_dir, None, progress)


def _continue(
    cfg: Config | None,
    out: Path,
    data_dir: str | os.PathLike | None,
    raw: RawDataset | None,
    progress: bool,
) -> dict[str, Any]:
    """The resume story: ``cfg`` (None: the one ``run.json`` names) continued in ``out``."""
    with owned(out), catch_signals() as stop:
        _note(recover_start(out))
        if cfg is None:
            cfg, data_dir = _described_run(out, data_dir)
            check_threads(cfg.threads)
        run = phases.prepare(
            cfg, out, data_dir=data_dir, raw=raw, progress=progress, stop=stop, resuming=True
        )
        phases.restore(run)
        phases.train(run)
        return phases.finish(run, stop)


def _described_run(
    out: Path, data_dir: str | os.PathLike | None
) -> tuple[Config, str | os.PathLike | None]:
    """The configuration and data directory of the unfinished run in ``out`` (``run.json``;
    ``data_dir`` replaces its data directory)."""
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
    return cfg, data


def _note(text: str | None) -> None:
    """A line on stderr about what was found and done in a run directory."""
    if text:
        print(f"note: {text}", file=sys.stderr, flush=True)


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
