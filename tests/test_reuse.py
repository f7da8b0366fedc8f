"""The one cache of experiments (mlplab.train.reuse): keyed by content, done / interrupted /
other, and shared by the commands and `mlplab reproduce`."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner
from helpers import synthetic_raw

from mlplab.cli import cli
from mlplab.config import Config, load_recipe
from mlplab.train import phases as run_mod
from mlplab.train.reuse import RECORD, Cache, config_hash, content_key
from mlplab.train.run import cached_experiment
from mlplab.train.sensitivity import run_sensitivity


def _cfg(**kw) -> Config:
    base = dict(name="cached", split="400/100", hidden=[16], batch_size=20, n_s=20, cycles=1)
    return Config(**{**base, **kw}).validate()


def test_key_is_the_content():
    cfg = _cfg()
    key = content_key("train", cfg, "data")
    assert key == content_key("train", dataclasses.replace(cfg, description="other words"), "data")
    assert key != content_key("train", dataclasses.replace(cfg, lam=0.02), "data")
    assert key != content_key("train", cfg, "other data")
    assert key != content_key("lr-range", cfg, "data")
    assert content_key("lr-range", cfg, "d", epochs=2.0) != content_key("lr-range", cfg, "d")
    assert content_key("x", None, "d", a=1, b=2) == content_key("x", None, "d", b=2, a=1)


def test_done_started_and_other_records(tmp_path):
    calls: list[bool] = []

    def run(resume: bool) -> dict[str, int]:
        calls.append(resume)
        (tmp_path / "r.json").write_text(json.dumps({"n": len(calls)}))
        return {"n": len(calls)}

    cache = Cache()
    assert cache.get(tmp_path, "x", "k1", "r.json", run) == {"n": 1}
    assert cache.get(tmp_path, "x", "k1", "r.json", run) == {"n": 1}  # read back
    assert calls == [False] and cache.ran == [tmp_path] and cache.reused == [tmp_path]
    record = json.loads((tmp_path / RECORD).read_text())
    assert record["key"] == "k1" and record["result"] == "r.json" and record["done"] is True
    (tmp_path / RECORD).write_text(json.dumps({**record, "done": False}))  # interrupted
    cache.get(tmp_path, "x", "k1", "r.json", run)
    assert calls == [False, True]
    cache.get(tmp_path, "x", "k2", "r.json", run)  # another experiment was there
    Cache(force=True).get(tmp_path, "x", "k2", "r.json", run)
    assert calls == [False, True, False, False]
    (tmp_path / "r.json").write_text('{"n": 0}')  # written since by something else
    assert cache.get(tmp_path, "x", "k2", "r.json", run) == {"n": 5}
    (tmp_path / "r.json").unlink()
    assert cache.get(tmp_path, "x", "k2", "r.json", run) == {"n": 6}
    assert calls[-2:] == [False, False]


def test_training_reused_resumed_and_rerun(tmp_path, monkeypatch):
    cfg, raw, cache = _cfg(), synthetic_raw(), Cache()
    first = cached_experiment(cfg, tmp_path / "c", raw=raw, cache=cache, progress=False)
    assert cached_experiment(cfg, tmp_path / "c", raw=raw, cache=cache, progress=False) == first
    assert cache.reused == [tmp_path / "c"]
    (tmp_path / "c" / "results.json").unlink()  # as if killed before the end:
    record = json.loads((tmp_path / "c" / RECORD).read_text())
    (tmp_path / "c" / RECORD).write_text(json.dumps({**record, "done": False}))
    calls = []
    real = run_mod.latest_checkpoint
    monkeypatch.setattr(run_mod, "latest_checkpoint", lambda d: calls.append(d) or real(d))
    again = cached_experiment(cfg, tmp_path / "c", raw=raw, cache=cache, progress=False)
    assert calls and again["history"] == first["history"]
    assert again["test_accuracy"] == first["test_accuracy"]
    other = dataclasses.replace(cfg, lam=0.02)
    changed = cached_experiment(other, tmp_path / "c", raw=raw, cache=cache, progress=False)
    assert changed["config"]["lam"] == 0.02 and len(cache.ran) == 3
    assert json.loads((tmp_path / "c" / "results.json").read_text())["config"]["lam"] == 0.02


@pytest.mark.slow
def test_changed_study_reruns_only_what_changed(tmp_path):
    cfg = load_recipe(
        "assignment3/sensitivity",
        {"split": "400/100", "n_s_k": "0", "n_s": "10", "cycles": "1", "hidden": "8,8"},
    )
    raw = synthetic_raw()
    run_sensitivity(cfg, tmp_path, raw, (1e-1,), cache=Cache(), progress=False)
    cache = Cache()
    run_sensitivity(cfg, tmp_path, raw, (1e-1, 1e-3), cache=cache, progress=False)
    assert [p.name for p in cache.reused] == ["sigma-0.1-bn", "sigma-0.1-nobn"]
    assert [p.name for p in cache.ran] == ["sigma-0.001-bn", "sigma-0.001-nobn"]
    cache = Cache()
    run_sensitivity(
        dataclasses.replace(cfg, lam=0.01), tmp_path, raw, (1e-1,), cache=cache, progress=False
    )
    assert not cache.reused and len(cache.ran) == 2


@pytest.fixture
def lr_range_experiment():
    from mlplab.reproduce.plan import PARTS, Show

    shows = [s for step in PARTS["bonus"] for s in step.shows if isinstance(s, Show)]
    return next(e for s in shows for e in s.experiments if e.kind == "lr-range")


@pytest.mark.slow
def test_lr_range_of_the_command_and_of_reproduce_is_one_entry(
    tmp_path, real_data_dir, lr_range_experiment
):
    """`mlplab lr-range` with the settings of reproduce's range test writes the entry that
    `mlplab reproduce bonus --quick` then reads back instead of running it again."""
    from mlplab.data import load_cifar10
    from mlplab.reproduce.runners import Context, run

    exp = lr_range_experiment
    raw = load_cifar10(real_data_dir, progress=False)
    ctx = Context(tmp_path, raw, quick=True, progress=False)
    sets = [a for k, v in ctx.overrides(exp).items() for a in ("--set", f"{k}={v}")]
    epochs = ctx.options(exp)["epochs"]
    args = ["lr-range", "-r", exp.recipe, "--data", str(real_data_dir), "-q", "--epochs"]
    args += [f"{epochs:g}", "--out", str(ctx.path(exp)), *sets]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    path = ctx.path(exp) / "lr_range.json"
    written = path.stat().st_mtime_ns
    res = run(exp, ctx)
    assert ctx.cache.reused == [ctx.path(exp)] and not ctx.cache.ran
    assert path.stat().st_mtime_ns == written and res == json.loads(path.read_text())
    assert res["epochs"] == epochs and res["recipe"] == exp.recipe


def test_a_record_that_cannot_be_written_is_one_error(tmp_path):
    (tmp_path / RECORD).mkdir()  # e.g. a directory where the record belongs
    from mlplab.errors import MlplabError

    with pytest.raises(MlplabError, match=f"cannot write {tmp_path / RECORD}"):
        Cache().get(tmp_path, "x", "k", "r.json", lambda resume: {})


def test_old_recipes_keep_their_run_names():
    """The new fields, left off, leave the configuration hash (so checkpoints and caches of
    earlier versions stay valid): the values computed by the code before they existed."""
    assert config_hash(load_recipe("assignment2/ex3")) == "3f61b24f0ac7ea4d"
    assert config_hash(load_recipe("assignment3/3layer-bn")) == "05ee874e785e5a6e"
    assert config_hash(load_recipe("assignment2/ex3", {"zca_eps": "1"})) != "3f61b24f0ac7ea4d"
