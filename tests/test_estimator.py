"""MLPClassifier: scikit-learn's estimator checks, its parameters, and its use without sklearn."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_raw
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlplab.config import Config
from mlplab.data import column_stats, standardize
from mlplab.errors import ConfigError
from mlplab.train.estimator import NOT_PARAMETERS, InvalidInput, MLPClassifier

#: Checks MLPClassifier fails on purpose; each reason is why it may.
EXPECTED_FAILED_CHECKS = {
    "check_estimators_unfitted": (
        "predict before fit raises mlplab's NotFittedError (a ConfigError, ValueError and "
        "AttributeError, the bases of sklearn's); raising sklearn.exceptions.NotFittedError "
        "itself would make scikit-learn a dependency of the library"
    ),
    "check_supervised_y_2d": (
        "a column vector y of shape (n, 1) is refused with InvalidInput instead of being "
        "flattened under sklearn's DataConversionWarning, a class mlplab cannot raise "
        "without depending on scikit-learn"
    ),
}


with warnings.catch_warnings():  # not a BaseEstimator subclass on purpose: sklearn is optional
    warnings.filterwarnings("ignore", "Estimator MLPClassifier does not inherit", UserWarning)
    _ALL_CHECKS = parametrize_with_checks(
        [MLPClassifier()], expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS
    )


@pytest.mark.slow
@_ALL_CHECKS
def test_sklearn_check(estimator, check):
    check(estimator)


def _data(n_train: int = 500, k: int = 3):
    raw = synthetic_raw(n_train=n_train, n_test=200, k=k)
    names = np.array(["a", "b", "c", "d"][:k])
    return (
        raw.x_train.astype(float),
        names[raw.y_train],
        raw.x_test.astype(float),
        names[raw.y_test],
    )


def test_fit_predict_score_and_learned_attributes():
    X, y, Xt, yt = _data()
    clf = MLPClassifier(hidden=[16], lam=0.001, batch_size=50, n_s=40, cycles=2)
    assert not hasattr(clf, "network_") and clf.get_params()["hidden"] == [16]
    assert clf.fit(X, y) is clf
    assert list(clf.classes_) == ["a", "b", "c"] and clf.n_features_in_ == 3072
    assert clf.n_updates_ == 2 * 40 * 2 and clf.history_[-1]["step"] == 160
    proba = clf.predict_proba(Xt)
    assert proba.shape == (200, 3) and np.allclose(proba.sum(1), 1)
    assert clf.score(Xt, yt) > 0.9
    assert clf.get_params()["hidden"] == [16]  # fit leaves the parameters as passed


def test_inputs_are_standardised_by_the_one_function():
    X, y, Xt, _ = _data()
    clf = MLPClassifier(hidden=[8], batch_size=50, n_s=10).fit(X, y)
    mean, std = column_stats(X)
    np.testing.assert_array_equal(clf.mean_, X.mean(axis=0))
    np.testing.assert_array_equal(clf.std_, X.std(axis=0))  # no constant column here
    xs = standardize(Xt, mean, std, np.float64, scale=1.0).astype(np.float32)
    np.testing.assert_array_equal(clf.predict_proba(Xt), clf.network_.predict_proba(xs))
    raw = MLPClassifier(hidden=[8], batch_size=50, n_s=10, standardize=False).fit(X, y)
    assert not raw.mean_.any() and (raw.std_ == 1).all()


def test_parameters_are_the_config_fields_with_their_defaults():
    sig = inspect.signature(MLPClassifier.__init__).parameters
    own = {"standardize", "progress", "batch_size", "image_shape"}
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    defaults["hidden"] = tuple(Config().hidden)
    defaults["layers"] = defaults["options"] = None  # (immutable defaults: [] and {} in fit)
    for name, p in sig.items():
        if name in ("self", *own):
            continue
        assert p.kind is p.KEYWORD_ONLY and p.default == defaults[name], name
    exposed = set(sig) - {"self"} - own
    left_out = set(defaults) - exposed - {"batch_size"}
    assert left_out == set(NOT_PARAMETERS)  # a new Config field must be exposed or listed
    documented = re.findall(r"^    ([\w, ]+) : ", MLPClassifier.__doc__, re.MULTILINE)
    assert {n for line in documented for n in line.split(", ")} >= exposed | own


def test_unknown_parameters_are_refused():
    with pytest.raises(TypeError, match="bogus"):
        MLPClassifier(bogus=1)
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        MLPClassifier().set_params(bogus=1)
    X, y, _, _ = _data(n_train=100)
    with pytest.raises(ConfigError, match="optimizer"):
        MLPClassifier(optimizer="lbfgs").fit(X, y)  # values are checked by fit
    for hidden in ("50", 50):
        with pytest.raises(ConfigError, match="hidden must be a sequence"):
            MLPClassifier(hidden=hidden).fit(X, y)


def test_batch_size_default_and_explicit():
    X, y, _, _ = _data(n_train=30)
    clf = MLPClassifier(hidden=[4], n_s=5).fit(X, y)  # None: all 30 samples per update
    assert clf.n_updates_ == 10
    with pytest.raises(ConfigError, match="larger than the training split"):
        MLPClassifier(hidden=[4], n_s=5, batch_size=50).fit(X, y)


def test_bad_labels():
    X, y, _, _ = _data(n_train=100)
    with pytest.raises(InvalidInput, match="Unknown label type"):
        MLPClassifier().fit(X, np.linspace(0, 1, 100))
    with pytest.raises(InvalidInput, match="not seen in fit"):
        MLPClassifier(n_s=5).fit(X[:50], y[:50], X[50:], np.full(50, "z"))


@pytest.mark.slow
def test_sklearn_tools_use_it():
    X, y, Xt, yt = _data(n_train=300)
    params = {"hidden": [16], "batch_size": 50, "n_s": 30}
    clf = clone(MLPClassifier(**params))
    assert clf.get_params() == MLPClassifier(**params).get_params()
    assert repr(clf) == "MLPClassifier(batch_size=50, hidden=[16], n_s=30)"
    search = GridSearchCV(MLPClassifier(**params), {"lam": [0.0, 0.01]}, cv=2).fit(X, y)
    assert search.best_params_["lam"] in (0.0, 0.01) and search.score(Xt, yt) > 0.9
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(**params)).fit(X, y)
    assert pipe.score(Xt, yt) > 0.9


def test_library_works_without_sklearn():
    """Importing, fitting and the parameter protocol never import scikit-learn."""
    code = """
