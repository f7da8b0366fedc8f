"""The study storage helpers of :mod:`mlplab.search.storage`, without running a search
(searches themselves are in ``test_search.py``)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mlplab.errors import MlplabError
from mlplab.search.storage import (
    ATTR_SETTINGS,
    check_study_name,
    default_study_name,
    engine_url,
    open_storage,
    open_study,
    redact,
    settings_diff,
    sqlite_path,
    sqlite_url,
)


@pytest.mark.parametrize("name", ["a", "x" * 64, "lam-2.search_1"])
def test_study_names_allowed(name):
    assert check_study_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", ".x", "x" * 65, "a b", "a/b", "a$b", "a\nb", "é"])
def test_study_names_refused(name):
    with pytest.raises(MlplabError, match="not allowed"):
        check_study_name(name)


def test_default_study_name_from_a_recipe_name():
    assert default_study_name("assignment2/search") == "assignment2-search"
    assert default_study_name("//") == "s"


def test_sqlite_url_names_exactly_the_file(tmp_path: Path):
    odd = tmp_path / "a?b%c#d" / "study.db"
    odd.parent.mkdir()
    url = sqlite_url(odd)
    assert url.startswith("sqlite:///") and sqlite_path(url) == odd


def test_sqlite_path_refuses_memory_and_missing_directories(tmp_path: Path):
    assert sqlite_path("postgresql://h/db") is None
    with pytest.raises(MlplabError, match="cannot be shared"):
        sqlite_path("sqlite:///:memory:")
    with pytest.raises(MlplabError, match="no directory"):
        sqlite_path(sqlite_url(tmp_path / "nowhere" / "s.db"))


def test_urls_hide_the_password_and_pick_psycopg3():
    assert "secret" not in redact("postgresql://u:secret@h:5432/db")
    assert engine_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert engine_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"


def test_settings_diff_names_each_changed_leaf():
    old = {"space": {"lam": [1e-5, 1e-1]}, "n": 8}
    new = {"space": {"lam": [1e-4, 1e-1]}, "n": 8, "extra": 1}
    assert settings_diff(old, new) == [
        "extra: None then, 1 now",
        "space.lam: [1e-05, 0.1] then, [0.0001, 0.1] now",
    ]
    assert settings_diff(old, old) == []


def test_a_study_with_other_settings_is_refused_unless_restarted(tmp_path: Path):
    url = sqlite_url(tmp_path / "study.db")
    storage = open_storage(url)
    try:
        study, deleted = open_study("s", storage, url, {"n": 1}, "never")
        assert deleted == "" and study.user_attrs[ATTR_SETTINGS] == {"n": 1}
        study.enqueue_trial({})
        with pytest.raises(MlplabError, match="other settings"):
            open_study("s", storage, url, {"n": 2}, "never")
        again, deleted = open_study("s", storage, url, {"n": 1}, "changed")  # same: kept
        assert deleted == "" and len(again.get_trials()) == 1
        fresh, deleted = open_study("s", storage, url, {"n": 2}, "changed")
        assert "n: 1 then, 2 now" in deleted and fresh.get_trials() == []
        assert optuna.get_all_study_names(storage) == ["s"]
    finally:
        storage.engine.dispose()
