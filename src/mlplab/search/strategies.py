"""How a search draws its trials and stops bad ones: Optuna's samplers and pruners, per stage.

* **Samplers** (``sampler`` in a space file, ``--sampler``): ``random``, the course's draws
  (every slot is enqueued with fixed values, :func:`mlplab.search.space.draw`; the sampler
  is never asked), or ``tpe[:N]``, Optuna's Tree-structured Parzen Estimator: each trial
  asks for its values within its stage's ranges, the first ``N`` (default 10) of a stage at
  random, the later ones from the stage's finished trials. The TPE of slot ``k`` is seeded
  from ``(seed, stage, k)``, so that with one worker a search, even an interrupted one, draws
  the same values again.
* **Pruners** (``pruner``, ``--pruner``): ``none``; ``median[:STARTUP[:WARMUP]]``
  (:class:`optuna.pruners.MedianPruner`: stop a trial whose validation accuracy at a report
  is below the median of the stage's COMPLETE trials at the same report, once ``STARTUP``
  (default 5) of them are COMPLETE, from report ``WARMUP`` + 1 on, default 0); or
  ``halving[:MIN[:FACTOR]]`` (:class:`optuna.pruners.SuccessiveHalvingPruner`, rungs at
  reports ``MIN * FACTOR**i``, default 1 and 3). A trial reports its validation accuracy after
  every cycle of a cyclic schedule (every epoch of the others); run ``r`` of a trial of
  ``R`` trainings reports at steps ``r * P + 1 .. r * P + P`` (``P`` reports per run), so
  that trials are compared run by run, cycle by cycle. No trial is pruned before its stage has
  a COMPLETE one, nor at its last report.

Both look at the trials of the asking trial's stage only: a fine trial trains differently
(more cycles, other seeds) and draws from a narrower interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from mlplab.data import Splits
from mlplab.search.space import STAGES
from mlplab.search.storage import STAGE
from mlplab.train.build import resolved_n_s, total_updates
from mlplab.train.repeats import StopTraining
from mlplab.train.trainer import Trainer


def _stage_of(trial: Any) -> str | None:
    stage = trial.user_attrs.get(STAGE)
    return stage if stage in STAGES else None


class StageView:
    """``study`` seen by a sampler or pruner: only the trials of ``stage`` that train (not
    the later duplicates of a slot, nor spare trials)."""

    def __init__(self, study: Any, stage: str) -> None:
        self._study, self._stage = study, stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _mine(self, trials: list[Any]) -> list[Any]:
        return [
            t
            for t in trials
            if t.user_attrs.get(STAGE) == self._stage and "duplicate_of" not in t.user_attrs
        ]

    def _get_trials(
        self, deepcopy: bool = True, states: Any = None, use_cache: bool = False
    ) -> Any:
        return self._mine(
            self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        )

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        return self._mine(self._study.get_trials(deepcopy=deepcopy, states=states))

    @property
    def trials(self) -> list[Any]:
        return self.get_trials()


class StageTPE(optuna.samplers.BaseSampler):
    """Optuna's TPE on the trials of the asking trial's stage, seeded per slot: slot ``k`` of
    ``stage`` gets a :class:`optuna.samplers.TPESampler` seeded from ``(seed, stage, k)``."""

    def __init__(self, seed: int, startup: int) -> None:
        self.seed, self.startup = seed, startup
        self._per_trial: dict[int, tuple[Any, Any]] = {}
        self._spare = optuna.samplers.RandomSampler(seed)

    def _for(self, study: Any, trial: Any) -> tuple[Any, Any]:
        """The (sampler, study view) of ``trial``; a spare trial (no stage) draws at random."""
        stage = _stage_of(trial)
        if stage is None:
            return self._spare, study
        if trial.number not in self._per_trial:
            slot = int(trial.user_attrs.get("slot", 0))
            key = np.random.SeedSequence([self.seed, STAGES.index(stage), slot])
            tpe = optuna.samplers.TPESampler(
                seed=int(key.generate_state(1)[0]), n_startup_trials=self.startup
            )
            self._per_trial = {trial.number: (tpe, StageView(study, stage))}  # one at a time
        return self._per_trial[trial.number]

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        sampler, view = self._for(study, trial)
        return dict(sampler.infer_relative_search_space(view, trial))

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> Any:
        sampler, view = self._for(study, trial)
        return sampler.sample_relative(view, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        sampler, view = self._for(study, trial)
        return sampler.sample_independent(view, trial, name, dist)

    def before_trial(self, study: Any, trial: Any) -> None:
        sampler, view = self._for(study, trial)
        sampler.before_trial(view, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        sampler, view = self._for(study, trial)
        sampler.after_trial(view, trial, state, values)
        self._per_trial.pop(trial.number, None)


class StagePruner(optuna.pruners.BasePruner):
    """``inner`` on the trials of the pruned trial's stage, obeyed once that stage has a
    COMPLETE trial (the fine interval and the best come from COMPLETE trials only)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def prune(self, study: Any, trial: Any) -> bool:
        stage = _stage_of(trial)
        if stage is None:
            return False
        view = StageView(study, stage)
        prune = bool(self.inner.prune(view, trial))  # always asked: halving records the rungs
        return prune and bool(view.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def make_sampler(text: str, seed: int) -> Any:
    """The Optuna sampler of canonical sampler ``text`` (:func:`parse_sampler`)."""
    if text == "random":  # never asked: every slot is enqueued with its values
        return optuna.samplers.RandomSampler(seed)
    return StageTPE(seed, int(text.split(":")[1]))


def make_pruner(text: str) -> Any:
    """The Optuna pruner of canonical pruner ``text`` (:func:`parse_pruner`)."""
    kind, *n = text.split(":")
    inner: optuna.pruners.BasePruner
    if kind == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=int(n[0]), n_warmup_steps=int(n[1]))
    elif kind == "halving":
        inner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=int(n[0]), reduction_factor=int(n[1])
        )
    else:
        return optuna.pruners.NopPruner()
    return StagePruner(inner)


