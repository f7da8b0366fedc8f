"""`mlplab search`: fine-interval rules, kill -9 and resume, parallel workers, PostgreSQL,
`train --from-study`, unreachable storage.

Trainings are tiny (300 training images, one hidden layer of 8-32 units) on a synthetic
CIFAR-shaped data set written in the official binary format, so worker processes can
load it like the real thing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

if os.environ.get("CI") != "true":  # in CI a missing optuna is a failure, not a skip
    pytest.importorskip("optuna")
import optuna

from mlplab.cli import cli
from mlplab.errors import ConfigError, MlplabError
from mlplab.search.space import (
    FineRule,
    Param,
    SearchSpec,
    build_spec,
    draw,
    fine_params,
)
from mlplab.search.study import (
    best_overrides,
    create_or_check_study,
    default_storage,
    engine_url,
    fail_stale_trials,
    host_key,
    open_storage,
    process_start,
)

TINY = ["--set", "split=300/100", "--set", "hidden=8", "--set", "n_s_k=0", "--set", "n_s=10"]
SPACE = ["--param", "lam=log:1e-4:1"]
TIMEOUT = 120


# ---------------------------------------------------------------------------- fixtures


def write_cifar_bin(root: Path, n_per_batch: int = 100, n_test: int = 100, seed: int = 0) -> Path:
    """A learnable CIFAR-10-shaped set in the official binary layout (class means + noise)."""
    rng = np.random.default_rng(seed)
    k = 10
    means = rng.uniform(60, 190, (k, 3072))
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True, exist_ok=True)

    def batch(n: int, path: Path) -> None:
        y = rng.integers(0, k, n)
        x = np.clip(means[y] + rng.normal(0, 200.0, (n, 3072)), 0, 255).astype(np.uint8)
        np.concatenate([y.astype(np.uint8)[:, None], x], axis=1).tofile(path)

    for i in range(1, 6):
        batch(n_per_batch, d / f"data_batch_{i}.bin")
    batch(n_test, d / "test_batch.bin")
    (d / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(k)) + "\n")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_bin(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    e = dict(os.environ)
    e["MLPLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    for k in ("MLPLAB_KILL_AT", "MLPLAB_DATA"):
        e.pop(k, None)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        e[k] = "1"  # tiny matrices: one thread is fastest, and the CI box has 2 cores
    src = str(Path(__file__).resolve().parents[1] / "src")
    e["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [e.get("PYTHONPATH")])])
    return e


def search_cmd(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mlplab.cli", "search", "--data", str(data), "-q", *args]


def run(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def trials_of(url: str, study: str) -> list[Any]:
    st = open_storage(url)  # takes the schema lock: never races a process creating tables
    try:
        return optuna.load_study(study_name=study, storage=st).get_trials(deepcopy=True)
    finally:
        st.engine.dispose()


def check_exactly_once(trials: list[Any], budget: dict[str, int]) -> None:
    """Per stage: exactly `budget` COMPLETE trials, one per slot, no parameter set twice."""
    TS = optuna.trial.TrialState
    assert not [t.number for t in trials if t.state in (TS.RUNNING, TS.WAITING)]
    for stage, n in budget.items():
        done = [t for t in trials if t.state == TS.COMPLETE and t.user_attrs["stage"] == stage]
        assert sorted(t.user_attrs["slot"] for t in done) == list(range(n)), stage
    done = [t for t in trials if t.state == TS.COMPLETE]
    keys = [tuple(sorted(t.params.items())) for t in done]
    assert len(keys) == len(set(keys)), "a parameter set was completed twice"
    assert len(done) == sum(budget.values())


# ------------------------------------------------------------------ 4. fine-interval rules

LAM = Param.make("lam", "log", 1e-5, 1e-1)
TABLE = [(1e-5, 0.30), (1e-4, 0.45), (1e-3, 0.50), (1e-2, 0.48), (1e-1, 0.20)]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("top-k", (1e-4, 1e-2)),  # default k = 3: 1e-3, 1e-2, 1e-4
        ("top-k:2", (1e-3, 1e-2)),
        ("top-k:3:0.25", (10**-4.5, 10**-1.5)),  # widened by a quarter of 2 decades each side
        ("top-k:3:2", (1e-5, 1e-1)),  # widened beyond the coarse interval: clipped
        ("top-k:1", (0.8e-3, 1.2e-3)),  # a single point: around-best (±20 %) instead
        ("around-best", (0.8e-3, 1.2e-3)),
        ("around-best:0.5", (0.5e-3, 1.5e-3)),
    ],
)
def test_fine_rules_on_a_table(rule: str, expected: tuple[float, float]) -> None:
    lo, hi = FineRule.parse(rule).interval(LAM, TABLE)
    assert math.isclose(lo, expected[0], rel_tol=1e-9)
    assert math.isclose(hi, expected[1], rel_tol=1e-9)


def test_fine_rules_edges() -> None:
    # best on the coarse bound: clipped to it
    lo, hi = FineRule.parse("around-best").interval(LAM, [(1e-5, 0.9), (1e-2, 0.1)])
    assert (lo, hi) == (1e-5, pytest.approx(1.2e-5))
    # ties: the earlier trial counts as better
    assert FineRule.parse("top-k:1").interval(LAM, [(1e-3, 0.5), (1e-2, 0.5)]) == (
        pytest.approx(0.8e-3),
        pytest.approx(1.2e-3),
    )
    # linear scale: the span in linear space
    eta = Param.make("eta_max", "linear", 0.01, 0.2)
    table = [(0.02, 0.4), (0.05, 0.5), (0.15, 0.45), (0.19, 0.1)]
    assert FineRule.parse("top-k:2").interval(eta, table) == (0.05, 0.15)
    assert FineRule.parse("top-k:2:0.1").interval(eta, table) == (
        pytest.approx(0.04),
        pytest.approx(0.16),
    )
    # integer field (one width for all hidden layers): rounded inwards, never empty
    hid = Param.make("hidden", "linear", 10, 100)
    assert hid.integer
    assert FineRule.parse("around-best").interval(hid, [(50, 0.5), (20, 0.4)]) == (40, 60)
    assert FineRule.parse("around-best:0.1").interval(hid, [(7, 0.5)]) == (7, 7)
    # linear best of 0: ± fraction of the coarse width
    drop = Param.make("drop_prob", "linear", 0.0, 0.5)
    assert FineRule.parse("around-best").interval(drop, [(0.0, 0.5)]) == (0.0, pytest.approx(0.1))


def test_fine_params_of_a_spec_and_rule_errors() -> None:
    spec = SearchSpec(params=(LAM,), trials=5, fine_trials=5, fine_rule=FineRule("top-k", k=2))
    (p,) = fine_params(spec, [({"lam": v}, s) for v, s in TABLE])
    assert (p.name, p.log) == ("lam", True)
    assert (p.low, p.high) == (pytest.approx(1e-3), pytest.approx(1e-2))
    for bad in ("best", "top-k:0", "top-k:x", "around-best:1.5", "around-best:0.1:2"):
        with pytest.raises(ConfigError):
            FineRule.parse(bad)
    with pytest.raises(ConfigError, match="not exponents"):
        Param.parse("lam=log:-5:-1")
    for bad in ("lam", "lam=log:1e-5", "nope=log:1:2", "batch_norm=linear:0:1", "lam=cubic:1:2"):
        with pytest.raises(ConfigError):
            Param.parse(bad)


def test_slot_draws_are_deterministic_and_log_uniform() -> None:
    params = (LAM, Param.make("hidden", "linear", 20, 30))
    a = [draw(params, 0, "coarse", k) for k in range(2000)]
    assert a[:50] == [draw(params, 0, "coarse", k) for k in range(50)]
    assert a[0] != draw(params, 0, "fine", 0) != draw(params, 1, "coarse", 0)
    logs = np.log10([d["lam"] for d in a])
    assert logs.min() >= -5 and logs.max() <= -1
    assert abs(logs.mean() + 3) < 0.1 and abs(np.mean(logs < -4) - 0.25) < 0.04
    assert {d["hidden"] for d in a} == set(range(20, 31))


def test_space_file_and_options() -> None:
    data = {
        "trials": 7,
        "params": {"lam": {"scale": "log", "low": 1e-5, "high": 1e-1}},
        "fine": {"rule": "around-best", "fraction": 0.3, "set": {"cycles": 3}},
    }
    spec = build_spec(data)
    assert (spec.trials, spec.fine_trials, spec.fine_rule.kind) == (7, 7, "around-best")
    assert spec.fine_set == {"cycles": "3"}
    spec = build_spec(data, trials=4, params=["eta_max=log:0.01:0.2"], fine_rule="top-k:2")
    assert [p.name for p in spec.params] == ["eta_max"]
    assert (spec.trials, spec.fine_trials, spec.fine_rule.k) == (4, 4, 2)
    assert SearchSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="searched fields"):
        build_spec(data, fine_set={"lam": "0.1"})
    # trainings per trial: top level for both stages, [fine] for the fine one, options win
    assert (spec.repeats, spec.fine_repeats, spec.fine_differs) == (1, 1, True)
    data = {**data, "repeats": 2, "fine": {"repeats": 4}}
    spec = build_spec(data)
    assert (spec.repeats, spec.fine_repeats, spec.fine_differs) == (2, 4, True)
    assert (spec.stage_repeats("coarse"), spec.stage_repeats("fine")) == (2, 4)
    assert SearchSpec.from_dict(spec.to_dict()) == spec
    assert (build_spec(data, repeats=3).repeats, build_spec(data, repeats=3).fine_repeats) == (3, 3)
    assert build_spec(data, fine_repeats=1).fine_repeats == 1
    assert not build_spec({"params": data["params"], "repeats": 2}).fine_differs
    for bad in ({"repeats": 0}, {"repeats": "3"}, {"fine": {"repeats": 1.5}}, {"repeats": True}):
        with pytest.raises(ConfigError, match="repeats"):
            build_spec({"params": data["params"], **bad})


def test_import_of_the_cli_does_not_load_optuna() -> None:
    code = "import sys, mlplab.cli; assert 'optuna' not in sys.modules, 'optuna imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------- 1. kill -9 and resume


def _kill_when(cmd: list[str], env: dict[str, str], db: Path, url: str, study: str) -> list[Any]:
    """Start `cmd`, SIGKILL it once the study has >= 2 COMPLETE trials and one RUNNING; the
    trials as the dead process left them (retried if the trial finished before the kill)."""
    TS = optuna.trial.TrialState
    for _attempt in range(3):
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + TIMEOUT
        st = s = None
        try:
            while time.monotonic() < deadline:
                assert p.poll() is None, p.communicate()
                if s is None and db.exists():
                    st = st or open_storage(url)
                    with contextlib.suppress(KeyError):
                        s = optuna.load_study(study_name=study, storage=st)
                if s is not None:
                    states = [t.state for t in s.get_trials(deepcopy=False)]
                    if states.count(TS.COMPLETE) >= 2 and TS.RUNNING in states:
                        break
                time.sleep(0.02)
            else:
                pytest.fail("the search never showed 2 COMPLETE and 1 RUNNING trials")
        finally:
            p.send_signal(signal.SIGKILL)
            p.communicate()
            if st is not None:
                st.engine.dispose()
        left = trials_of(url, study)
        if any(t.state == TS.RUNNING for t in left):
            return left
    pytest.fail("could not kill the search during a trial")


def test_resume_after_kill_9(data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    TS = optuna.trial.TrialState
    out = tmp_path / "run"
    url = default_storage(out)
    slower = ["--set", "hidden=64", "--set", "n_s=200"]  # about a second per trial
    cmd = search_cmd(
        data_dir,
        *TINY,
        *slower,
        *SPACE,
        *"--trials 3 --fine-trials 2 --out".split(),
        str(out),
        *"--study kill".split(),
    )
    before = _kill_when(cmd, env, out / "study.db", url, "kill")
    running = [t for t in before if t.state == TS.RUNNING]
    assert len(running) == 1
    killed = running[0]
    complete = {t.number: (t.params, t.value) for t in before if t.state == TS.COMPLETE}

    res = run(cmd, env)
    assert res.returncode == 0, res.stderr
    after = trials_of(url, "kill")
    by_number = {t.number: t for t in after}
    # finished trials are kept as they were, and not run again
    for n, (params, value) in complete.items():
        assert by_number[n].state == TS.COMPLETE
        assert (by_number[n].params, by_number[n].value) == (params, value)
    # the killed trial is FAIL, and its slot was re-run with the same parameters
    assert by_number[killed.number].state == TS.FAIL
    stage, slot = killed.user_attrs["stage"], killed.user_attrs["slot"]
    retry = [
        t
        for t in after
        if t.state == TS.COMPLETE and (t.user_attrs["stage"], t.user_attrs["slot"]) == (stage, slot)
    ]
    assert len(retry) == 1 and retry[0].user_attrs["retry_of"] == [killed.number]
    # the same parameters: those of the slot (the killed trial holds them too, unless it was
    # killed in the instant between turning RUNNING and recording them)
    params = SearchSpec(params=(Param.make("lam", "log", 1e-4, 1),)).params
    assert retry[0].params == draw(params, 0, stage, slot)
    assert killed.params in ({}, retry[0].params)
    check_exactly_once(after, {"coarse": 3, "fine": 2})
    for name in ("search.md", "search.csv", "search.png", "search.json"):
        assert (out / name).is_file()
    # a third run has nothing left to do
    res = run(cmd, env)
    assert res.returncode == 0, res.stderr
    assert len(trials_of(url, "kill")) == len(after)


def test_killing_the_launcher_stops_its_workers(
    data_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    TS = optuna.trial.TrialState
    out = tmp_path / "run"
    url = default_storage(out)
    slower = ["--set", "hidden=64", "--set", "n_s=200"]
    cmd = search_cmd(
        data_dir,
        *TINY,
        *slower,
        *SPACE,
        *"--trials 3 --fine-trials 1 --workers 2 --out".split(),
        str(out),
        *"--study k2".split(),
    )
    before = _kill_when(cmd, env, out / "study.db", url, "k2")
    pids = [t.user_attrs["owner"]["pid"] for t in before if t.state == TS.RUNNING]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)
    assert not any(Path(f"/proc/{p}").exists() for p in pids), "orphaned worker still running"
    res = run(cmd, env)
    assert res.returncode == 0, res.stderr
    check_exactly_once(trials_of(url, "k2"), {"coarse": 3, "fine": 1})


# --------------------------------------------------------------- 2. parallel on SQLite


def test_two_workers_on_sqlite(data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "par"
    cmd = search_cmd(
        data_dir, *TINY, *SPACE, *"--trials 4 --fine-trials 2 --workers 2 --out".split(), str(out)
    )
    res = run(cmd, env)
    assert res.returncode == 0, res.stderr
    trials = trials_of(default_storage(out), "assignment2-search")
    check_exactly_once(trials, {"coarse": 4, "fine": 2})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert {t.user_attrs["owner"]["threads"] for t in trials} == {str(max(1, cores // 2))}
    summary = json.loads((out / "search.json").read_text())
    assert summary["counts"]["coarse"]["complete"] == 4
    lines = (out / "search.csv").read_text().splitlines()
    assert lines[0].startswith("rank,stage,trial,slot,lam,val_accuracy,runs,val_sd,seconds")
    accs = [float(r.split(",")[5]) for r in lines[1:]]
    assert len(accs) == 6 and accs == sorted(accs, reverse=True)
    assert "| rank | stage | trial | lam |" in (out / "search.md").read_text()


# --------------------------------------------------------- 3. PostgreSQL, two "machines"


def test_postgres_two_machines(data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    url = os.environ.get("MLPLAB_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("MLPLAB_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL test")
        pytest.skip("MLPLAB_TEST_POSTGRES_URL not set (bash .ci/start-postgres.sh gives one)")
    study = f"pg-{uuid.uuid4().hex[:10]}"
    base = search_cmd(
        data_dir,
        *TINY,
        *SPACE,
        *"--trials 5 --fine-trials 3 --storage".split(),
        url,
        "--study",
        study,
        *"--heartbeat 1 --grace 5".split(),
    )
    procs = [
        subprocess.Popen(
            [*base, "--out", str(tmp_path / f"m{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        trials = trials_of(url, study)
        check_exactly_once(trials, {"coarse": 5, "fine": 3})
        assert not [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
        for i in range(2):
            assert json.loads((tmp_path / f"m{i}" / "search.json").read_text())["best"]
        assert "lam" in best_overrides(study, url)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        with contextlib.suppress(KeyError):  # the study may never have been created
            optuna.delete_study(study_name=study, storage=engine_url(url))


# ------------------------------------------------- 5. best_overrides, train --from-study


def test_best_overrides_and_train_from_study(
    data_dir: Path, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the search writes runs/<study>/study.db under the working directory (the default)
    res = run(
        search_cmd(data_dir, *TINY, *SPACE, "--trials", "3", "--fine-trials", "2"),
        env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "train with the best: mlplab train --recipe assignment2/final" in res.stdout
    url = f"sqlite:///{tmp_path}/runs/assignment2-search/study.db"
    trials = trials_of(url, "assignment2-search")
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # the shipped space trains fine trials differently (3 cycles, 3 seeds): best among them
    fine = [t for t in done if t.user_attrs["stage"] == "fine"]
    assert [len(t.user_attrs["val_accuracies"]) for t in fine] == [3, 3]
    best = max(fine, key=lambda t: (t.value, -t.number))
    assert best_overrides("assignment2-search", url) == {"lam": repr(best.params["lam"])}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPLAB_CACHE", env["MLPLAB_CACHE"])
    assert best_overrides("assignment2-search") == {"lam": repr(best.params["lam"])}
    with pytest.raises(MlplabError, match=r"runs/nope/study\.db"):
        best_overrides("nope")
    assert not (tmp_path / "runs" / "nope").exists()
    with pytest.raises(MlplabError, match=r"no study 'other'.*assignment2-search"):
        best_overrides("other", url)

    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--recipe",
            "assignment2/final",
            "--from-study",
            "assignment2-search",
            *TINY,
            "--data",
            str(data_dir),
            "--out",
            str(tmp_path / "final"),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "best of study assignment2-search: lam=" in r.output
    results = json.loads((tmp_path / "final" / "results.json").read_text())
    assert results["config"]["lam"] == best.params["lam"]
    assert results["config"]["cycles"] == 3 and results["config"]["split"] == "300/100"


def test_repeats_train_consecutive_seeds_and_average(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial of R trainings = R runs of `mlplab train` with seeds s..s+R-1, score their mean;
    the R splits are kept for the next trial; a diverged run makes the trial score 0."""
    from helpers import synthetic_raw

    import mlplab.data
    from mlplab.config import load_recipe, parse_set_options
    from mlplab.data import make_splits
    from mlplab.search.worker import TrialData, train_trial
    from mlplab.train.run import train_on_splits

    sets = {**parse_set_options(TINY[1::2]), "seed": "5"}
    cfg = load_recipe("assignment2/search", sets)
    raw = synthetic_raw(n_train=500, n_test=100, noise=200.0)
    data = TrialData(None, raw)
    attrs, value = train_trial(cfg, {"lam": "0.01"}, data, repeats=3)
    expected = []
    for seed in (5, 6, 7):
        c = load_recipe("assignment2/search", {**sets, "seed": str(seed), "lam": "0.01"})
        rng = np.random.default_rng(seed)
        _net, _tr, m = train_on_splits(c, make_splits(raw, c.split, rng), rng, progress=False)
        expected.append(m["val_accuracy"])
    assert attrs["seeds"] == [5, 6, 7]
    assert attrs["val_accuracies"] == expected
    assert value == pytest.approx(np.mean(expected), abs=1e-12)
    assert attrs["val_sd"] == pytest.approx(np.std(expected, ddof=1), abs=1e-12)
    splits = [sp for sp, _ in data._cache.values()]
    assert len(splits) == 3 and not np.array_equal(splits[0].y_val, splits[1].y_val)

    def no_rebuild(*_a: Any, **_k: Any) -> None:
        raise AssertionError("splits rebuilt")

    monkeypatch.setattr(mlplab.data, "make_splits", no_rebuild)
    again, value2 = train_trial(cfg, {"lam": "0.01"}, data, repeats=3)
    assert (again["val_accuracies"], value2) == (expected, value)
    one, v1 = train_trial(cfg, {"lam": "0.01"}, data)  # one training: the recipe's own seed
    assert v1 == expected[0] and "seeds" not in one and "val_sd" not in one

    bad, v = train_trial(
        cfg, {"schedule": "constant", "eta": "1e6", "epochs": "2", "lam": "0"}, data, repeats=2
    )
    assert v == 0.0 and bad["diverged"].startswith("seed 5: ")


