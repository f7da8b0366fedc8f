"""Every shipped recipe loads and validates (a bad field in a new recipe fails here)."""

from __future__ import annotations

import pytest

from mlplab.config import config_from_dict, load_recipe, recipe_names


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_loads(name):
    cfg = load_recipe(name)
    assert config_from_dict(cfg.to_dict()) == cfg  # what run.json stores reads back the same
    assert cfg.total_updates(45_000) >= 1
