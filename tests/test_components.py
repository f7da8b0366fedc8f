"""A new activation, augmentation and optimiser, each defined here, outside the library, and
registered with one line: each is usable from a recipe (``--set``), trains, saves and loads,
and the activation passes both gradient checks. No library code is written for them."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import synthetic_raw

from mlplab.config import load_recipe
from mlplab.data.augment import AUGMENTATIONS, Augmentation
from mlplab.errors import ConfigError
from mlplab.gradcheck import gradcheck
from mlplab.nn.activations import ACTIVATIONS, Activation
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_network
from mlplab.optim.optimizers import OPTIMIZERS, Optimizer
from mlplab.options import Option, Real
from mlplab.train.ablation import ingredients
from mlplab.train.run import run_experiment


class Swish(Activation):
    """``x * sigmoid(beta x)`` (Ramachandran et al. 2017); ``f' = s + beta x s (1 - s)``."""

    kind = "swish"
    options: ClassVar[dict[str, Option]] = {"beta": Real(1.0, 0.0, 10.0, low_open=True)}
    primary = "beta"
    beta: float

    def f(self, x: np.ndarray) -> np.ndarray:
        return x / (1.0 + np.exp(-self.beta * x))

    def df(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        s = 1.0 / (1.0 + np.exp(-self.beta * x))
        return s + self.beta * x * s * (1.0 - s)


class BrokenSwish(Swish):
    kind = "broken_swish"

    def df(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.beta * x))  # forgets the second term


class Brightness(Augmentation):
    """Add one random offset in ``[-brightness, brightness]`` to every value of an image."""

    name = "brightness"
    needs_image = False
    options: ClassVar[dict[str, Option]] = {"brightness": Real(0.0, 0.0, 10.0)}
    calls = 0

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> None:
        b = self.opts["brightness"]
        x += rng.uniform(-b, b, size=(x.shape[0], 1)).astype(x.dtype)
        Brightness.calls += 1


class Lion(Optimizer):
    """Lion (Chen et al. 2023): ``c = b1 m + (1 - b1) g``; ``p -= lr sign(c)``;
    ``m = b2 m + (1 - b2) g`` (``g`` with the L2 term)."""

    name = "lion"
    slots = (".m",)
    options: ClassVar[dict[str, Option]] = {
        "beta1": Real(0.9, 0.0, 1.0, high_open=True),
        "beta2": Real(0.99, 0.0, 1.0, high_open=True),
    }

    def __init__(self, beta1: float = 0.9, beta2: float = 0.99, **kw: Any) -> None:
        super().__init__(**kw)
        self.beta1, self.beta2 = beta1, beta2

    def _update(self, name, p, g, state, *, lr, l2, fresh, scale):
        g = self._with_l2(p, g, l2)
        self._decay(name, p, lr)
        (m,) = state
        p -= lr * np.sign(self.beta1 * m + (1 - self.beta1) * g)
        m *= self.beta2
        m += (1 - self.beta2) * g


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(ACTIVATIONS, Swish.kind, Swish)  # one line each
    monkeypatch.setitem(ACTIVATIONS, BrokenSwish.kind, BrokenSwish)
    monkeypatch.setitem(AUGMENTATIONS, Brightness.name, Brightness)
    monkeypatch.setitem(OPTIMIZERS, Lion.name, Lion)


def _run(tmp_path, name, **sets):
    """``mlplab train --recipe assignment2/ex3 --set ...`` on a small synthetic set."""
    base = {"split": "300/100", "n_s": "15", "hidden": "16", "eval_batch": "100"}
    cfg = load_recipe("assignment2/ex3", {**base, **sets})
    res = run_experiment(cfg, tmp_path / name, raw=synthetic_raw(400, 100, k=4), progress=False)
    return cfg, res


def test_unregistered_names_are_refused():
    for key, value in (("activation", "swish"), ("optimizer", "lion")):
        with pytest.raises(ConfigError, match=value):
            load_recipe("assignment2/ex3", {key: value})
    with pytest.raises(ConfigError, match="unknown recipe key 'brightness'"):
        load_recipe("assignment2/ex3", {"brightness": "0.5"})


