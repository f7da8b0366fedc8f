"""Running a search: slots enqueued once, workers on ``study.optimize``, shared data.

Each slot's deterministic values are enqueued once (``study.enqueue_trial``) and every worker
process runs ``study.optimize``; Optuna's heartbeat fails a dead worker's trial and re-enqueues
it (:func:`.storage.retry_stale`). Ours: the fine stage is enqueued once the coarse one is
COMPLETE, by whichever worker sees it first, and a trial of a slot that already has an earlier
live trial is pruned untrained; a SQLite command retries its killed predecessor's trials at
once; the splits are prepared once and memory-mapped by every worker (docs/search.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from mlplab.config import Config, apply_overrides, load_recipe
from mlplab.errors import MlplabError
from mlplab.machine import run_processes
from mlplab.search.space import STAGES, Param, SearchSpec, draw, fine_params
from mlplab.search.storage import SLOT, STAGE, open_storage, retry_stale, storage_errors
from mlplab.train.repeats import train_seeds

LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


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
        out += [
            apply_overrides(base, {"seed": str(base.seed + r)})
            for r in range(spec.stage_repeats(stage))
        ]
    return out


def _slot(trials: list[Any], stage: str, slot: int | None = None) -> list[Any]:
    """The trials of ``stage`` (of its slot ``slot`` only, if given)."""
    return [
        t
        for t in trials
        if t.user_attrs.get(STAGE) == stage and (slot is None or t.user_attrs.get(SLOT) == slot)
    ]


def open_stage(trials: list[Any], spec: SearchSpec) -> str | None:
    """The first stage with a slot that has no COMPLETE trial, or ``None``."""
    for stage in STAGES:
        done = {t.user_attrs[SLOT] for t in _slot(trials, stage) if t.state == TrialState.COMPLETE}
        if any(k not in done for k in range(spec.stage_trials(stage))):
            return stage
    return None


def enqueue_stage(study: Any, spec: SearchSpec, cfg: Config, stage: str, trials: list[Any]) -> None:
    """Enqueue every slot of ``stage`` that has no WAITING, RUNNING or COMPLETE trial (the
    fine stage's space follows from the COMPLETE coarse trials, one per slot)."""
    params = spec.params
    if stage == "fine":
        complete = [t for t in _slot(trials, "coarse") if t.state == TrialState.COMPLETE]
        done = {t.user_attrs[SLOT]: t for t in complete if t.user_attrs[SLOT] < spec.trials}
        params = fine_params(spec, [(done[k].params, done[k].value) for k in sorted(done)])
    for slot in range(spec.stage_trials(stage)):
        mine = _slot(trials, stage, slot)
        if any(t.state in LIVE for t in mine):
            continue
        values = draw(params, spec.seed, stage, slot)
        attrs: dict[str, Any] = {
            STAGE: stage,
            SLOT: slot,
            "space": [p.to_dict() for p in params],
            "overrides": {p.name: p.override(values[p.name], cfg) for p in params},
        }
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
        live = trial.study.get_trials(deepcopy=False, states=LIVE)
        if twins := [t.number for t in _slot(live, stage, slot) if t.number < trial.number]:
            trial.set_user_attr("duplicate_of", twins[0])  # enqueued twice: the first one runs
            raise optuna.TrialPruned(f"slot runs in trial {twins[0]}")
        space = [Param.from_dict(d) for d in attrs["space"]]
        for p in space:  # the enqueued values, recorded as the trial's parameters
            suggest = trial.suggest_int if p.integer else trial.suggest_float
            suggest(p.name, p.low, p.high, log=p.log)  # an int distribution rounds its bounds
        over = {**(spec.fine_set if stage == "fine" else {}), **attrs["overrides"]}
        result, value = train_seeds(apply_overrides(cfg, over), root, spec.stage_repeats(stage))
        try:
            for k, v in result.items():
                trial.set_user_attr(k, v)
        except UpdateFinishedTrialError:  # failed as stale meanwhile: its retry counts
            discarded.append(trial.number)
            raise
        shown = ", ".join(f"{p.name}={p.format(trial.params[p.name])}" for p in space)
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
            study = optuna.load_study(study_name=plan.study, storage=storage)
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


def _worker_main(plan: Plan, label: str) -> None:
    try:
        work(plan, label)
    except MlplabError as e:
        print(f"error: [{label}] {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(plan: Plan, workers: int) -> None:
    """Run ``work`` here (one worker) or in ``workers`` processes; an error if any failed."""
    if workers == 1:
        return work(plan)
    labels = [f"w{i + 1}" for i in range(workers)]
    codes = run_processes(_worker_main, [(plan, label) for label in labels])
    if bad := [f"{w} (exit status {c})" for w, c in zip(labels, codes, strict=True) if c]:
        raise MlplabError(
            f"search worker(s) {', '.join(bad)} failed (see above); run again to continue"
        )