def test_best_trial_among_fine_trials_that_train_differently(tmp_path: Path) -> None:
    from mlplab.search.study import best_trial

    url = default_storage(tmp_path)
    st = open_storage(url)
    dist = {"lam": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)}

    def study_with(name: str, space: dict[str, Any]) -> Any:
        s = create_or_check_study(name, st, url, {"recipe": {}, "space": space})
        for i, (stage, lam, v) in enumerate(
            [("coarse", 1e-3, 0.60), ("fine", 2e-3, 0.55), ("fine", 3e-3, 0.57)]
        ):
            s.add_trial(
                optuna.trial.create_trial(
                    params={"lam": lam},
                    distributions=dist,
                    value=v,
                    user_attrs={"stage": stage, "slot": i},
                )
            )
        return s

    same = {"fine_set": {}, "repeats": 1, "fine_repeats": 1}
    assert best_trial(study_with("same", same)).params["lam"] == 1e-3
    assert best_trial(study_with("old", {"fine_set": {}})).params["lam"] == 1e-3
    cycles = {"fine_set": {"cycles": "3"}, "repeats": 1, "fine_repeats": 1}
    assert best_trial(study_with("cycles", cycles)).params["lam"] == 3e-3
    seeds = {"fine_set": {}, "repeats": 1, "fine_repeats": 3}
    assert best_trial(study_with("seeds", seeds)).params["lam"] == 3e-3


