"""Running a search: :func:`run_search` (the command's side) and the workers it starts.

Each slot's values are enqueued once and every worker runs ``study.optimize``; Optuna's
heartbeat fails a dead worker's trial, :func:`.storage.retry_stale` re-enqueues it. Ours: the
fine stage is enqueued when the coarse one is COMPLETE, a slot's later duplicate is pruned
untrained, the sole command of a SQLite study retries a killed one's trials at once, and the
splits are prepared once for every worker (see docs/explanations/search.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from mlplab.config import Config, apply_overrides, load_recipe
from mlplab.data import RawDataset, data_fingerprint, load_data, parse_split
from mlplab.errors import ConfigError, MlplabError
from mlplab.fileio import file_lock, prepare_out_dir
from mlplab.machine import check_threads, run_processes, usable_cores
from mlplab.search.report import write_report
from mlplab.search.space import (
    STAGES,
    STRATEGY_DEFAULTS,
    Param,
    SearchSpec,
    draw,
    fine_params,
    load_spec,
)
from mlplab.search.storage import (
    PRUNED,
    SLOT,
    STAGE,
    check_study_name,
    default_storage,
    default_study_name,
    finished,
    follow_up,
    open_storage,
    open_study,
    redact,
    retry_stale,
    sqlite_path,
    storage_errors,
)
from mlplab.search.strategies import make_pruner, make_sampler, reporter
from mlplab.train import prepared
from mlplab.train.repeats import train_seeds

LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


def taken(trial: Any) -> bool:
    """Whether ``trial`` holds its slot: WAITING, RUNNING, COMPLETE or pruned by the pruner."""
    return trial.state in LIVE or finished(trial)


@dataclass
class Plan:
    """What a worker needs (picklable: it is passed to worker processes)."""

    recipe: str
    sets: dict[str, str]
    spec: SearchSpec
    study: str
    url: str
    splits_dir: str
    heartbeat: int = 10
    grace: int = 60
    quiet: bool = False


def stage_configs(cfg: Config, spec: SearchSpec) -> list[Config]:
    """Every configuration whose split a trial trains on (one per stage and repeat seed)."""
    out = []
    for stage in (s for s in STAGES if spec.stage_trials(s)):
        base = apply_overrides(cfg, spec.fine_set if stage == "fine" else {})
        seeds = range(base.seed, base.seed + spec.stage_repeats(stage))
        out += [apply_overrides(base, {"seed": str(seed)}) for seed in seeds]
    return out


def _slot(trials: list[Any], stage: str, slot: int | None = None) -> list[Any]:
    """The trials of ``stage`` (of its slot ``slot`` only, if given)."""
    mine = [t for t in trials if t.user_attrs.get(STAGE) == stage]
    return mine if slot is None else [t for t in mine if t.user_attrs[SLOT] == slot]


def open_stage(trials: list[Any], spec: SearchSpec) -> str | None:
    """The first stage with a slot that has no COMPLETE (or pruned) trial, or ``None``."""
    for stage in STAGES:
        done = {t.user_attrs[SLOT] for t in _slot(trials, stage) if finished(t)}
        if any(k not in done for k in range(spec.stage_trials(stage))):
            return stage
    return None


def enqueue_stage(study: Any, spec: SearchSpec, cfg: Config, stage: str, trials: list[Any]) -> None:
    """Enqueue every slot of ``stage`` that has no WAITING, RUNNING, COMPLETE or pruned trial
    (the fine stage's space follows from the COMPLETE coarse trials, one per slot): with its
    values (``random``), or none, for the trial to ask the sampler (``tpe``)."""
    params = spec.params
    if stage == "fine":
        complete = [t for t in _slot(trials, "coarse") if t.state == TrialState.COMPLETE]
        done = {t.user_attrs[SLOT]: t for t in complete if t.user_attrs[SLOT] < spec.trials}
        params = fine_params(spec, [(done[k].params, done[k].value) for k in sorted(done)])
    for slot in range(spec.stage_trials(stage)):
        mine = _slot(trials, stage, slot)
        if any(taken(t) for t in mine):
            continue
        attrs: dict[str, Any] = {STAGE: stage, SLOT: slot, "space": [p.to_dict() for p in params]}
        values: dict[str, Any] = {}
        if spec.sampler == "random":
            values = draw(params, spec.seed, stage, slot)
            attrs["overrides"] = {p.name: p.override(values[p.name], cfg) for p in params}
        if failed := sorted(t.number for t in mine if t.state == TrialState.FAIL):
            attrs["retry_of"] = failed
        study.enqueue_trial(values, user_attrs=attrs)


def _objective(plan: Plan, cfg: Config, say: Any, discarded: list[int]) -> Any:
    spec, root = plan.spec, Path(plan.splits_dir)

    def objective(trial: Any) -> float:
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "threads": str(cfg.threads)}
        trial.set_user_attr("owner", owner)
        attrs = trial.user_attrs
        if SLOT not in attrs:  # asked while another worker took the last queued slot
            trial.set_user_attr("spare", True)
            raise optuna.TrialPruned("no queued slot left")
        stage, slot = attrs[STAGE], attrs[SLOT]
        live = [t for t in trial.study.get_trials(deepcopy=False) if taken(t)]
        if twins := [t.number for t in _slot(live, stage, slot) if t.number < trial.number]:
            trial.set_user_attr("duplicate_of", twins[0])  # enqueued twice: the first one runs
            raise optuna.TrialPruned(f"slot runs in trial {twins[0]}")
        space = [Param.make(**d) for d in attrs["space"]]
        for p in space:  # the enqueued values (or the sampler's), the trial's parameters
            suggest = trial.suggest_int if p.integer else trial.suggest_float
            suggest(p.name, p.low, p.high, log=p.log)  # suggest_int casts whole bounds
        if "overrides" not in attrs:  # asked the sampler
            overrides = {p.name: p.override(trial.params[p.name], cfg) for p in space}
            trial.set_user_attr("overrides", overrides)
        over = {**(spec.fine_set if stage == "fine" else {}), **trial.user_attrs["overrides"]}
        runs = spec.stage_repeats(stage)
        shown = ", ".join(f"{p.name}={p.format(trial.params[p.name])}" for p in space)
        hook = reporter(trial, runs) if spec.pruner != "none" else None
        result, value = train_seeds(apply_overrides(cfg, over), root, runs, on_step=hook)
        stopped = result.get("stopped")
        try:
            for k, v in result.items():
                trial.set_user_attr(k, v)
            if stopped:
                trial.set_user_attr(PRUNED, stopped)
        except UpdateFinishedTrialError:  # failed as stale meanwhile: its retry counts
            discarded.append(trial.number)
            raise
        if stopped:
            say(
                f"{stage} {slot + 1}/{spec.stage_trials(stage)} (trial {trial.number}) {shown}: "
                f"{stopped['reason']} (val {100 * stopped['value']:.2f} %, "
                f"{result['updates']} updates) in {result['wall_seconds']:.1f} s"
            )
            raise optuna.TrialPruned(stopped["reason"])
        score = "diverged" if "diverged" in result else f"val {100 * value:.2f} %"
        say(
            f"{stage} {slot + 1}/{spec.stage_trials(stage)} (trial {trial.number}) {shown}: "
            f"{score} in {result['wall_seconds']:.1f} s"
        )
        return value

    return objective


def work(plan: Plan, label: str = "") -> None:
    """One worker: enqueue what is due, ``study.optimize`` until every stage is COMPLETE."""

    def say(line: str) -> None:
        if not plan.quiet:
            print(f"[{label}] {line}" if label else line, flush=True)

    def drained(study: Any, _trial: Any) -> None:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()

    cfg = load_recipe(plan.recipe, plan.sets)
    storage = open_storage(plan.url, heartbeat=plan.heartbeat, grace=plan.grace)
    discarded: list[int] = []
    objective = _objective(plan, cfg, say, discarded)
    try:
        with storage_errors(plan.url):
            study = optuna.load_study(
                study_name=plan.study,
                storage=storage,
                sampler=make_sampler(plan.spec.sampler, plan.spec.seed),
                pruner=make_pruner(plan.spec.pruner),
            )
            while True:
                optuna.storages.fail_stale_trials(study)  # also those of other machines
                trials = study.get_trials(deepcopy=False)
                if (stage := open_stage(trials, plan.spec)) is not None:
                    enqueue_stage(study, plan.spec, cfg, stage, trials)
                if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    try:
                        study.optimize(objective, callbacks=[drained], gc_after_trial=False)
                    except ValueError:  # Optuna cannot tell a trial failed meanwhile
                        if not discarded:
                            raise
                        say(
                            f"trial {discarded.pop()} was failed as stale by another worker "
                            "while it ran: its result is discarded, its retry counts"
                        )
                elif stage is None:
                    return
                else:  # the stage's last trials run elsewhere
                    time.sleep(min(1.0, plan.heartbeat / 2))
    finally:
        storage.engine.dispose()


def retry_orphans(study: Any, storage: Any) -> list[int]:
    """Fail and re-enqueue every RUNNING trial (call only as the study's sole owner)."""
    gone = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        with contextlib.suppress(UpdateFinishedTrialError):
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                retry_stale(study, storage.get_trial(t._trial_id))
                gone.append(t.number)
    return gone


def run_workers(plan: Plan, workers: int) -> None:
    """Run ``work`` here (one worker) or in ``workers`` processes; an error if any failed."""
    if workers == 1:
        return work(plan)
    codes = run_processes(work, {f"w{i + 1}": (plan, f"w{i + 1}") for i in range(workers)})
    if bad := [f"{w} (exit status {c})" for w, c in codes.items() if c]:
        raise MlplabError(
            f"search worker(s) {', '.join(bad)} failed (see above); run again to continue"
        )


@dataclass
class SearchResult:
    """What a search produced: its summary (``search.json``) and how to train its best."""

    study: str
    out: Path
    storage: str
    summary: dict[str, Any]
    best_overrides: dict[str, str] | None
    follow_up: str | None
    figure_error: str | None = None  # search.png could not be drawn: why (the rest is written)


def _settings(cfg: Any, spec: SearchSpec) -> dict[str, Any]:
    """What a study must keep between runs: the training configuration and the space."""
    rec = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "description")}
    space = {k: v for k, v in spec.to_dict().items() if k not in ("trials", "fine_trials")}
    return json.loads(json.dumps({"recipe": rec, "space": space}))


