"""`mlplab search --sampler tpe --pruner median|halving`: TPE draws within each stage's ranges,
reproducible with one worker; a pruned trial stops after the cycle it fell behind at and is
recorded PRUNED (never the best); the course's settings (random draws, no pruning) are kept.

Trainings are tiny (300 training images, 8 hidden units, cycles of 20 updates) on a
synthetic CIFAR-shaped set, as in tests/test_search.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

if os.environ.get("CI") != "true":  # in CI a missing optuna is a failure, not a skip
    pytest.importorskip("optuna")
import optuna

from mlplab.cli import cli
from mlplab.errors import ConfigError, MlplabError
from mlplab.search.space import (
    Param,
    SearchSpec,
    build_spec,
    draw,
    load_spec,
    parse_pruner,
    parse_sampler,
)
from mlplab.search.storage import best_trial, default_storage, open_storage, open_study

TINY = {"split": "300/100", "hidden": "8", "n_s_k": "0", "n_s": "10"}  # a cycle: 20 updates
TS = optuna.trial.TrialState


def _trials(url: str, study: str) -> list[Any]:
    st = open_storage(url)
    try:
        return optuna.load_study(study_name=study, storage=st).get_trials(deepcopy=True)
    finally:
        st.engine.dispose()


def _search(out: Path, spec: SearchSpec, raw: Any, **kw: Any) -> Any:
    from mlplab.search import run_search

    return run_search(
        "assignment2/search",
        spec=spec,
        sets=dict(TINY),
        out=out,
        raw=raw,
        quiet=True,
        echo=lambda s: None,
        **kw,
    )


@pytest.fixture(scope="module")
def raw() -> Any:
    from helpers import synthetic_raw

    return synthetic_raw(n_train=500, n_test=100)


@pytest.fixture(scope="module")
def noisy() -> Any:
    """Harder data: scores spread between values of lambda, so that TPE has a slope."""
    from helpers import synthetic_raw

    return synthetic_raw(n_train=500, n_test=100, noise=200.0)


# ------------------------------------------------------------------ options and settings


def test_sampler_and_pruner_texts() -> None:
    assert [parse_sampler(t) for t in ("random", "tpe", "tpe:3")] == ["random", "tpe:10", "tpe:3"]
    got = [parse_pruner(t) for t in ("none", "median", "median:2", "halving", "halving:2:4")]
    assert got == ["none", "median:5:0", "median:2:0", "halving:1:3", "halving:2:4"]
    for bad in ("nosuch", "random:3", "tpe:-1", "tpe:x", "tpe:1:2", "TPE"):
        with pytest.raises(ConfigError, match=r"^sampler must be random .* or tpe\[:N\]"):
            parse_sampler(bad)
    for bad in ("x", "none:1", "median:-1", "median:1:2:3", "halving:0", "halving:1:1"):
        with pytest.raises(ConfigError, match=r"^pruner must be none .*halving\[:MIN\[:FACTOR\]\]"):
            parse_pruner(bad)
    data = {"params": {"lam": {"scale": "log", "low": 1e-5, "high": 1e-1}}}
    spec = build_spec({**data, "sampler": "tpe", "pruner": "halving"})
    assert (spec.sampler, spec.pruner) == ("tpe:10", "halving:1:3")
    assert build_spec({**data, "sampler": "tpe"}, sampler="random").sampler == "random"
    assert spec.to_dict()["sampler"] == "tpe:10" and spec.to_dict()["pruner"] == "halving:1:3"
    # the course's search: its settings (a study's, a reproduction's key) are those of before
    course = load_spec("assignment2/search")
    assert (course.sampler, course.pruner) == ("random", "none")
    assert not {"sampler", "pruner"} & set(course.to_dict())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "nosuch"], "error: sampler must be random"),
        (["--pruner", "median:-1"], "error: pruner must be none"),
        (["--pruner", "halving:1:1"], "error: pruner must be none"),
        (["--space", "SPACE"], "error: sampler must be random"),
    ],
)
def test_bad_sampler_or_pruner_is_one_error_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    space = tmp_path / "space.toml"
    space.write_text('sampler = "bayes"\n[params.lam]\nscale = "log"\nlow = 1e-5\nhigh = 1e-1\n')
    args = [str(space) if a == "SPACE" else a for a in args]
    r = CliRunner().invoke(cli, ["search", "--out", str(tmp_path / "o"), *args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert not (tmp_path / "o").exists()


def test_a_study_keeps_its_sampler_and_pruner(tmp_path: Path) -> None:
    """A study started before samplers existed (no sampler stored) continues with the
    defaults; other samplers or pruners are refused, as any other setting."""
    url = default_storage(tmp_path)
    st = open_storage(url)
    old = {"recipe": {"lam": 0.1}, "space": {"seed": 0}}
    assert open_study("s", st, url, old, "never")[1] == ""
    same = {"recipe": {"lam": 0.1}, "space": {"seed": 0, "sampler": "random", "pruner": "none"}}
    assert open_study("s", st, url, same, "never")[1] == ""
    tpe: dict[str, Any] = {"recipe": {"lam": 0.1}, "space": {"seed": 0, "sampler": "tpe:10"}}
    with pytest.raises(MlplabError, match=r"\(space.sampler: 'random' then, 'tpe:10' now\)"):
        open_study("s", st, url, tpe, "never")
    assert (
        open_study("s", st, url, tpe, "changed")[1] == "space.sampler: 'random' then, 'tpe:10' now"
    )
    median = {**tpe, "space": {**tpe["space"], "pruner": "median:5:0"}}
    with pytest.raises(MlplabError, match=r"space.pruner: 'none' then, 'median:5:0' now"):
        open_study("s", st, url, median, "never")
    st.engine.dispose()


# ----------------------------------------------------------------------------- pruning


def test_pruned_trial_stops_after_its_first_cycle(
    tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Median pruning after each cycle: slot 0 (a good lambda) completes its 2 cycles (40
    updates); slot 1 (lambda = 3, which shrinks the weights to nothing) is behind after cycle
    1 and stops there: PRUNED, 20 updates, its cycle-1 accuracy as value; never the best."""
    import mlplab.search.runner as runner

    lams = {0: 1e-4, 1: 3.0, 2: 1e-3}
    real_draw = runner.draw

    def chosen(params: Any, seed: int, stage: str, slot: int) -> dict[str, Any]:
        return {"lam": lams[slot]} if stage == "coarse" else real_draw(params, seed, stage, slot)

    monkeypatch.setattr(runner, "draw", chosen)
    spec = SearchSpec(
        (Param.make("lam", "log", 1e-5, 10),), trials=3, fine_trials=0, pruner="median:1:0"
    )
    res = _search(tmp_path / "o", spec, raw)
    trials = {t.user_attrs["slot"]: t for t in _trials(res.storage, res.study)}
    good, bad = trials[0], trials[1]
    assert good.state == TS.COMPLETE and good.user_attrs["updates"] == 40
    assert sorted(good.intermediate_values) == [1, 2]  # one report per cycle
    assert good.intermediate_values[2] == good.value  # the last report is the final score
    assert bad.state == TS.PRUNED and bad.user_attrs["updates"] == 20
    assert list(bad.intermediate_values) == [1] and bad.value == bad.intermediate_values[1]
    assert bad.value < good.intermediate_values[1]
    stopped = bad.user_attrs["pruned"]
    assert (stopped["cycle"], stopped["run"], stopped["updates"], stopped["step"]) == (1, 0, 20, 1)
    assert "val_accuracies" not in bad.user_attrs and trials[2].state == TS.COMPLETE
    # the reports only read the training: a complete trial scores as without pruning
    plain = _search(tmp_path / "plain", replace(spec, pruner="none"), raw)
    unpruned = {t.user_attrs["slot"]: t for t in _trials(plain.storage, plain.study)}
    assert [unpruned[k].value for k in (0, 2)] == [good.value, trials[2].value]
    assert not unpruned[0].intermediate_values and unpruned[1].state == TS.COMPLETE
    assert best_trial(optuna.load_study(study_name=res.study, storage=res.storage)).number in {
        good.number,
        trials[2].number,
    }
    # the report: the pruned trial last, without a rank, its state and updates shown
    s = res.summary
    assert s["counts"]["coarse"]["complete"] == 2 and s["counts"]["coarse"]["pruned"] == 1
    assert [r["slot"] for r in s["pruned"]["coarse"]] == [1]
    assert all(r["slot"] != 1 for r in s["top"]["coarse"] + s["all"]["coarse"])
    rows = list(csv.DictReader(io.StringIO((res.out / "search.csv").read_text())))
    assert [(r["rank"], r["state"], r["updates"]) for r in rows][-1] == (
        "",
        "pruned at cycle 1",
        "20",
    )
    assert [r["state"] for r in rows[:2]] == ["complete", "complete"]
    md = (res.out / "search.md").read_text()
    assert "| state | updates |" in md and "| pruned at cycle 1 | 20 |" in md
    assert "pruner median:1:0" in md and "pruned: coarse 1, fine 0" in md
    # a report of `mlplab reproduce` names the sampler and pruner and lists the pruned trial
    from mlplab.report.document import Table, Text
    from mlplab.reproduce.studies import search_blocks

    blocks = search_blocks("s", "assignment2/search", s)
    assert (
        "sampler `random`, pruner `median:1:0`"
        in next(b for b in blocks if isinstance(b, Text)).text
    )
    (stopped,) = [b for b in blocks if isinstance(b, Table) and "pruner" in b.caption]
    assert stopped.rows == [
        (
            f"{bad.params['lam']:.4g}",
            "pruned at cycle 1",
            f"{100 * bad.value:.2f} %",
            "20",
            stopped.rows[0][-1],
        )
    ]