def report_every(trainer: Trainer, n_train: int) -> tuple[int, str]:
    """Updates between two reports (a cycle, or an epoch) and the unit's name."""
    cfg = trainer.cfg
    n_s = resolved_n_s(cfg, n_train)
    if n_s is not None:
        return 2 * n_s, "cycle"
    return max(1, n_train // cfg.batch_size), "epoch"


def reporter(trial: Any, runs: int) -> Callable[[int, Trainer, Splits], None]:
    """The ``on_step`` of :func:`mlplab.train.repeats.train_seeds` for ``trial`` (of ``runs``
    trainings): after every cycle (epoch) report the validation accuracy and stop the
    training (:class:`StopTraining`, with the report) when the pruner says so."""

    plan: dict[int, tuple[int, str, int]] = {}  # run -> (every, unit, reports per run)

    def on_step(run: int, trainer: Trainer, splits: Splits) -> None:
        if run not in plan:
            n = len(splits.y_train)
            every, unit = report_every(trainer, n)
            plan[run] = every, unit, max(1, total_updates(trainer.cfg, n) // every)
        every, unit, per_run = plan[run]
        if trainer.step % every:
            return
        k = trainer.step // every
        last = trainer.history[-1] if trainer.history else {}
        if last.get("step") == trainer.step and "val_accuracy" in last:
            value = float(last["val_accuracy"])  # the history point of this very update
        else:
            cfg = trainer.cfg
            value = float(
                trainer.net.evaluate(splits.x_val, splits.y_val, cfg.lam, cfg.eval_batch)[
                    "accuracy"
                ]
            )
        step = run * per_run + k
        trial.report(value, step)
        point = {"step": step, "run": run, unit: k, "updates": trainer.step, "value": value}
        if (run, k) != (runs - 1, per_run) and trial.should_prune():
            raise StopTraining(f"pruned after {unit} {k} of run {run + 1}", trainer, point)

    return on_step
