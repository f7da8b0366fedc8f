"""Numbers checked where they enter: finite but huge inputs are one clear
error ("out of range") or finite probabilities, never NaN and class 0 without a word; a
model with a NaN weight or a zero standard deviation is refused when it is loaded;
``--json`` never prints ``NaN``; NumPy's RuntimeWarnings are not printed beside the error
line; the BLAS thread count is at most the cores this process may use."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mlplab.cli import cli
from mlplab.errors import ConfigError, DataError, ModelFileError
from mlplab.machine import check_threads, usable_cores
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_network, save_network
from mlplab.train.estimator import MLPClassifier
from mlplab.transform.standardize import check_range
from mlplab.transform.whiten import fit_zca


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _cli(*args: str):
    """The command in this process with every RuntimeWarning an exception: a warning that
    reached the user would be a traceback here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return CliRunner().invoke(cli, list(args))


def _one_error(r, words: str) -> None:
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, (r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.output


def _features_model(path, dtype="float32", d=4):
    net = Network.build(d, [5], 3, rng=np.random.default_rng(0), dtype=dtype)
    save_network(path, net, np.zeros(d), np.ones(d), ("a", "b", "c"), image_shape=None, scale=1.0)
    return path


def _image_model(path, edit=None, std=None):
    net = Network.build(12, [5], 3, rng=np.random.default_rng(0))
    if edit is not None:
        edit(net)
    std = np.ones(12) if std is None else std
    save_network(path, net, np.zeros(12), std, ("a", "b", "c"), image_shape=[2, 2, 3])
    return path


@pytest.fixture
def image(tmp_path):
    Image.new("RGB", (2, 2), (250, 0, 0)).save(tmp_path / "im.png")
    return tmp_path / "im.png"


# ------------------------------------------------------------------ huge inputs


def test_huge_features_to_a_saved_model_are_out_of_range(tmp_path):
    """1e300 standardised is beyond float32: it gave NaN probabilities and class 0."""
    m = load_network(_features_model(tmp_path / "m"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(DataError, match="inputs out of range: 2 of 3 rows of the data"):
            m.predict_proba(np.array([[1e300] * 4, [0.5] * 4, [-1e300, 0, 0, 0]]))
    p = m.predict_proba(np.full((2, 4), 1e30))  # large, and within float32 once standardised
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1)


def test_a_float64_model_computes_huge_inputs_or_says_out_of_range(tmp_path):
    m = load_network(_features_model(tmp_path / "m", "float64"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for x in (1e300, 1e306, 1.7e308):
            try:
                p = m.predict_proba(np.full((2, 4), x))
            except DataError as e:
                assert "out of range" in str(e)
            else:  # finite logits: the softmax is stable
                assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1)


def test_evaluate_on_huge_test_features_is_one_error(tmp_path):
    _features_model(tmp_path / "m")
    rng = np.random.default_rng(0)
    x_test = np.full((6, 4), 1e300)
    np.savez(
        tmp_path / "d.npz",
        x=rng.random((30, 4)),
        y=np.arange(30) % 3,
        x_test=x_test,
        y_test=np.arange(6) % 3,
        classes=np.array(["a", "b", "c"]),
    )
    r = _cli("evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "d.npz"), "--json")
    _one_error(r, "inputs out of range: 6 of 6 rows of the data")


def test_training_refuses_huge_test_features_before_it_trains(tmp_path):
    """The test rows are standardised after training: their range is checked before."""
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=rng.random((300, 20)),
        y=np.arange(300) % 3,
        x_test=np.concatenate([rng.random((5, 20)), np.full((1, 20), -1e300)]),
        y_test=np.arange(6) % 3,
    )
    out = tmp_path / "out"
    args = ["train", "--recipe", "assignment2/ex3", "--data", str(tmp_path / "d.npz")]
    r = _cli(*args, "--set", "split=200/40", "--set", "n_s=20", "--out", str(out), "--quiet")
    _one_error(r, "inputs out of range: 1 of 6 rows of the test part")
    assert not (out / "run.json").exists() and not (out / "checkpoints").exists()


def test_huge_validation_features_are_refused():
    rows = np.ones((3, 2), np.float32)
    rows[1, 1] = np.inf
    with pytest.raises(DataError, match="1 of 3 rows of the validation split"):
        check_range(rows, "the validation split")
    check_range(np.empty((0, 2), np.float32), "nothing")


def test_the_estimator_says_out_of_range():
    rng = np.random.default_rng(0)
    X, y = rng.random((60, 12)), np.arange(60) % 3
    clf = MLPClassifier(n_s=5).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="out of range: 2 of 2 rows of X"):
            clf.predict(np.full((2, 12), 1e300))
        with pytest.raises(ValueError, match="out of range"):
            MLPClassifier(n_s=5).fit(X, y, X_val=np.full((4, 12), 1e300), y_val=y[:4])
    assert np.isfinite(clf.predict_proba(X * 1e3)).all()


# ------------------------------------------------------------------ models that answer NaN


@pytest.mark.parametrize(
    ("edit", "std", "words"),
    [
        (lambda n: n.params()["dense1.W"].__setitem__((0, 0), np.nan), None, "'net/dense1.W'"),
        (lambda n: n.params()["dense2.b"].__setitem__(0, np.inf), None, "'net/dense2.b'"),
        (None, np.zeros(12), "standard deviation <= 0"),
        (None, np.r_[np.ones(11), -1.0], "standard deviation <= 0"),
    ],
)
def test_a_model_that_would_answer_nan_is_refused_when_loaded(tmp_path, image, edit, std, words):
    path = _image_model(tmp_path / "m", edit, std)
    with pytest.raises(ModelFileError, match=words.replace("(", r"\(")):
        load_network(path)
    _one_error(_cli("predict", str(path), str(image), "--json"), words)


def test_a_negative_running_variance_is_refused(tmp_path):
    net = Network.build(12, [5], 3, rng=np.random.default_rng(0), batch_norm=True)
    name = next(k for k in net.buffers() if k.endswith("running_var"))
    net.buffers()[name][0] = -1.0
    save_network(tmp_path / "m", net, np.zeros(12), np.ones(12), ("a", "b", "c"))
    with pytest.raises(ModelFileError, match="negative variance"):
        load_network(tmp_path / "m")


def test_predict_json_never_prints_nan(tmp_path, image):
    """Weights too large for float32: the outputs overflow. It printed ``NaN`` (invalid
    JSON) and class "a"; now one error line, and good models print strict JSON."""

    def huge(net):
        for v in net.params().values():
            v[...] = 1e30

    r = _cli("predict", str(_image_model(tmp_path / "huge", huge)), str(image), "--json")
    _one_error(r, "out of range: the model's outputs are not finite numbers for 1 of 1 rows")
    assert "NaN" not in r.output
    r = _cli("predict", str(_image_model(tmp_path / "ok")), str(image), "--json")
    assert r.exit_code == 0, r.output
    (row,) = _strict_json(r.output)
    assert row["class"] in ("a", "b", "c") and 0 <= row["probability"] <= 1


# ------------------------------------------------------------------ warnings, threads


def test_whitening_overflow_is_an_error_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ConfigError, match="cannot whiten"):
            fit_zca(np.full((10, 4), 1e200) * np.arange(1, 11)[:, None], 0.1)


def test_threads_are_at_most_the_usable_cores():
    assert check_threads(2, cores=2) == 2 and check_threads(np.int64(1), cores=2) == 1
    for bad in (0, 3, 256, True, 1.0, "2"):
        with pytest.raises(ConfigError, match=r"threads \(BLAS threads\) must be an integer in"):
            check_threads(bad, cores=2)
    assert usable_cores() == len(os.sched_getaffinity(0))
    assert check_threads(usable_cores()) == usable_cores()
    with pytest.raises(ConfigError, match=f"in 1..{usable_cores()}, the cores"):
        check_threads(usable_cores() + 1)
