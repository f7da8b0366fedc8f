"""Running trials: the worker loop, and worker processes that each run it.

A worker repeatedly takes the study lock, marks trials of gone workers FAIL,
claims the lowest free slot of the first unfinished stage (creating its trial),
releases the lock, trains, and reports the validation accuracy.  It stops when
every stage is finished; while the only unfinished slots are running elsewhere
(or the fine stage waits for the last coarse trials) it polls.

``mlplab search --workers W`` starts W processes ``python -m mlplab.search.worker``
with ``OPENBLAS_NUM_THREADS`` (and the other BLAS/OpenMP variables) set to
``max(1, cores // W)`` before NumPy is imported, and ``threadpoolctl`` limits as
well.  Each worker loads the data set once and builds the split once; every trial
starts from the generator state the split left behind, exactly as
:func:`mlplab.train.run.run_experiment` does with the recipe's seed, so all trials
see the same data and a trial's numbers can be reproduced with ``mlplab train``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import Config, apply_overrides, load_recipe
from mlplab.errors import MlplabError, TrainingDiverged
from mlplab.search.space import (
    STAGES,
    Param,
    SearchSpec,
    Value,
    draw,
    fine_params,
    trial_overrides,
)
from mlplab.search.study import (
    ATTR_FINE,
    SLOT,
    STAGE,
    StudyLock,
    fail_stale_trials,
    import_optuna,
    load_study,
    open_storage,
    owner_attrs,
    storage_errors,
)

WAIT = "wait"
_BLAS_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class Plan:
    """What a worker needs to know (JSON-serialisable, passed to worker processes)."""

    recipe: str
    sets: dict[str, str]
    spec: dict[str, Any]
    study: str
    storage: str
    data_dir: str | None = None
    heartbeat: int = 10
    grace: int = 60
    poll: float = 0.5
    quiet: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> Plan:
        return Plan(**json.loads(text))


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """BLAS threads of each of ``workers`` processes: ``max(1, cores // workers)``."""
    return max(1, (cores or usable_cores()) // max(1, workers))


# ------------------------------------------------------------------------------- data


class TrialData:
    """The data set, loaded once per worker, and the splits of the recipe, built once.

    Keeps the splits of the last ``keep`` seeds (:func:`train_trial` raises it to the
    trial's number of trainings, so consecutive trials reuse them instead of
    re-standardising).
    """

    def __init__(self, data_dir: str | None, raw: Any = None) -> None:
        self.data_dir, self.raw, self.keep = data_dir, raw, 1
        self._cache: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}

    def splits_for(self, cfg: Config) -> tuple[Any, np.random.Generator]:
        """The splits of ``cfg`` and a generator in the state they left (seeded by cfg.seed)."""
        from mlplab.data import load_cifar10, make_splits

        if self.raw is None:
            self.raw = load_cifar10(self.data_dir, progress=False)
        key = (cfg.split, cfg.n_train, cfg.dtype, cfg.seed)
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
        else:
            while len(self._cache) >= self.keep:
                del self._cache[next(iter(self._cache))]  # least recently used first
            rng = np.random.default_rng(cfg.seed)
            splits = make_splits(
                self.raw, cfg.split, rng, n_train=cfg.n_train or None, dtype=cfg.dtype
            )
            self._cache[key] = (splits, rng.bit_generator.state)
        splits, state = self._cache[key]
        rng = np.random.default_rng(0)
        rng.bit_generator.state = state
        return splits, rng


# ----------------------------------------------------------------------------- claims


@dataclass
class Claim:
    """A trial this worker created for slot ``slot`` of ``stage`` and now runs."""

    trial: Any
    trial_id: int
    stage: str
    slot: int
    values: dict[str, Value]
    overrides: dict[str, str]
    params: tuple[Param, ...]


def _slot_trials(trials: list[Any], stage: str) -> list[Any]:
    return [t for t in trials if t.user_attrs.get(STAGE) == stage and SLOT in t.user_attrs]


def stage_params(study: Any, spec: SearchSpec, stage: str, trials: list[Any]) -> tuple[Param, ...]:
    """The parameters (with intervals) of ``stage``; the fine ones are derived once and stored.

    Call with the coarse stage finished and under the study lock.
    """
    if stage == "coarse":
        return spec.params
    stored = study.user_attrs.get(ATTR_FINE)
    if stored:
        return tuple(
            Param.make(d["name"], d["scale"], d["low"], d["high"]) for d in stored["params"]
        )
    from optuna.trial import TrialState

    first: dict[int, Any] = {}
    for t in sorted(_slot_trials(trials, "coarse"), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and t.user_attrs[SLOT] < spec.trials:
            first.setdefault(t.user_attrs[SLOT], t)
    ordered = [first[s] for s in sorted(first)]
    params = fine_params(spec, [(t.params, float(t.value)) for t in ordered])
    study.set_user_attr(
        ATTR_FINE,
        {
            "params": [p.to_dict() for p in params],
            "rule": spec.fine_rule.to_text(),
            "from_trials": [t.number for t in ordered],
        },
    )
    return params


def _fail_strays(study: Any) -> None:
    """WAITING trials exist only inside a worker's locked section: any seen here are strays."""
    from optuna.trial import TrialState

    for _ in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        t = study.ask()
        t.set_user_attr("failed_because", "left WAITING by a killed worker")
        study.tell(t, state=TrialState.FAIL)


def next_claim(study: Any, storage: Any, spec: SearchSpec, cfg: Config) -> Claim | str | None:
    """Create the trial of the next free slot (call under the study lock).

    Returns the :class:`Claim`, ``WAIT`` if every unfinished slot is running
    elsewhere, or ``None`` when all stages are finished.
    """
    from optuna.trial import TrialState

    _fail_strays(study)
    trials = study.get_trials(deepcopy=False)
    for stage in STAGES:
        n = spec.stage_trials(stage)
        mine = _slot_trials(trials, stage)
        done = {t.user_attrs[SLOT] for t in mine if t.state == TrialState.COMPLETE}
        busy = {t.user_attrs[SLOT] for t in mine if t.state == TrialState.RUNNING}
        todo = [s for s in range(n) if s not in done]
        if not todo:
            continue
        free = [s for s in todo if s not in busy]
        if not free:
            return WAIT
        params = stage_params(study, spec, stage, trials)
        slot = free[0]
        values = draw(params, spec.seed, stage, slot)
        overrides = trial_overrides(cfg, params, values)
        retry_of = sorted(
            t.number for t in mine if t.user_attrs[SLOT] == slot and t.state == TrialState.FAIL
        )
        return _create(study, storage, stage, slot, params, values, overrides, retry_of)
    return None


def _create(
    study: Any,
    storage: Any,
    stage: str,
    slot: int,
    params: tuple[Param, ...],
    values: dict[str, Value],
    overrides: dict[str, str],
    retry_of: list[int],
) -> Claim:
    """Enqueue the slot's parameters, give it a heartbeat, and pop it as RUNNING."""
    from optuna.trial import TrialState

    token = uuid.uuid4().hex
    attrs: dict[str, Any] = {
        STAGE: stage,
        SLOT: slot,
        "token": token,
        "owner": owner_attrs(),
        "overrides": overrides,
    }
    if retry_of:
        attrs["retry_of"] = retry_of
    study.enqueue_trial(dict(values), user_attrs=attrs)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    number = next(t.number for t in waiting if t.user_attrs.get("token") == token)
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    if storage.heartbeat_interval:
        # before it is RUNNING, so no RUNNING trial of ours is ever without a heartbeat
        storage.record_heartbeat(trial_id)
    trial = study.ask(fixed_distributions={p.name: p.distribution() for p in params})
    if trial.number != number:  # cannot happen under the lock; never run a stranger's slot
        study.tell(trial, state=TrialState.FAIL)
        raise MlplabError(f"search: popped trial {trial.number} instead of {number}")
    return Claim(trial, trial_id, stage, slot, values, overrides, params)


# ------------------------------------------------------------------------- heartbeat


class Heartbeat:
    """Records the heartbeat of a running trial; exits the process if its parent died."""

    def __init__(self, storage: Any, trial_id: int | None, parent: int | None) -> None:
        self.storage, self.trial_id, self.parent = storage, trial_id, parent
        self.interval = float(storage.heartbeat_interval or 0) if storage is not None else 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="mlplab-heartbeat")

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(min(1.0, self.interval or 1.0)):
            check_parent(self.parent)
            if (
                self.interval
                and self.trial_id is not None
                and time.monotonic() - last >= self.interval
            ):
                last = time.monotonic()
                with contextlib.suppress(Exception):  # a missed beat only risks staleness
                    self.storage.record_heartbeat(self.trial_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def check_parent(parent: int | None) -> None:
    """Leave at once (trial left RUNNING, to be re-tried) if the launching process died."""
    if parent is not None and os.getppid() != parent:
        os._exit(3)


# ------------------------------------------------------------------------- the loop


def run_claim(
    claim: Claim,
    study: Any,
    storage: Any,
    cfg: Config,
    spec: SearchSpec,
    data: TrialData,
    *,
    parent: int | None = None,
) -> dict[str, Any] | None:
    """Train the claimed trial and report it; the trial's attributes, or None if discarded."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    over = dict(spec.fine_set) if claim.stage == "fine" else {}
    over.update(claim.overrides)
    trial = claim.trial
    with Heartbeat(storage, claim.trial_id, parent):
        try:
            attrs, value = train_trial(cfg, over, data, spec.stage_repeats(claim.stage))
        except BaseException as e:
            with contextlib.suppress(Exception):
                trial.set_user_attr("failed_because", f"{type(e).__name__}: {e}"[:500])
                study.tell(trial, state=TrialState.FAIL)
            raise
        try:
            state = storage.get_trial(claim.trial_id).state
            if state != TrialState.RUNNING:
                raise UpdateFinishedTrialError(f"it is {state.name}")
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            study.tell(trial, value)
        except (UpdateFinishedTrialError, RuntimeError) as e:
            if storage.get_trial(claim.trial_id).state == TrialState.RUNNING:
                raise
            print(
                f"trial {trial.number} was declared stale by another worker ({e}); "
                "its slot runs again elsewhere and this result is discarded",
                file=sys.stderr,
                flush=True,
            )
            return None
    return {**attrs, "value": value}


def train_trial(
    cfg: Config, over: dict[str, str], data: TrialData, repeats: int = 1
) -> tuple[dict[str, Any], float]:
    """Train one configuration ``repeats`` times; its attributes and its score.

    Training ``r`` uses seed ``cfg.seed + r`` (its own split, initialisation and batch
    order), so training 0 is exactly what ``mlplab train`` does with the recipe. The
    score is the mean validation accuracy. A diverged training makes the trial score 0
    (with attribute ``diverged``): a result, not a failure, so the slot is not re-tried
    forever.
    """
    from mlplab.train.run import train_on_splits

    wall = time.perf_counter()
    data.keep = max(data.keep, repeats)
    base = apply_overrides(cfg, over)
    attrs: dict[str, Any] = {}
    vals, tests, trains, seconds = [], [], [], 0.0
    for r in range(repeats):
        run_cfg = apply_overrides(base, {"seed": str(base.seed + r)}) if r else base
        splits, rng = data.splits_for(run_cfg)
        t0 = time.perf_counter()
        try:
            _net, trainer, metrics = train_on_splits(run_cfg, splits, rng, progress=False)
        except TrainingDiverged as e:
            attrs["diverged"] = f"seed {run_cfg.seed}: {e}"
            seconds += time.perf_counter() - t0
            break
        seconds += trainer.seconds
        vals.append(float(metrics["val_accuracy"]))
        trains.append(float(metrics["train_accuracy"]))
        tests.append(float(metrics["test_accuracy"]))
    value = 0.0 if "diverged" in attrs else float(np.mean(vals))
    if vals:
        attrs["train_accuracy"] = float(np.mean(trains))
        attrs["test_accuracy"] = float(np.mean(tests))
    if repeats > 1:
        attrs["seeds"] = [base.seed + r for r in range(repeats)]
        attrs["val_accuracies"] = vals
        if len(vals) == repeats:
            attrs["val_sd"] = float(np.std(vals, ddof=1))
    attrs["seconds"] = seconds
    attrs["wall_seconds"] = time.perf_counter() - wall
    return attrs, value


def run_worker(
    plan: Plan,
    *,
    raw: Any = None,
    label: str = "",
    parent: int | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Run trials of ``plan``'s study until every stage is finished; the number run here."""
    import_optuna()
    say = log or (lambda s: print(s, flush=True))
    if plan.quiet:
        say = lambda s: None  # noqa: E731
    tag = f"[{label}] " if label else ""
    spec = SearchSpec.from_dict(plan.spec)
    cfg = load_recipe(plan.recipe, plan.sets)
    storage = open_storage(plan.storage, heartbeat=plan.heartbeat, grace=plan.grace)
    study = load_study(plan.study, storage, plan.storage)
    lock = StudyLock(plan.storage, plan.study)
    data = TrialData(plan.data_dir, raw)
    try:
        with storage_errors(plan.storage):
            ran = _loop(study, storage, lock, spec, cfg, data, say, tag, parent, plan.poll)
    finally:
        lock.close()
    return ran


def _loop(
    study: Any,
    storage: Any,
    lock: StudyLock,
    spec: SearchSpec,
    cfg: Config,
    data: TrialData,
    say: Callable[[str], None],
    tag: str,
    parent: int | None,
    poll: float,
) -> int:
    """Claim and run trials until all stages are finished; the number run."""
    ran, waiting = 0, False
    while True:
        check_parent(parent)
        with lock:
            gone = fail_stale_trials(study, storage)
            claim = next_claim(study, storage, spec, cfg)
        if gone:
            say(f"{tag}marked FAIL trial(s) {gone} whose worker is gone; their slots re-run")
        if claim is None:
            break
        if claim == WAIT:
            if not waiting:
                say(f"{tag}waiting for trials running in other workers")
            waiting = True
            time.sleep(poll)
            continue
        assert isinstance(claim, Claim)
        waiting = False
        res = run_claim(claim, study, storage, cfg, spec, data, parent=parent)
        ran += 1
        if res is not None:
            n = spec.stage_trials(claim.stage)
            shown = ", ".join(f"{p.name}={p.format(claim.values[p.name])}" for p in claim.params)
            outcome = "diverged" if res.get("diverged") else f"val {100 * res['value']:.2f} %"
            say(
                f"{tag}{claim.stage} {claim.slot + 1}/{n} (trial {claim.trial.number}) "
                f"{shown}: {outcome} in {res['wall_seconds']:.1f} s"
            )
    return ran


# ---------------------------------------------------------------------- processes


def spawn_workers(plan: Plan, workers: int, *, cores: int | None = None) -> None:
    """Run ``workers`` worker processes to the end; :class:`MlplabError` if any failed."""
    threads = threads_per_worker(workers, cores)
    env = dict(os.environ)
    env.update({v: str(threads) for v in _BLAS_VARS})
    env["MLPLAB_SEARCH_THREADS"] = str(threads)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    text = plan.to_json()
    procs: list[subprocess.Popen] = []
    try:
        for i in range(workers):
            cmd = [sys.executable, "-m", "mlplab.search.worker", "--label", f"w{i + 1}"]
            cmd += ["--parent", str(os.getpid())]
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE)
            procs.append(proc)
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # a worker that died says so by its code
                proc.stdin.write(text.encode())
                proc.stdin.close()
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    bad = [(i + 1, c) for i, c in enumerate(codes) if c != 0]
    if bad:
        which = ", ".join(f"w{i} (exit status {c})" for i, c in bad)
        raise MlplabError(f"search worker(s) {which} failed (see above); run again to continue")


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the launching process dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process: reads the plan (JSON) from stdin."""
    _die_with_parent()
    ap = argparse.ArgumentParser(prog="python -m mlplab.search.worker")
    ap.add_argument("--label", default="")
    ap.add_argument("--parent", type=int, default=None)
    args = ap.parse_args(argv)
    check_parent(args.parent)
    signal.signal(signal.SIGTERM, _sigterm)
    plan = Plan.from_json(sys.stdin.read())
    threads = int(os.environ.get("MLPLAB_SEARCH_THREADS", "0") or 0)
    limiter = contextlib.nullcontext()
    if threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    try:
        with limiter:
            run_worker(plan, label=args.label, parent=args.parent)
    except MlplabError as e:
        print(f"error: [{args.label}] {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
