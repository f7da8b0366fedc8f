"""Networks as layer lists, the activations, declared options, schedules that compute their
own length, the new augmentations and the package's public face."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import synthetic_raw

import mlplab
from mlplab.config import load_recipe
from mlplab.data.augment import AUGMENTATIONS, make_augmentations
from mlplab.errors import ConfigError
from mlplab.gradcheck import gradcheck
from mlplab.images import ImageShape
from mlplab.nn.network import Network
from mlplab.nn.specs import normalise
from mlplab.options import Choice, Flag, Integer, Real, check_options
from mlplab.train.run import run_experiment


def test_options_check_their_declared_range():
    r = Real(0.9, 0.0, 1.0, high_open=True)
    assert r.check("opt", "m", 0) == 0.0 and r.describe() == "a finite number in [0, 1)"
    for bad in (1.0, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(ConfigError, match=r"opt: m must be a finite number in \[0, 1\)"):
            r.check("opt", "m", bad)
    with pytest.raises(ConfigError, match="an integer"):
        Integer(1, 1).check("o", "n", 2.5)
    assert Integer(1, 1).check("o", "n", np.int64(3)) == 3
    with pytest.raises(ConfigError, match="true or false"):
        Flag(False).check("o", "f", 1)
    with pytest.raises(ConfigError, match="one of a, b"):
        Choice("a", ("a", "b")).check("o", "c", "z")
    with pytest.raises(ConfigError, match="thing has no option zz; its options: n"):
        check_options("thing", {"n": Integer(1)}, {"zz": 1})
    assert check_options("thing", {"n": Integer(1)}, {}) == {"n": 1}


def test_layer_specs_normalise_and_refuse_nonsense():
    assert normalise("gelu") == {"kind": "gelu"}
    assert normalise({"dense": 256, "bias": False}) == {
        "kind": "dense",
        "units": 256,
        "bias": False,
    }
    assert normalise({"kind": "dense", "units": 8}) == {"kind": "dense", "units": 8}
    assert normalise({"leaky_relu": 0.2}) == {"kind": "leaky_relu", "slope": 0.2}
    for bad, msg in (
        ("swish", "unknown layer kind 'swish'"),
        ({"dense": 4, "dropout": 0.1}, "exactly one layer kind"),
        ({"gelu": 1}, "takes no value"),
        ({"kind": "dense"}, "needs units"),
        ({"dense": 0}, "units must be an integer in"),
        ({"dense": 4, "colour": 1}, "layer dense has no option colour"),
        (3, "a layer is a kind or a table"),
    ):
        with pytest.raises(ConfigError, match=msg):
            normalise(bad)


def test_the_shorthand_builds_the_layers_the_course_describes():
    net = Network.build(20, [8, 6], 3, rng=np.random.default_rng(0), batch_norm=True)
    kinds = [ly.kind for ly in net.layers]
    assert kinds == ["dense", "batchnorm", "relu", "dense", "batchnorm", "relu", "dense"]
    assert "b" not in net.layers[0].params and "b" in net.layers[-1].params
    same = Network.build(
        20,
        [],
        3,
        rng=np.random.default_rng(0),
        layers=[{"dense": 8}, "batchnorm", "relu", {"dense": 6}, "batchnorm", "relu"],
    )
    for k, v in net.params().items():
        np.testing.assert_array_equal(v, same.params()[k])
    with pytest.raises(ConfigError, match="at most 1e"):
        Network.build(100_000, [20_000], 10, rng=np.random.default_rng(0))


@pytest.mark.parametrize("activation", ["gelu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("method", ["loop", "vectorized"])
def test_the_activations_pass_the_gradient_checks(activation, method):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((7, 12)), rng.integers(0, 5, 7)
    net = Network.build(
        12, [9, 6], 5, rng=rng, activation=activation, batch_norm=True, dtype="float64"
    )
    R = rng.standard_normal((7, 5)) * 0.1
    assert gradcheck(net, X, y, 0.01, upstream=R, method=method).max_rel_error < 1e-6


@pytest.mark.parametrize(
    ("layer", "module"),
    [({"kind": "gelu"}, "GELU"), ({"leaky_relu": 0.2}, "LeakyReLU"), ("tanh", "Tanh")],
)
def test_the_activations_match_torch(layer, module):
    torch = pytest.importorskip("torch")
    net = Network.build(6, [], 3, rng=np.random.default_rng(0), layers=[{"dense": 5}, layer])
    act = net.layers[1]
    tmod = {
        "GELU": lambda: torch.nn.GELU(approximate="tanh"),
        "LeakyReLU": lambda: torch.nn.LeakyReLU(negative_slope=0.2),
        "Tanh": torch.nn.Tanh,
    }[module]()
    x = np.random.default_rng(1).standard_normal((9, 5)) * 3
    dout = np.random.default_rng(2).standard_normal((9, 5))
    tx = torch.tensor(x, requires_grad=True)
    tout = tmod(tx)
    tout.backward(torch.tensor(dout))
    out = act.forward(x, train=True)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(act.backward(dout), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_gelu_net_with_a_linear_bottleneck_trains_from_a_recipe(tmp_path):
    layers = '[{dense = 64}, "gelu", {dense = 8, bias = false}, {dense = 64}, "gelu"]'
    sets = {"split": "300/100", "n_s": "30", "layers": layers, "eval_batch": "100"}
    cfg = load_recipe("assignment2/ex3", sets)
    res = run_experiment(cfg, tmp_path / "run", raw=synthetic_raw(400, 100, k=4), progress=False)
    assert res["test_accuracy"] > 0.6  # four classes
    model = mlplab.load_model(tmp_path / "run")
    assert model.network.describe() == (
        "3072 -> dense 64 -> gelu -> dense 8 (no bias) -> dense 64 -> gelu -> dense 4"
    )


def test_schedules_compute_their_own_length():
    ex3 = load_recipe("assignment2/ex3")
    assert ex3.total_updates(10_000) == 2 * 500 and ex3.resolved_n_s(10_000) == 500
    cos = load_recipe("assignment2/ex3", {"schedule": "cosine", "epochs": "2.5", "eta": "0.1"})
    assert cos.total_updates(10_000) == 250 and cos.resolved_n_s(10_000) is None
    for key in ("epochs", "n_s_k"):
        sched = {"schedule": "cosine", "eta": "0.1"} if key == "epochs" else {}
        with pytest.raises(ConfigError, match=f"{key} make"):
            load_recipe("assignment2/ex3", {**sched, key: "1e308"}).total_updates(45_000)
    with pytest.raises(ConfigError, match=r"eta_min \(0.5\) must not exceed eta_max"):
        load_recipe("assignment2/ex3", {"eta_min": "0.5", "eta_max": "0.1"})


def test_crop_and_cutout_change_images_as_they_say():
    shape = ImageShape(6, 5, 1)
    x = np.arange(2 * 30, dtype=np.float64).reshape(2, 30) + 1
    (crop,) = make_augmentations({"crop": 2}, shape)
    y = x.copy()
    crop(y, np.random.default_rng(0))
    padded = np.pad(shape.planes(x), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    for i in range(2):  # each output is one 6x5 window of the reflected image
        img = shape.planes(y)[i, 0]
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[i, 0, dy : dy + 6, dx : dx + 5], img)
        ]
        assert hits
    (cut,) = make_augmentations({"cutout": 3}, shape)
    z = x.copy()
    cut(z, np.random.default_rng(1))
    zeroed = (z == 0).sum(axis=1)
    assert np.all((zeroed >= 2) & (zeroed <= 9))  # a 3x3 square, clipped at the border
    np.testing.assert_array_equal(z[z != 0], x[z != 0])
    with pytest.raises(ConfigError, match="does not fit"):
        make_augmentations({"cutout": 7}, shape)
    with pytest.raises(ConfigError, match="flip needs images"):
        make_augmentations({"flip": True}, None)
    assert list(AUGMENTATIONS)[:2] == ["flip", "translate"] and "noise" in AUGMENTATIONS


def test_the_public_face():
    for name in mlplab.__all__:
        assert getattr(mlplab, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        mlplab.nothing  # noqa: B018
    from mlplab.train.estimator import MLPClassifier

    assert mlplab.MLPClassifier is MLPClassifier


def test_recipes_options_lists_every_component():
    from click.testing import CliRunner

    from mlplab.cli import cli

    out = CliRunner().invoke(cli, ["recipes", "--options"]).output
    assert "optimizer sgd" in out and "(no options)" in out
    for owner, option in (("optimizer adam", "beta2"), ("augmentation cutout", "cutout")):
        assert any(line.startswith(owner) and f" {option} " in line for line in out.splitlines())
    assert "layer leaky_relu" in out and "layer gelu" in out


@pytest.mark.parametrize("activation", ["gelu", "leaky_relu", "tanh"])
def test_gradcheck_command_checks_every_activation_and_matches_torch(activation):
    import json

    from click.testing import CliRunner

    from mlplab.cli import cli

    args = ["gradcheck", "--hidden", "12,8", "--activation", activation, "--json"]
    numeric = json.loads(CliRunner().invoke(cli, args).output)
    assert numeric["max_rel_error"] < 1e-6
    pytest.importorskip("torch")
    autograd = json.loads(CliRunner().invoke(cli, [*args, "--torch"]).output)
    assert autograd["max_rel_error"] < 1e-10


def test_an_option_the_recipe_does_not_use_is_refused_where_it_is_written(tmp_path):
    for sets in ({"momentum": "0.5"}, {"gamma": "5"}, {"epochs": "3"}, {"beta2": "0.9"}):
        with pytest.raises(ConfigError, match="which this recipe does not use"):
            load_recipe("assignment2/ex3", sets)  # plain SGD, the cyclic schedule
    recipe = tmp_path / "r.toml"
    recipe.write_text('base = "assignment2/ex3"\nmomentum = 0.5\n')
    with pytest.raises(ConfigError, match="optimizer momentum, optimizer nesterov"):
        load_recipe(str(recipe))
    assert load_recipe("assignment2/ex3", {"momentum": "0.5", "optimizer": "nesterov"})
    assert load_recipe("assignment2/ex3", {"momentum": "0.9"})  # the default: not written
