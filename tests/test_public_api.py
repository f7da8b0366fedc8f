"""The public face: every name of ``mlplab._PUBLIC`` resolves, and ``mlplab.train`` /
``mlplab.gradcheck`` stay callable after their subpackages are imported (Python binds a
package's attribute to a subpackage as soon as any module in it is imported)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import mlplab


def test_every_public_name_resolves():
    for name in mlplab.__all__:
        assert getattr(mlplab, name) is not None, name


def test_train_and_gradcheck_are_callable_after_their_subpackages_load():
    code = """
import inspect, sys
import mlplab
mlplab.MLPClassifier                      # imports mlplab.train.estimator
from mlplab.gradcheck import compare      # imports mlplab.gradcheck
assert mlplab.train is sys.modules["mlplab.train"] and callable(mlplab.train)
assert callable(mlplab.gradcheck)
assert "recipe" in inspect.signature(mlplab.train).parameters
assert "net" in inspect.signature(mlplab.gradcheck).parameters
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_calling_the_train_package_runs_a_recipe(tmp_path, monkeypatch):
    calls = []
    import mlplab.train.run as run

    monkeypatch.setattr(run, "run_experiment", lambda cfg, out, **kw: calls.append((cfg, out)))
    mlplab.train("assignment2/ex3", out=tmp_path / "r", overrides={"lam": 0.01})
    ((cfg, out),) = calls
    assert cfg.name == "assignment2/ex3" and cfg.lam == 0.01 and out == tmp_path / "r"
    assert inspect.signature(mlplab.train) == inspect.signature(run.train)
