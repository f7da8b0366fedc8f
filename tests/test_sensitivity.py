"""The initialisation-sensitivity study and the skip-if-done mechanism."""

from __future__ import annotations

import json

import pytest
from helpers import assert_drawn, synthetic_raw

from mlplab.config import load_recipe
from mlplab.train.sensitivity import run_sensitivity


@pytest.mark.slow
def test_sensitivity_writes_figure_table_and_reuses_runs(tmp_path):
    cfg = load_recipe(
        "assignment3/sensitivity",
        {"split": "400/100", "n_s_k": "0", "n_s": "20", "cycles": "1", "hidden": "16,16"},
    )
    raw = synthetic_raw()
    rows = run_sensitivity(cfg, tmp_path, raw, (1e-1, 1e-4), progress=False)
    assert_drawn(tmp_path / "sensitivity.png")
    table = (tmp_path / "sensitivity.md").read_text()
    assert "| 0.0001 |" in table and "with BN" in table
    assert len(rows) == 4 and json.loads((tmp_path / "sensitivity.json").read_text()) == rows
    bn_small = next(r for r in rows if r["sigma"] == 1e-4 and r["batch_norm"])
    plain_small = next(r for r in rows if r["sigma"] == 1e-4 and not r["batch_norm"])
    # tiny weights: without BN the signal vanishes, with BN it is rescaled and learning works
    assert bn_small["test_accuracy"] > plain_small["test_accuracy"] + 0.2
    mtime = (tmp_path / "sigma-0.1-bn" / "results.json").stat().st_mtime_ns
    run_sensitivity(cfg, tmp_path, raw, (1e-1, 1e-4), progress=False)
    assert (tmp_path / "sigma-0.1-bn" / "results.json").stat().st_mtime_ns == mtime