def test_search_with_repeats_and_restart(
    data_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    TS = optuna.trial.TrialState
    out = tmp_path / "rep"
    url = default_storage(out)
    cmd = search_cmd(data_dir, *TINY, *SPACE, *"--trials 3 --fine-trials 2 --out".split(), str(out))
    res = run([*cmd, "--fine-repeats", "2"], env)
    assert res.returncode == 0, res.stderr
    trials = trials_of(url, "assignment2-search")
    check_exactly_once(trials, {"coarse": 3, "fine": 2})
    for t in trials:
        if t.user_attrs["stage"] == "coarse":
            assert "seeds" not in t.user_attrs
        else:
            assert t.user_attrs["seeds"] == [0, 1]
            assert t.value == pytest.approx(np.mean(t.user_attrs["val_accuracies"]), abs=1e-12)
    summary = json.loads((out / "search.json").read_text())
    assert summary["best"]["stage"] == "fine" and summary["best"]["from"] == "fine stage"
    assert summary["best"]["runs"] == 2 and summary["repeats"] == {"coarse": 1, "fine": 2}
    md = (out / "search.md").read_text()
    assert "| val. accuracy (%) | runs | sd (%) | seconds |" in md and "fine trials only" in md
    assert "(mean of 2 runs)" in res.stdout

    # other settings: refused, the study untouched; --restart changed replaces it
    res = run([*cmd, "--fine-repeats", "3"], env)
    assert res.returncode == 2 and "--restart changed" in res.stderr
    assert [t.number for t in trials_of(url, "assignment2-search")] == [t.number for t in trials]
    res = run([*cmd, "--fine-repeats", "3", "--restart", "changed"], env)
    assert res.returncode == 0, res.stderr
    assert "deleted it and its trials" in res.stdout
    new = trials_of(url, "assignment2-search")
    check_exactly_once(new, {"coarse": 3, "fine": 2})
    fine = [t for t in new if t.user_attrs["stage"] == "fine" and t.state == TS.COMPLETE]
    assert [len(t.user_attrs["seeds"]) for t in fine] == [3, 3]
    res = run([*cmd, "--fine-repeats", "3", "--restart", "changed"], env)  # same: continues
    assert res.returncode == 0 and "deleted" not in res.stdout
    assert len(trials_of(url, "assignment2-search")) == len(new)
    res = run([*cmd, "--fine-repeats", "3", "--restart", "always"], env)
    assert res.returncode == 0 and "--restart always" in res.stdout
    assert {t.number for t in trials_of(url, "assignment2-search")} == set(range(5))


def test_study_settings_must_match(tmp_path: Path) -> None:
    url = default_storage(tmp_path)
    st = open_storage(url)
    create_or_check_study("s", st, url, {"recipe": {"lam": 0.1}, "space": {"seed": 0}})
    create_or_check_study("s", st, url, {"recipe": {"lam": 0.1}, "space": {"seed": 0}})
    with pytest.raises(MlplabError, match=r"other settings.*seed"):
        create_or_check_study("s", st, url, {"recipe": {"lam": 0.1}, "space": {"seed": 1}})


def test_stale_rules_spare_live_workers(tmp_path: Path) -> None:
    """Heartbeat for everyone, process liveness only for this host's own trials."""
    TS = optuna.trial.TrialState
    url = default_storage(tmp_path)
    st = open_storage(url, heartbeat=1, grace=2)
    study = create_or_check_study("s", st, url, {})

    def running(owner: dict[str, Any]) -> Any:
        study.enqueue_trial({}, user_attrs={"owner": owner})
        t = study.ask()
        st.record_heartbeat(t._trial_id)
        return t

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        me = host_key()
        remote = running({"host_key": "elsewhere|boot|1", "pid": sleeper.pid, "pid_start": ""})
        alive = running(
            {"host_key": me, "pid": sleeper.pid, "pid_start": process_start(sleeper.pid)}
        )
        gone = running({"host_key": me, "pid": dead.pid, "pid_start": "1"})
        assert fail_stale_trials(study, st) == [gone.number]  # at once, no heartbeat wait
        time.sleep(3.1)  # SQLite keeps whole seconds: > 2 s for sure
        st.record_heartbeat(alive._trial_id)  # a live worker keeps beating
        assert fail_stale_trials(study, st) == [remote.number]  # silent for > grace
        states = {t.number: t.state for t in study.get_trials()}
        assert states[alive.number] == TS.RUNNING
        assert states[remote.number] == states[gone.number] == TS.FAIL
    finally:
        sleeper.kill()
        sleeper.wait()


def test_in_process_worker_and_a_trial_declared_dead(tmp_path: Path) -> None:
    """The library API with an in-memory data set; a trial that another worker declared dead
    while it still ran keeps its FAIL state: its late result is discarded, not duplicated."""
    from helpers import synthetic_raw

    from mlplab.config import load_recipe, parse_set_options
    from mlplab.search.worker import Plan, TrialData, next_claim, run_claim, run_worker

    TS = optuna.trial.TrialState
    sets = parse_set_options(TINY[1::2])
    cfg = load_recipe("assignment2/search", sets)
    spec = SearchSpec(params=(Param.make("lam", "log", 1e-4, 1),), trials=2, fine_trials=1)
    url = default_storage(tmp_path)
    st = open_storage(url, heartbeat=10, grace=60)
    study = create_or_check_study("d", st, url, {})
    raw = synthetic_raw(n_train=500, n_test=100)
    claim = next_claim(study, st, spec, cfg)
    assert (claim.stage, claim.slot) == ("coarse", 0)
    st.set_trial_state_values(claim.trial_id, state=TS.FAIL)  # "stale", as seen elsewhere
    assert run_claim(claim, study, st, cfg, spec, TrialData(None, raw)) is None
    assert study.get_trials()[0].state == TS.FAIL

    plan = Plan("assignment2/search", sets, spec.to_dict(), "d", url, quiet=True)
    assert run_worker(plan, raw=raw) == 3
    check_exactly_once(trials_of(url, "d"), {"coarse": 2, "fine": 1})
    assert [t.user_attrs.get("retry_of") for t in trials_of(url, "d")][1] == [0]


# ------------------------------------------------------------ 6. unreachable storage


UNREACHABLE = ["--storage", "postgresql://u:secret@127.0.0.1:1/db"]


@pytest.mark.parametrize(
    "args",
    [
        ["search", *UNREACHABLE],
        ["train", "--recipe", "assignment2/final", "--from-study", "x", *UNREACHABLE],
    ],
)
def test_unreachable_storage(
    args: list[str], data_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    extra = ["--out", str(tmp_path / "o")] if args[0] == "search" else []
    cmd = [sys.executable, "-m", "mlplab.cli", *args, "--data", str(data_dir), *extra]
    res = run(cmd, env)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    expected = "error: cannot reach search storage postgresql://u:***@127.0.0.1:1/db: "
    assert lines[0].startswith(expected)
    assert "secret" not in res.stderr and "Traceback" not in res.stderr
