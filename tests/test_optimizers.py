"""The optimisers' in-place (fused) updates against the textbook formulas written here.

Each library step works in place on the parameters, one scratch buffer and the
gradients, with the gradient scale it asks of the backward pass; the reference below
is the plain formula with temporaries (``p - lr * (g + 2 l2 p)`` ...), fed the plain
gradient. In float32 they must agree bit for bit (the same floating-point operations
in the same order), in training too; plain SGD, whose update comes from the GEMM,
agrees to rounding.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import synthetic_raw

from mlplab.config import Config
from mlplab.data import make_splits
from mlplab.errors import ConfigError
from mlplab.machine import blas_threads
from mlplab.nn.layers import LAYERS
from mlplab.optim.optimizers import BLOCK, OPTIMIZERS, Adam, Optimizer, make_optimizer
from mlplab.train.build import build_network
from mlplab.train.trainer import Trainer


class Reference(Optimizer):
    """The textbook update of every optimiser, with temporaries; always ``grad_scale = 1``."""

    def __init__(self, kind: str, momentum: float = 0.0, **kw) -> None:
        super().__init__(**kw)
        self.kind, self.mu = kind, momentum
        self.b1, self.b2, self.eps = 0.9, 0.999, 1e-8

    def step(self, params, grads, lr, *, scale=1.0):
        assert scale == 1.0
        self.t += 1
        for name, p in params.items():
            self._textbook(name, p, grads[name], lr, self.l2 if name in self.decay_names else 0)

    def _textbook(self, name, p, g, lr, l2):
        g = g + (2.0 * l2) * p if l2 else g
        if self.wd and name in self.decay_names:
            p *= 1.0 - lr * self.wd
        if self.kind == "adam":
            m = self.state[name + ".m"] = (
                self.b1 * self.state.get(name + ".m", 0) + (1 - self.b1) * g
            )
            v = self.state[name + ".v"] = self.b2 * self.state.get(name + ".v", 0) + (
                1 - self.b2
            ) * (g * g)
            denom = np.sqrt(v / (1 - self.b2**self.t)) + self.eps
            p -= (lr / (1 - self.b1**self.t)) * m / denom
            return
        if self.kind == "sgd":
            p -= lr * g
            return
        v = self.state[name] = self.mu * self.state[name] + g if name in self.state else g.copy()
        p -= lr * (g + self.mu * v) if self.kind == "nesterov" else lr * v


CASES = {
    "sgd": {},
    "sgd-l2": {"l2": 0.01},
    "sgd-l2-wd": {"l2": 0.01, "weight_decay": 0.1},
    "momentum-l2": {"l2": 0.01},
    "nesterov-l2-wd": {"l2": 0.005, "weight_decay": 0.05},
    "adam-l2": {"l2": 0.001},
    "adam-wd": {"weight_decay": 0.01},
    "adam-l2-wd": {"l2": 0.001, "weight_decay": 0.01},
}


def _pair(case: str):
    kind = case.split("-")[0]
    kw = dict(CASES[case])
    wd = kw.pop("weight_decay", 0.0)
    names = ["w"]
    ours = make_optimizer(kind, momentum=0.9, weight_decay=wd, decay_names=names, **kw)
    ref_kind = "sgd" if kind == "sgd" else kind
    ref = Reference(ref_kind, 0.9, decoupled_weight_decay=wd, decay_names=names, **kw)
    return ours, ref


@pytest.mark.parametrize("case", CASES)
def test_in_place_step_is_the_textbook_formula_bit_for_bit(case):
    """Blocks of a parameter change no number."""
    rng = np.random.default_rng(3)
    shapes = {"w": (300, 500), "b": (500,)}  # w: two blocks and a part of a third
    assert 2 * BLOCK < 300 * 500 < 3 * BLOCK
    start = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    ours, ref = _pair(case)
    p1 = {k: v.copy() for k, v in start.items()}
    p2 = {k: v.copy() for k, v in start.items()}
    for t in range(8):
        lr = 0.05 * (1 + t % 3)  # a changing learning rate, as in a cyclic schedule
        g = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        scale = ours.grad_scale(lr)
        scaled = {k: v * np.float32(scale) for k, v in g.items()}
        kept = {k: v.copy() for k, v in scaled.items()}
        ours.step(p1, scaled, lr, scale=scale)
        for k in shapes:  # read, never written (no write-back of the gradient's memory)
            np.testing.assert_array_equal(scaled[k], kept[k])
        ref.step(p2, {k: v.copy() for k, v in g.items()}, lr)
        for k in shapes:
            if ours.grad_scale(lr) == 1.0:
                np.testing.assert_array_equal(p1[k], p2[k], err_msg=f"{case} {k} step {t}")
            else:  # p (1 - 2 lr l2) + (-lr g): the same update, rounded in another order
                np.testing.assert_allclose(p1[k], p2[k], rtol=1e-5, atol=1e-6)
    assert ours.grad_scale(0.1) == (-0.1 if case == "sgd" or case == "sgd-l2" else 1.0)


def _cfg(**kw) -> Config:
    base = dict(
        split="400/100",
        hidden=[16, 12],
        batch_size=25,
        lam=0.01,
        schedule="cyclic",
        n_s=12,
        cycles=1,
        eta_min=1e-4,
        eta_max=5e-2,
        record_every=6,
        dtype="float32",
    )
    base.update(kw)
    return Config(**base).validate()


def _fit(cfg: Config, optimizer: Optimizer | None):
    raw = synthetic_raw()
    rng = np.random.default_rng(cfg.seed)
    s = make_splits(raw, cfg.split, rng, dtype=np.dtype(cfg.dtype).type)
    net = build_network(cfg, 3072, 10, rng)
    tr = Trainer(net, cfg, rng, progress=False, optimizer=optimizer)
    with blas_threads(cfg.threads):  # as a run applies them
        tr.fit(s.x_train, s.y_train, s.x_val, s.y_val)
    return net, tr


@pytest.mark.parametrize(
    "kw",
    [
        {"optimizer": "sgd"},
        {"optimizer": "sgd", "batch_norm": True, "drop_prob": 0.2, "label_smoothing": 0.1},
        {"optimizer": "nesterov", "batch_norm": True, "weight_decay": 0.01},
        {"optimizer": "nesterov", "drop_prob": 0.1, "threads": 2},  # with 2 BLAS threads
        {"optimizer": "adam", "eta_max": 1e-3},
    ],
)
@pytest.mark.slow
def test_training_with_the_fused_update_equals_the_textbook_one(kw):
    """SGD's update comes from the GEMM (``scale = -lr``): equal to rounding; the others
    scale by 1 and run the same operations as the formula: equal bit for bit."""
    cfg = _cfg(**kw)
    a, ta = _fit(cfg, None)
    kind = "sgd" if cfg.optimizer == "sgd" else cfg.optimizer
    ref = Reference(kind, cfg.momentum, l2=cfg.lam, decoupled_weight_decay=cfg.weight_decay)
    b, tb = _fit(cfg, ref)
    assert ta.optimizer.t == tb.optimizer.t == ta.step
    for k, v in a.params().items():
        if cfg.optimizer == "sgd":
            np.testing.assert_allclose(v, b.params()[k], rtol=2e-4, atol=2e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(v, b.params()[k], err_msg=k)
    # in float64 the GEMM-fed SGD is the formula to rounding
    a64, _ = _fit(dataclasses.replace(cfg, dtype="float64"), None)
    ref64 = Reference(kind, cfg.momentum, l2=cfg.lam, decoupled_weight_decay=cfg.weight_decay)
    b64, _ = _fit(dataclasses.replace(cfg, dtype="float64"), ref64)
    for k, v in a64.params().items():
        np.testing.assert_allclose(v, b64.params()[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kind", sorted(k for k, c in LAYERS.items() if c.takes_scale))
def test_layers_that_take_a_scale_scale_their_parameter_gradients_and_not_dx(kind):
    """The layer contract: ``backward(dout, s)`` writes ``s * dL/dp``, returns ``dL/dx``."""
    rng = np.random.default_rng(0)
    spec = {
        "dense": {"kind": "dense", "d_in": 6, "d_out": 5, "bias": True},
        "relu": {"kind": "relu"},
        "batchnorm": {
            "kind": "batchnorm",
            "d": 6,
            "alpha": 0.9,
            "eps": 1e-5,
            "running_init": "torch",
            "unbiased_running_var": False,
        },
        "dropout": {"kind": "dropout", "drop_prob": 0.3},
    }[kind]
    layer = LAYERS[kind].from_spec(spec, np.float64)
    for v in layer.params.values():
        v[...] = rng.standard_normal(v.shape)
    x = rng.standard_normal((8, 6))
    out = layer.forward(x, train=True, rng=np.random.default_rng(1))
    dout = rng.standard_normal(out.shape)
    keep = dout.copy()
    dx1 = layer.backward(dout)
    g1 = {k: v.copy() for k, v in layer.grads.items()}
    dx2 = layer.backward(dout, -0.25)
    np.testing.assert_array_equal(dout, keep)
    np.testing.assert_allclose(dx2, dx1, rtol=1e-15)
    for k, g in layer.grads.items():
        np.testing.assert_allclose(g, -0.25 * g1[k], rtol=1e-15)


def test_layers_without_a_scale_have_no_parameters_to_scale():
    assert sorted(k for k, c in LAYERS.items() if c.takes_scale) == ["batchnorm", "dense"]
    assert not LAYERS["relu"]().params and not LAYERS["dropout"](0.5).params


def test_a_non_contiguous_parameter_is_updated_in_one_piece():
    rng = np.random.default_rng(0)
    for case in CASES:
        w = np.asfortranarray(rng.standard_normal((7, 5)).astype(np.float32))
        ref_w, w0 = np.ascontiguousarray(w), w.copy()
        ours, ref = _pair(case)
        for _ in range(3):
            g = rng.standard_normal((7, 5)).astype(np.float32)
            scale = ours.grad_scale(0.1)
            ours.step({"w": w}, {"w": np.asfortranarray(g * np.float32(scale))}, 0.1, scale=scale)
            ref.step({"w": ref_w}, {"w": g.copy()}, 0.1)
        np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6, err_msg=case)
        assert not np.array_equal(w, w0)


def test_plain_gradients_or_the_asked_scale_and_nothing_else():
    """``step`` takes plain gradients (scale 1) from any hand-written loop, or the scale the
    optimiser asked for; another scale is refused instead of giving a wrong step."""
    w = np.ones((3, 2))
    sgd = make_optimizer("sgd")
    sgd.step({"w": w}, {"w": np.full((3, 2), 2.0)}, 0.1)  # plain: w - 0.1 * 2
    np.testing.assert_allclose(w, 0.8)
    sgd.step({"w": w}, {"w": np.full((3, 2), -0.2)}, 0.1, scale=-0.1)  # -lr * 2 from the GEMM
    np.testing.assert_allclose(w, 0.6)
    with pytest.raises(ValueError, match=r"not times 0\.5"):
        sgd.step({"w": w}, {"w": np.ones((3, 2))}, 0.1, scale=0.5)


def test_an_optimizer_given_to_the_trainer_must_apply_the_configured_l2():
    cfg = _cfg(lam=0.01)
    net = build_network(cfg, 3072, 10, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"l2 \(0.0\) differs from the configuration's lam"):
        Trainer(net, cfg, np.random.default_rng(0), optimizer=make_optimizer("momentum"))
    tr = Trainer(net, cfg, np.random.default_rng(0), optimizer=make_optimizer("sgd", l2=0.01))
    assert tr.optimizer.decay_names == {"dense1.W", "dense2.W", "dense3.W"}


def test_optimizer_names_come_from_the_registry():
    assert sorted(OPTIMIZERS) == ["adam", "momentum", "nesterov", "sgd"]
    with pytest.raises(ConfigError, match="choose one of sgd, momentum, nesterov, adam"):
        make_optimizer("adamw")
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, momentum, nesterov, adam"):
        Config(optimizer="adamw").validate()
    assert isinstance(make_optimizer("adam", weight_decay=0.1), Adam)  # AdamW
    with pytest.raises(ConfigError, match="l2"):
        make_optimizer("sgd", l2=float("nan"))