def test_pruning_compares_run_by_run_and_halving(
    tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trainings per trial: run r reports at steps 2r+1, 2r+2 (two cycles each); a
    trial pruned by successive halving (rungs at reports 1, 2, 4, ...) in its first run has
    trained that run's first cycle only."""
    import mlplab.search.runner as runner

    lams = {0: 1e-4, 1: 3.0}
    monkeypatch.setattr(runner, "draw", lambda p, seed, stage, slot: {"lam": lams[slot]})
    spec = SearchSpec(
        (Param.make("lam", "log", 1e-5, 10),),
        trials=2,
        fine_trials=0,
        repeats=2,
        fine_repeats=2,
        pruner="halving:1:2",
    )
    res = _search(tmp_path / "o", spec, raw)
    trials = {t.user_attrs["slot"]: t for t in _trials(res.storage, res.study)}
    assert trials[0].state == TS.COMPLETE and sorted(trials[0].intermediate_values) == [1, 2, 3, 4]
    assert trials[0].user_attrs["updates"] == 80  # 2 runs of 2 cycles of 20 updates
    assert trials[0].intermediate_values[4] == trials[0].user_attrs["val_accuracies"][1]
    assert trials[1].state == TS.PRUNED and trials[1].user_attrs["updates"] == 20
    assert trials[1].user_attrs["pruned"]["seed"] == 0


# --------------------------------------------------------------------------------- TPE


def _table(out: Path) -> list[tuple[str, ...]]:
    rows = csv.DictReader(io.StringIO((out / "search.csv").read_text()))
    return sorted(
        (r["stage"], r["slot"], r["lam"], r["val_accuracy"], r.get("state", "")) for r in rows
    )


def test_tpe_with_pruning_is_reproducible_with_one_worker(tmp_path: Path, noisy: Any) -> None:
    """The same TPE search twice (one worker): the same values and scores, slot by slot;
    they are the sampler's (not the course's slot draws) and lie within each stage's range."""
    spec = SearchSpec(
        (Param.make("lam", "log", 1e-5, 10),),
        trials=6,
        fine_trials=2,
        sampler="tpe:3",
        pruner="median:2:0",
        seed=7,
    )
    first = _search(tmp_path / "a", spec, noisy)
    again = _search(tmp_path / "b", spec, noisy)
    assert _table(first.out) == _table(again.out) and len(_table(first.out)) == 8
    trials = _trials(first.storage, first.study)
    fine = [t for t in trials if t.user_attrs["stage"] == "fine"]
    narrow = Param.make(**fine[0].user_attrs["space"][0])
    assert (narrow.low, narrow.high) != (1e-5, 10)
    for t in trials:
        stage, slot = t.user_attrs["stage"], t.user_attrs["slot"]
        assert t.params["lam"] != draw(spec.params, 7, stage, slot)["lam"]
        assert float(t.user_attrs["overrides"]["lam"]) == t.params["lam"]
        if stage == "fine":
            assert narrow.low <= t.params["lam"] <= narrow.high
    summary = json.loads((first.out / "search.json").read_text())
    assert (summary["sampler"], summary["pruner"]) == ("tpe:3", "median:2:0")
    # another seed draws other values
    spec8 = SearchSpec(spec.params, trials=4, fine_trials=0, seed=8, sampler="tpe:3")
    other = _search(tmp_path / "c", spec8, noisy)
    assert [r[2] for r in _table(other.out)] != [r[2] for r in _table(first.out)[:4]]


SPACE_FILE = """
final = "assignment2/final"
trials = 4
seed = 3
sampler = "tpe:2"
pruner = "median:1"

[params.lam]
scale = "log"
low = 1e-5
high = 10

[fine]
trials = 2
"""


def test_tpe_and_pruning_from_a_space_file_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search spec asking for TPE and median pruning, run by `mlplab search`; the study
    keeps them: the same command continues it, another pruner is refused in one line."""
    from test_search import write_cifar_bin

    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    data = write_cifar_bin(tmp_path / "cifar")
    (tmp_path / "s.space").write_text(SPACE_FILE)
    out = tmp_path / "o"
    cmd = ["search", "--space", str(tmp_path / "s.space"), "--data", str(data), "-q"]
    cmd += ["--out", str(out), *(x for k, v in TINY.items() for x in ("--set", f"{k}={v}"))]
    r = CliRunner().invoke(cli, cmd)
    assert r.exit_code == 0, r.output
    assert "sampler tpe:2, pruner median:1:0" in r.output
    assert "train with the best: mlplab train --recipe assignment2/final" in r.output
    trials = _trials(default_storage(out), "assignment2-search")
    assert {t.user_attrs["stage"] for t in trials} == {"coarse", "fine"}
    done = [t for t in trials if t.state in (TS.COMPLETE, TS.PRUNED)]
    assert len(done) == 6 and all(t.intermediate_values for t in done)
    for t in done:  # pruned after the first of its 2 cycles, or trained to the end
        pruned = t.state == TS.PRUNED
        assert t.user_attrs["updates"] == (20 if pruned else 40)
    summary = json.loads((out / "search.json").read_text())
    assert (summary["sampler"], summary["pruner"]) == ("tpe:2", "median:1:0")
    again = CliRunner().invoke(cli, [*cmd, "--sampler", "tpe:2"])
    assert again.exit_code == 0, again.output  # the same settings: nothing left to run
    assert len(_trials(default_storage(out), "assignment2-search")) == len(trials)
    other = CliRunner().invoke(cli, [*cmd, "--pruner", "none"])
    assert other.exit_code == 2
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "space.pruner: 'median:1:0' then, 'none' now" in lines[0]


class _Trial:
    """Stands for an Optuna trial: records the reports, prunes from report ``at`` on."""

    def __init__(self, at: int | None = None) -> None:
        self.reports: list[tuple[int, float]] = []
        self.at = at

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.at is not None and self.reports[-1][0] >= self.at


@pytest.mark.parametrize(
    ("sets", "reports"),
    [
        ({**TINY, "record_per_cycle": "3"}, [1, 2]),  # no history point at a cycle's end
        ({"schedule": "constant", "eta": "0.01", "epochs": "3"}, [1, 2, 3]),  # each epoch
    ],
)
def test_reports_after_each_cycle_or_epoch_leave_the_training_as_it_is(
    tmp_path: Path, raw: Any, sets: dict[str, str], reports: list[int]
) -> None:
    from mlplab.config import load_recipe
    from mlplab.search.runner import stage_configs
    from mlplab.search.strategies import reporter
    from mlplab.train.prepared import prepare_splits
    from mlplab.train.repeats import train_seeds

    recipe = "assignment2/search"
    if sets.get("schedule") == "constant":  # a recipe of its own: no cyclic options
        recipe = str(tmp_path / "epochs.toml")
        Path(recipe).write_text('split = "300/100"\nhidden = [8]\n')
    cfg = load_recipe(recipe, sets)
    spec = SearchSpec((Param.make("lam", "log", 1e-5, 1e-1),), trials=1, fine_trials=0)
    root = tmp_path / "splits"
    prepare_splits(raw, stage_configs(cfg, spec), root)
    plain, value = train_seeds(cfg, root)
    seen = _Trial()
    watched, same = train_seeds(cfg, root, on_step=reporter(seen, 1))
    assert same == value and watched["updates"] == plain["updates"]
    assert [s for s, _ in seen.reports] == reports and seen.reports[-1][1] == value
    stop = _Trial(at=1)
    cut, zero = train_seeds(cfg, root, 2, on_step=reporter(stop, 2))
    assert zero == 0.0 and cut["stopped"]["step"] == 1 and cut["stopped"]["seed"] == cfg.seed
    assert cut["updates"] == plain["updates"] // reports[-1] and "val_accuracies" in cut