def test_a_new_activation_from_a_recipe_trains_saves_and_loads(registered, tmp_path):
    cfg, res = _run(tmp_path, "swish", activation="swish")
    assert res["test_accuracy"] > 0.5  # four classes: chance is 0.25
    model = load_network(tmp_path / "swish" / "model")
    assert [ly.kind for ly in model.network.layers] == ["dense", "swish", "dense"]
    x = synthetic_raw(400, 100, k=4).x_test
    again = load_network(tmp_path / "swish" / "model").predict_proba(x)
    np.testing.assert_array_equal(model.predict_proba(x), again)
    # with its option, in a layers list
    cfg = load_recipe("assignment2/ex3", {"layers": "[{dense = 8}, {swish = 2.5}]"})
    net = Network.build(12, [], 3, rng=np.random.default_rng(0), layers=cfg.layers)
    assert net.layers[1].beta == 2.5 and net.layers[1].spec() == {"kind": "swish", "beta": 2.5}
    with pytest.raises(ConfigError, match="beta must be"):
        load_recipe("assignment2/ex3", {"layers": "[{dense = 8}, {swish = -1}]"})


@pytest.mark.parametrize("method", ["loop", "vectorized"])
def test_a_new_activation_passes_the_gradient_checks(registered, method):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((7, 12)), rng.integers(0, 5, 7)
    R = rng.standard_normal((7, 5)) * 0.1
    for kind, ok in (("swish", True), ("broken_swish", False)):
        net = Network.build(
            12, [9, 6], 5, rng=np.random.default_rng(1), activation=kind, dtype="float64"
        )
        err = gradcheck(net, X, y, 0.01, upstream=R, method=method).max_rel_error
        assert (err < 1e-6) if ok else (err > 1e-2), (kind, err)


@pytest.mark.slow
def test_a_new_augmentation_from_a_recipe_trains_and_is_ablated(registered, tmp_path):
    Brightness.calls = 0
    cfg, res = _run(tmp_path, "bright", brightness="0.5")
    assert cfg.options == {"brightness": 0.5}
    assert Brightness.calls == res["updates"] > 0  # once per mini-batch
    _, plain = _run(tmp_path, "plain")
    assert res["history"][-1]["train_loss"] != plain["history"][-1]["train_loss"]
    uses, off = ingredients(cfg)["brightness"]
    assert uses(cfg) and off == {"brightness": "0.0"}
    assert ingredients(cfg)["augmentation"][1] == {"brightness": "0.0"}
    with pytest.raises(ConfigError, match="brightness must be"):
        load_recipe("assignment2/ex3", {"brightness": "20"})


def test_a_new_optimizer_from_a_recipe_trains_saves_and_loads(registered, tmp_path):
    cfg, res = _run(
        tmp_path, "lion", optimizer="lion", beta2="0.95", eta_min="1e-5", eta_max="1e-3"
    )
    assert cfg.options == {"beta2": 0.95}
    assert res["test_accuracy"] > 0.5
    assert load_network(tmp_path / "lion" / "model").network.n_classes == 4
    # the step is the formula: one update from zero momentum is -lr * sign(g)
    opt = OPTIMIZERS["lion"](beta1=0.9, beta2=0.95)
    p, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, -0.1, 0.0])
    opt.step({"w": p}, {"w": g}, 0.1)
    np.testing.assert_array_equal(p, [0.9, -1.9, 3.0])
    np.testing.assert_array_equal(opt.state["w.m"], (1 - 0.95) * g)
    with pytest.raises(ConfigError, match="beta2 must be"):
        load_recipe("assignment2/ex3", {"optimizer": "lion", "beta2": "1.5"})
    with pytest.raises(ConfigError, match="belongs to optimizer adam, optimizer lion"):
        load_recipe("assignment2/ex3", {"beta2": "0.9"})  # sgd has no beta2