import sys
sys.modules["sklearn"] = None  # any import of sklearn now fails
import numpy as np
from mlplab.train.estimator import MLPClassifier
rng = np.random.default_rng(0)
X = rng.standard_normal((60, 4)); y = (X[:, 0] > 0).astype(int)
clf = MLPClassifier(hidden=[8], n_s=100).set_params(lam=0.001).fit(X, y)
assert clf.get_params()["lam"] == 0.001 and clf.score(X, y) > 0.9
print("ok", [m for m in sys.modules if m.startswith("sklearn")])
"""
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok ['sklearn']"  # only the blocked entry itself


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("standardize", 1),
        ("standardize", "no"),
        ("standardize", None),
        ("progress", "yes"),
        ("batch_size", True),
        ("batch_size", 5.0),
        ("n_s", 5.0),
        ("n_s", "5"),
        ("cycles", np.float64(2.0)),
        ("lam", "0.1"),
        ("seed", True),
        ("flip", 1),
        ("hidden", (5.9,)),
        ("hidden", (True,)),
        ("image_shape", (2, 2, 3.0)),
        ("image_shape", (np.True_, 2, 3)),
        ("image_shape", "2,2,3"),
    ],
)
def test_parameters_are_type_checked_strictly(name, value):
    """A float is not silently an int (5.9 -> 5), nor a bool an int (True -> 1), nor a
    truthy string a bool."""
    X = np.random.default_rng(0).random((40, 12))
    with pytest.raises(ConfigError, match=re.escape(name)):
        MLPClassifier(**{"n_s": 5, name: value}).fit(X, np.arange(40) % 2)


@pytest.mark.slow
def test_numpy_scalars_work_as_in_a_search_over_arrays():
    """ParameterGrid over NumPy arrays passes np.True_, np.int64, np.float64."""
    X, y, Xt, yt = _data(n_train=300)
    grid = {
        "batch_norm": np.array([True, False]),
        "n_s": np.array([20, 30]),
        "lam": np.array([0.0, 1e-3]),
        "standardize": np.array([True]),
    }
    search = GridSearchCV(MLPClassifier(hidden=[8], batch_size=50), grid, cv=2).fit(X, y)
    assert search.score(Xt, yt) > 0.8
    clf = MLPClassifier(hidden=np.array([8]), image_shape=np.array([32, 32, 3]), n_s=20)
    assert clf.fit(X, y).score(Xt, yt) > 0.8
