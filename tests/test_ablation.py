"""Ablation: the full recipe, each ingredient removed, and the snapshot ensemble row."""

from __future__ import annotations

import json

import pytest
from helpers import synthetic_raw

from mlplab.config import load_recipe
from mlplab.errors import ConfigError
from mlplab.train.ablation import run_ablation


@pytest.mark.slow
def test_ablation_rows_and_files(tmp_path):
    cfg = load_recipe(
        "assignment2/ex3",
        {
            "split": "400/100",
            "hidden": "16",
            "batch_size": "20",
            "n_s": "10",
            "cycles": "2",
            "snapshot_ensemble": "true",
            "drop_prob": "0.1",
            "flip": "true",
        },
    )
    rows = run_ablation(cfg, tmp_path, synthetic_raw(), progress=False)
    removed = [r["removed"] for r in rows]
    assert removed == [
        "nothing (full recipe)",
        "snapshot-ensemble",
        "dropout",
        "flips",
        "augmentation",
        "l2",
    ]
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    assert rows[0]["test_accuracy"] == full["ensemble_test_accuracy"]
    assert rows[1]["test_accuracy"] == full["test_accuracy"]
    no_drop = json.loads((tmp_path / "no-dropout" / "results.json").read_text())
    assert no_drop["config"]["drop_prob"] == 0 and no_drop["config"]["flip"] is True
    assert "| flips |" in (tmp_path / "ablation.md").read_text()
    with pytest.raises(ConfigError, match="unknown ingredients"):
        run_ablation(cfg, tmp_path, synthetic_raw(), only=["wings"], progress=False)
