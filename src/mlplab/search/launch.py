""":func:`run_search`: the library function behind ``mlplab search`` and ``mlplab reproduce``."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplab.config import apply_overrides, load_recipe
from mlplab.data import RawDataset, parse_split
from mlplab.errors import ConfigError, MlplabError
from mlplab.fileio import prepare_out_dir
from mlplab.machine import usable_cores
from mlplab.search.space import SearchSpec, load_spec
from mlplab.search.storage import (
    check_study_name,
    default_storage,
    default_study_name,
    open_storage,
    open_study,
    redact,
    sqlite_path,
    sqlite_url,
    storage_errors,
)
from mlplab.train.rundir import data_fingerprint, file_lock


@dataclass
class SearchResult:
    """What a search produced: its summary (``search.json``) and how to train its best."""

    study: str
    out: Path
    storage: str
    summary: dict[str, Any]
    best_overrides: dict[str, str] | None
    follow_up: str | None


def _settings(cfg: Any, spec: SearchSpec) -> dict[str, Any]:
    """What a study must keep between runs: the training configuration and the space."""
    rec = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "description")}
    space = {k: v for k, v in spec.to_dict().items() if k not in ("trials", "fine_trials")}
    return json.loads(json.dumps({"recipe": rec, "space": space}))


def _check(cfg: Any, spec: SearchSpec) -> None:
    name, sizes = parse_split(cfg.split)
    if name == "all" or (sizes is not None and sizes[1] == 0):
        raise ConfigError(
            f"recipe {cfg.name}: the search scores validation accuracy, but "
            f"split {cfg.split!r} has no validation part (use e.g. 45k)"
        )
    for stage_set in ({}, spec.fine_set):  # every bound must make a valid recipe
        for p in spec.params:
            for v in (p.low, p.high):
                apply_overrides(cfg, {**stage_set, p.name: p.override(v, cfg)})


def _lock(path: Path, what: str) -> Any:
    """Own ``what`` (``--out`` or a SQLite study) for the command's life: refused if busy."""
    return file_lock(
        path, lambda: f"{what} is in use by another mlplab search; wait for it or use another --out"
    )


def follow_up(final: str, study: str, url: str, default_url: str) -> str:
    """The ``mlplab train --from-study`` command, shell-quoted (``--storage`` unless default)."""
    cmd = ["mlplab", "train", "--recipe", final or "RECIPE", "--from-study", study]
    if url != default_url:
        path = sqlite_path(url)
        cmd += ["--storage", sqlite_url(path.resolve()) if path else redact(url)]
    return shlex.join(cmd)


def run_search(
    recipe: str,
    *,
    spec: SearchSpec | None = None,
    sets: dict[str, str] | None = None,
    out: str | Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    data_dir: str | Path | None = None,
    raw: RawDataset | None = None,
    restart: str = "never",
    heartbeat: int = 10,
    grace: int = 60,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
) -> SearchResult:
    """Run (or continue) the two-stage search of ``recipe``; write ``search.{md,csv,png,json}``.

    ``spec`` defaults to the recipe's space file. Trials are kept in an Optuna study
    (``sqlite:///OUT/study.db`` unless ``storage``); run again after an interruption, even
    kill -9, and only unfinished slots run, with their same parameters. ``workers`` processes
    (at most the cores and the larger stage's trials) train at once.
    """
    from mlplab.data.prepared import prepare_splits
    from mlplab.report.search import write_report
    from mlplab.search.runner import Plan, open_stage, retry_orphans, run_workers, stage_configs

    if grace <= heartbeat:
        raise MlplabError(f"grace period ({grace} s) must exceed the heartbeat ({heartbeat} s)")
    if restart not in ("never", "changed", "always"):
        raise MlplabError(f"restart must be never, changed or always, not {restart!r}")
    sets = dict(sets or {})
    cfg = load_recipe(recipe, sets)
    spec = spec or load_spec(recipe)
    _check(cfg, spec)
    name = check_study_name(study) if study is not None else default_study_name(cfg.name)
    outp = prepare_out_dir(Path(out) if out else Path("runs") / name, overwrite=True)
    url = storage or default_storage(outp)
    cap = max(1, min(workers, usable_cores(), max(spec.trials, spec.fine_trials)))
    if cap < workers:
        echo(f"using {cap} worker(s), not {workers}: no more than the cores and the trials")
    plan = Plan(recipe, sets, spec, name, url, str(outp / "splits"), heartbeat, grace, quiet)
    db = sqlite_path(url)
    with contextlib.ExitStack() as held:
        held.enter_context(_lock(outp / ".search.lock", str(outp)))
        if db is not None:  # one command owns a SQLite study
            held.enter_context(_lock(Path(f"{db.resolve()}.lock"), str(db)))
        try:
            if raw is None:  # before the study: bad data must not cost a --restart its study
                from mlplab.data import load_cifar10, locate_data

                raw = load_cifar10(locate_data(data_dir, progress=not quiet), progress=not quiet)
            settings = {**_settings(cfg, spec), "data": data_fingerprint(raw)}
            st = open_storage(url, heartbeat=heartbeat, grace=grace)
            held.callback(st.engine.dispose)
            with storage_errors(url):
                the_study, deleted = open_study(name, st, url, settings, restart)
                if deleted:
                    echo(f"deleted study {name} and its trials (--restart {restart}: {deleted})")
                if db is not None and (gone := retry_orphans(the_study, st)):
                    echo(f"trial(s) {gone} of a killed search: failed, their slots run again")
                todo = open_stage(the_study.get_trials(deepcopy=False), spec) is not None
            echo(
                f"study {name} on {redact(url)}: {', '.join(p.to_text() for p in spec.params)}; "
                f"{spec.trials} coarse ({spec.repeats} training(s) each) + {spec.fine_trials} "
                f"fine ({spec.fine_repeats} each) trials, fine rule {spec.fine_rule.to_text()}, "
                f"{cap} worker(s), {cfg.threads} BLAS thread(s) per training"
            )
            if todo:
                prepare_splits(raw, stage_configs(cfg, spec), Path(plan.splits_dir))
                raw = None  # the workers read the memory-mapped splits only
                run_workers(plan, cap)
            with storage_errors(url):
                summary = write_report(the_study, spec, outp)
                if open_stage(the_study.get_trials(deepcopy=False), spec) is None:
                    shutil.rmtree(plan.splits_dir, ignore_errors=True)
        except OSError as e:  # a full disk while preparing the splits or writing the report
            raise MlplabError(
                f"cannot write {e.filename or outp}: {e.strerror or e}; finished trials are "
                "kept: free space and run the command again"
            ) from None
    best = summary["best"]
    over = best["overrides"] if best else None
    cmd = follow_up(spec.final, name, url, default_storage(Path("runs") / name)) if best else None
    return SearchResult(name, outp, url, summary, over, cmd)