def _check(cfg: Any, spec: SearchSpec) -> None:
    """Refuse a recipe without a validation split, or bounds that make an invalid recipe."""
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
    """Run (or continue) the two-stage search of ``recipe`` (``spec``: its space file's by
    default) into an Optuna study (``sqlite:///OUT/study.db`` unless ``storage``) with
    ``workers`` processes; write ``search.{md,csv,png,json}``. Run again after an interruption,
    even kill -9, and only unfinished slots run, with their same parameters."""
    if grace <= heartbeat:
        raise MlplabError(f"grace period ({grace} s) must exceed the heartbeat ({heartbeat} s)")
    if restart not in ("never", "changed", "always"):
        raise MlplabError(f"restart must be never, changed or always, not {restart!r}")
    sets = dict(sets or {})
    cfg = load_recipe(recipe, sets)
    check_threads(cfg.threads)  # every trial trains with the recipe's BLAS threads
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
    busy = "{} is in use by another mlplab search; wait for it or use another --out"
    with contextlib.ExitStack() as held:  # held for the command's life
        held.enter_context(file_lock(outp / ".search.lock", busy.format(outp)))
        if db is not None:  # one command owns a SQLite study
            held.enter_context(file_lock(Path(f"{db.resolve()}.lock"), busy.format(db)))
        try:
            if raw is None:  # before the study: bad data must not cost a --restart its study
                raw = load_data(data_dir, size=cfg.image_size(), progress=not quiet)
            fingerprint = data_fingerprint(raw)
            settings = {**_settings(cfg, spec), "data": fingerprint}
            plan.splits_dir = str(_splits_dir(outp / "splits", fingerprint))
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
                + "".join(
                    f", {k} {getattr(spec, k)}"
                    for k, v in STRATEGY_DEFAULTS.items()
                    if getattr(spec, k) != v
                )
            )
            if todo:
                prepared.prepare_splits(raw, stage_configs(cfg, spec), Path(plan.splits_dir))
                raw = None  # the workers read the memory-mapped splits only
                run_workers(plan, cap)
            with storage_errors(url):
                summary = write_report(the_study, spec, outp)
                if open_stage(the_study.get_trials(deepcopy=False), spec) is None:
                    shutil.rmtree(outp / "splits", ignore_errors=True)
        except OSError as e:  # a full disk while preparing the splits or writing the report
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            raise MlplabError(
                f"cannot write {e.filename or outp}: {e.strerror or e}; finished trials are "
                f"kept: {'free space' if full else 'fix that'} and run the command again"
            ) from None
    figure_error = summary.pop("figure_error", None)
    best = summary["best"]
    over = best["overrides"] if best else None
    cmd = follow_up(spec.final, name, url) if best else None
    return SearchResult(name, outp, url, summary, over, cmd, figure_error)


def _splits_dir(root: Path, fingerprint: str) -> Path:
    """Where the prepared splits of the data with ``fingerprint`` go under ``root``: a
    directory named by it, so that changed data (same source and sizes, other pixels) is
    never trained on the splits of the old; the splits of other data there are removed."""
    key = "data-" + re.sub(r"[^A-Za-z0-9._-]", "-", fingerprint)
    if root.is_dir():
        for old in root.iterdir():
            if old.name != key:
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    return root / key
