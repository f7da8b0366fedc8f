"""Every shipped recipe loads and validates (a bad field in a new recipe fails here)."""

from __future__ import annotations

import pytest

from mlplab.config import beside_recipe, config_from_dict, load_recipe, recipe_names
from mlplab.search.space import load_spec


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_loads(name):
    cfg = load_recipe(name)
    assert config_from_dict(cfg.to_dict()) == cfg  # what run.json stores reads back the same
    assert cfg.total_updates(45_000) >= 1


@pytest.mark.parametrize("name", [n for n in recipe_names() if beside_recipe(n, ".space")])
def test_every_shipped_search_space_loads(name):
    """A shipped space file parses, names fields of its recipe, and its ``final`` recipe (what
    ``mlplab train --from-study`` trains) exists."""
    spec = load_spec(name)
    cfg = load_recipe(name)
    assert spec.params and all(hasattr(cfg, p.name) for p in spec.params)
    assert spec.final in recipe_names()
    load_recipe(spec.final)
