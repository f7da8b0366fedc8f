"""Learning-rate range test: the ramp, the suggestion rule, and a run on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import synthetic_raw

from mlplab.config import load_recipe
from mlplab.data import make_splits
from mlplab.errors import ConfigError
from mlplab.optim import Ramp
from mlplab.train.lr_range import lr_range_test, suggest_bounds


def test_ramp_linear_and_exponential():
    lin, geo = Ramp(0.01, 1.0, 100), Ramp(0.01, 1.0, 100, "exp")
    assert lin(0) == pytest.approx(0.01) and lin(50) == pytest.approx(0.505)
    assert lin(100) == pytest.approx(1.0) and lin(1000) == pytest.approx(1.0)
    assert geo(50) == pytest.approx(0.1)
    with pytest.raises(ConfigError):
        Ramp(1.0, 0.1, 10)


def test_suggestion_rule_on_a_hand_made_curve():
    lrs = np.linspace(0.0, 0.9, 10)
    acc = np.array([0.10, 0.10, 0.12, 0.25, 0.38, 0.40, 0.41, 0.42, 0.30, 0.10])
    # smoothed: .100 .107 .157 .250 .343 .397 .410 .377 .273 .167 -> peak .410 at lr 0.6
    # eta_min: first >= .100 + 0.1 * .310 = .131 -> 0.2; eta_max: first >= .3945 -> 0.5
    lo, hi = suggest_bounds(lrs, acc)
    assert (lo, hi) == (pytest.approx(0.2), pytest.approx(0.5))


@pytest.mark.slow
def test_range_test_runs_and_writes_files(tmp_path):
    cfg = load_recipe("assignment2/ex3", {"split": "400/200", "hidden": "16", "batch_size": "20"})
    rng = np.random.default_rng(0)
    splits = make_splits(synthetic_raw(), cfg.split, rng)
    res = lr_range_test(
        cfg, splits, rng, tmp_path, lr_min=1e-4, lr_max=2.0, epochs=6, points=20, progress=False
    )
    assert (tmp_path / "lr_range.png").is_file()
    saved = json.loads((tmp_path / "lr_range.json").read_text())
    assert saved["suggested_eta_max"] == res["suggested_eta_max"]
    lrs = [p["lr"] for p in res["history"]]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-4)
    assert 1e-4 <= res["suggested_eta_min"] <= res["suggested_eta_max"] <= 2.0
