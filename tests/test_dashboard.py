"""optuna-dashboard shows the study of an ``mlplab search``
(docs/how-to/search-on-several-machines.md).

A small search (tiny trainings on a synthetic CIFAR-shaped ``.npz``) writes its study to a
SQLite file, and to the PostgreSQL server of ``MLPLAB_TEST_POSTGRES_URL`` when there is one
(``bash .ci/start-postgres.sh`` starts one), the storage several machines share; then
optuna-dashboard's WSGI application, the one ``optuna-dashboard URL`` serves, is called
in-process through its JSON API: the study is listed under its name, and its trials carry
the values, parameters and stages that the search stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import synthetic_raw

if os.environ.get("CI") != "true":  # in CI a missing dashboard is a failure, not a skip
    pytest.importorskip("optuna_dashboard")
import optuna
import optuna_dashboard

from mlplab.cli import cli

#: tiny trainings: 300 training and 100 validation images, 8 hidden units, cycles of 20 updates
TINY = ["--set", "split=300/100", "--set", "hidden=8", "--set", "n_s_k=0", "--set", "n_s=10"]


def get_json(app: Any, path: str) -> dict[str, Any]:
    """``GET path`` from the WSGI application ``app``; the decoded JSON body."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="GET", PATH_INFO=path, QUERY_STRING="")
    status: list[str] = []

    def start_response(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(code)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    assert status == ["200 OK"], (path, status, body[:500])
    return json.loads(body)


def storage_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/study.db"
    url = os.environ.get("MLPLAB_TEST_POSTGRES_URL")
    if not url:  # tests/test_search.py fails in CI without it; one such failure is enough
        pytest.skip("MLPLAB_TEST_POSTGRES_URL not set (bash .ci/start-postgres.sh gives one)")
    return url


@pytest.mark.slow  # about 10 s: optuna-dashboard's import, 10 tiny trainings, the report
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_dashboard_shows_the_study_of_a_search(kind: str, tmp_path: Path) -> None:
    url = storage_url(kind, tmp_path)
    study_name = f"a2-lambda-{uuid.uuid4().hex[:8]}"  # a shared server keeps other studies
    try:
        check_dashboard(url, study_name, tmp_path)
    finally:
        with contextlib.suppress(KeyError):  # the study may never have been created
            optuna.delete_study(study_name=study_name, storage=url)


def check_dashboard(url: str, study_name: str, tmp_path: Path) -> None:
    raw = synthetic_raw(n_train=500, n_test=100, noise=150.0)  # noisy: the trials differ
    data = tmp_path / "tiny.npz"
    np.savez(data, x=raw.x_train, y=raw.y_train, x_test=raw.x_test, y_test=raw.y_test)
    args = ["search", "--recipe", "assignment2/search", "--data", str(data), *TINY]
    args += ["--param", "lam=log:1e-4:1", "--trials", "4", "--fine-trials", "2", "--quiet"]
    args += ["--storage", url, "--study", study_name, "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output

    study = optuna.load_study(study_name=study_name, storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 + 2

    app = optuna_dashboard.wsgi(url)
    listed = get_json(app, "/api/studies")["study_summaries"]
    (summary,) = [s for s in listed if s["study_name"] == study_name]
    assert summary["directions"] == ["maximize"]  # the score is a validation accuracy

    detail = get_json(app, f"/api/studies/{summary['study_id']}")
    assert detail["name"] == study_name
    shown = {t["number"]: t for t in detail["trials"]}
    assert sorted(shown) == [t.number for t in study.trials]
    for trial in done:
        row = shown[trial.number]
        assert row["state"] == "Complete"
        assert row["values"] == [trial.value]  # the trial's validation accuracy
        params = {p["name"]: float(p["param_external_value"]) for p in row["params"]}
        assert params == pytest.approx({"lam": trial.params["lam"]}, rel=1e-12)
        attrs = {a["key"]: a["value"] for a in row["user_attrs"]}
        assert attrs["stage"] == trial.user_attrs["stage"]
        assert "host" in attrs["owner"]  # which machine ran it
    stages = [t.user_attrs["stage"] for t in done]
    assert stages.count("coarse") == 4 and stages.count("fine") == 2
    assert len({t.value for t in done}) > 1  # the values are the trials' own, not one constant
    assert [t["number"] for t in detail["best_trials"]] == [study.best_trial.number]
    assert "lam" in [p["name"] for p in detail["union_search_space"]]
