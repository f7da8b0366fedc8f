"""Training loop, configuration, estimator and model files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from helpers import synthetic_raw

from mlplab.config import Config, load_recipe, parse_set_options, recipe_names
from mlplab.data import make_splits
from mlplab.errors import ConfigError, ModelFileError
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_network, save_network
from mlplab.train.build import build_network
from mlplab.train.run import run_experiment
from mlplab.train.trainer import Trainer


def _cfg(**kw) -> Config:
    base = dict(
        name="t",
        split="400/100",
        hidden=[16],
        lam=0.01,
        batch_size=20,
        n_s=20,
        cycles=1,
        eta_min=1e-4,
        eta_max=5e-2,
        record_every=10,
    )
    base.update(kw)
    return Config(**base).validate()


def _train(cfg: Config, dtype: str = "float64"):
    cfg = dataclasses.replace(cfg, dtype=dtype)
    raw = synthetic_raw()
    rng = np.random.default_rng(cfg.seed)
    s = make_splits(raw, cfg.split, rng, dtype=np.dtype(dtype).type)
    net = build_network(cfg, 3072, 10, rng)
    tr = Trainer(net, cfg, rng, progress=False)
    tr.fit(s.x_train, s.y_train, s.x_val, s.y_val)
    return net, tr


def test_same_seed_same_numbers_and_other_seed_differs():
    cfg = _cfg(flip=True, translate=2, noise_std=0.1, drop_prob=0.2)
    a, ta = _train(cfg, "float32")
    b, tb = _train(cfg, "float32")
    c, _ = _train(dataclasses.replace(cfg, seed=1), "float32")
    for k, v in a.params().items():
        np.testing.assert_array_equal(v, b.params()[k])
    assert ta.history == tb.history
    assert not np.array_equal(a.params()["dense1.W"], c.params()["dense1.W"])


def test_history_records_at_least_10_points_per_cycle_and_lr():
    cfg = _cfg(n_s=50, cycles=2, record_every=0, record_per_cycle=10)
    _, tr = _train(cfg)
    steps = [p["step"] for p in tr.history]
    assert steps[0] == 0 and steps[-1] == 200
    assert len(steps) >= 2 * 10 + 1
    assert {
        "train_cost",
        "train_loss",
        "train_accuracy",
        "val_cost",
        "val_loss",
        "val_accuracy",
        "lr",
    } <= set(tr.history[0])
    assert max(p["lr"] for p in tr.history) == pytest.approx(5e-2)


def test_training_learns_synthetic_data():
    _, tr = _train(_cfg(n_s=100, cycles=2), "float32")
    assert tr.history[-1]["val_accuracy"] > 0.8


def test_divergence_is_reported_with_step_and_lr():
    from mlplab.errors import TrainingDiverged

    cfg = _cfg(schedule="constant", eta=1e6, epochs=3, lam=0.0)
    with pytest.raises(TrainingDiverged, match=r"update \d+ \(learning rate 1e\+06\)"):
        _train(cfg, "float32")


def test_recipes_load_and_values():
    assert {"assignment2/ex3", "assignment2/ex4", "assignment2/overfit"} <= set(recipe_names())
    ex4 = load_recipe("assignment2/ex4")
    assert (ex4.n_s, ex4.cycles, ex4.lam, ex4.hidden, ex4.split) == (800, 3, 0.01, [50], "batch")
    assert ex4.total_updates(10000) == 4800
    over = load_recipe("assignment2/ex3", parse_set_options(["hidden=50,50", "lam=0.005"]))
    assert over.hidden == [50, 50] and over.lam == 0.005
    k = load_recipe("assignment2/ex3", {"n_s_k": "2"})
    assert k.resolved_n_s(45000) == 900


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["nonsense=1"], "unknown recipe key"),
        (["lam=abc"], "expects float"),
        (["eta_min=0.5"], "must not exceed eta_max"),
        (["lam=-1"], "lam must be >= 0"),
        (["n_s=0"], "n_s must be >= 1"),
        (["hidden=0"], "hidden sizes"),
        (["lam"], "key=value"),
        (["batch_size=0"], "batch_size"),
    ],
)
def test_bad_overrides_raise_config_error(sets, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe("assignment2/ex3", parse_set_options(sets))


def test_bad_recipe_files(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('hidden = "fifty"\n')
    with pytest.raises(ConfigError, match="expects"):
        load_recipe(str(p))
    p.write_text("lam = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(str(p))
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe("assignment9/none")


def test_batch_larger_than_split_is_an_error():
    with pytest.raises(ConfigError, match="larger than the training split"):
        _train(_cfg(batch_size=1000))


def test_model_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    net = Network.build(3072, [8], 10, rng=rng, batch_norm=True)
    net.forward(rng.standard_normal((5, 3072)).astype(np.float32), train=True)
    mean, std = np.zeros(3072), np.ones(3072)
    save_network(tmp_path / "m", net, mean, std, tuple("abcdefghij"))
    m = load_network(tmp_path / "m.json")
    for k, v in net.state().items():
        np.testing.assert_array_equal(v, {**m.network.params(), **m.network.buffers()}[k])
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="newer"):
        load_network(tmp_path / "m")
    with pytest.raises(ModelFileError, match="not found"):
        load_network(tmp_path / "missing")


def test_run_experiment_writes_files(tmp_path):
    cfg = _cfg(name="tiny")
    res = run_experiment(cfg, tmp_path / "out", raw=synthetic_raw(), progress=False)
    for f in ("results.json", "curves.png", "model.npz", "model.json"):
        assert (tmp_path / "out" / f).is_file()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    for key in (
        "test_accuracy",
        "val_accuracy",
        "train_accuracy",
        "train_seconds",
        "record_seconds",
        "epochs",
        "updates",
        "config",
        "history",
    ):
        assert key in saved
    assert saved["test_accuracy"] == res["test_accuracy"]
    assert saved["config"]["lam"] == 0.01 and saved["updates"] == 40
    assert 0 < saved["record_seconds"] < saved["train_seconds"]  # history evaluations, timed
    from mlplab.errors import MlplabError

    with pytest.raises(MlplabError, match="already holds a finished run"):
        run_experiment(cfg, tmp_path / "out", raw=synthetic_raw(), progress=False)


def test_snapshot_ensemble_keeps_one_model_per_cycle(tmp_path):
    cfg = _cfg(name="snap", cycles=3, snapshot_ensemble=True)
    res = run_experiment(cfg, tmp_path / "o", raw=synthetic_raw(), progress=False)
    assert res["n_snapshots"] == 3 and len(res["snapshot_test_accuracies"]) == 3
    assert res["snapshot_test_accuracies"][-1] == res["test_accuracy"]  # last = final model
    assert 0 <= res["ensemble_test_accuracy"] <= 1
    for i in (1, 2, 3):
        assert (tmp_path / "o" / f"model-snapshot-{i}.npz").is_file()
    from click.testing import CliRunner

    from mlplab.cli import cli

    with pytest.raises(ConfigError, match="needs the cyclic schedule"):
        _cfg(snapshot_ensemble=True, schedule="constant", eta=0.01, epochs=1)
    assert CliRunner().invoke(cli, ["evaluate", "--help"]).exit_code == 0


def test_keep_best_restores_best_validation_weights_and_early_stop():
    cfg = _cfg(n_s=40, cycles=2, keep_best=True, record_every=4)
    net, tr = _train(cfg)
    raw = synthetic_raw()
    s = make_splits(raw, cfg.split, np.random.default_rng(cfg.seed), dtype=np.float64)
    best = max(p["val_accuracy"] for p in tr.history)
    assert net.evaluate(s.x_val, s.y_val)["accuracy"] == pytest.approx(best)
    assert tr.history[[p["val_accuracy"] for p in tr.history].index(best)]["step"] == tr.best_step
    # early stopping: an impossible-to-improve run (lr tiny) stops after `early_stop` points
    cfg = _cfg(schedule="constant", eta=1e-9, epochs=20, early_stop=3, record_every=4)
    _, tr = _train(cfg)
    assert tr.stopped_early and tr.step < cfg.total_updates(400)


def test_batches_gathered_ahead_are_the_rows_asked_for():
    """BatchGather: a prefetched batch, a batch not prefetched (a new epoch) and the other
    buffer left alone while the next one is gathered."""
    from mlplab.train.gather import BatchGather

    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 7)).astype(np.float32)
    g = BatchGather(X, 5, ahead=True)
    try:
        perm = rng.permutation(50)
        first = g.take(0, perm[:5])
        np.testing.assert_array_equal(first, X[perm[:5]])
        kept = first.copy()
        g.prefetch(1, perm[5:10])
        second = g.take(1, perm[5:10])
        np.testing.assert_array_equal(second, X[perm[5:10]])
        np.testing.assert_array_equal(first, kept)  # the other buffer was not touched
        assert second is not first and g.pending is None
        other = rng.permutation(50)[:5]  # a step with no prefetch (e.g. a new epoch)
        np.testing.assert_array_equal(g.take(2, other), X[other])
    finally:
        g.close()


def test_train_curves_on_a_subset_leave_the_training_unchanged():
    """record_train_samples=k: the train curves are those of the first k training samples;
    the weights, the validation curves and the generator are exactly those of a full run."""
    full_net, full = _train(_cfg(), "float32")
    cfg = _cfg(record_train_samples=150)
    net, tr = _train(cfg, "float32")
    for k, v in full_net.params().items():
        np.testing.assert_array_equal(v, net.params()[k])
    assert [p["val_accuracy"] for p in tr.history] == [p["val_accuracy"] for p in full.history]
    assert [p["train_loss"] for p in tr.history] != [p["train_loss"] for p in full.history]
    raw = synthetic_raw()
    s = make_splits(raw, cfg.split, np.random.default_rng(cfg.seed))
    last = net.evaluate(s.x_train[:150], s.y_train[:150], cfg.lam, cfg.eval_batch)
    assert tr.history[-1]["train_cost"] == pytest.approx(last["cost"], rel=1e-6)
    assert tr.history[-1]["train_accuracy"] == last["accuracy"]
    with pytest.raises(ConfigError, match="record_train_samples 401 is larger"):
        _train(_cfg(record_train_samples=401))
    with pytest.raises(ConfigError, match="record_train_samples must be >= 0"):
        _cfg(record_train_samples=-1)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"record_train_samples": True}, "record_train_samples must be an integer"),
        ({"record_train_samples": 2.5}, "record_train_samples must be an integer"),
        ({"lam": "0.01"}, "lam must be a number"),
        ({"flip": 1}, "flip must be true or false"),
    ],
)
def test_config_built_in_python_is_type_checked(kw, match):
    """A Config made in Python (not parsed from TOML or --set) gets one clear error for a
    value of the wrong type; NumPy scalars (scikit-learn's searches pass them) are fine."""
    with pytest.raises(ConfigError, match=match):
        _cfg(**kw)
    assert _cfg(batch_size=np.int64(20), lam=np.float32(0.01)).batch_size == 20
