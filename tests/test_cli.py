"""The command line, end to end (including one run on real CIFAR-10 images)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mlplab.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_lists_commands():
    from mlplab.cli import cli

    r = run("--help")
    assert r.exit_code == 0
    listed = r.output.split("Commands:", 1)[1].splitlines()
    names = {line.split()[0] for line in listed if line.strip()}
    assert names == set(cli.commands), names ^ set(cli.commands)


def test_gradcheck_json_every_parameter():
    r = run("gradcheck", "--hidden", "20,10", "--dims", "15", "--samples", "4", "--json")
    assert r.exit_code == 0
    rep = json.loads(r.output)
    assert [p["name"] for p in rep["parameters"]] == [
        "dense1.W",
        "dense1.b",
        "dense2.W",
        "dense2.b",
        "dense3.W",
        "dense3.b",
    ]
    assert rep["parameters"][0]["shape"] == [15, 20]
    assert rep["max_rel_error"] < 1e-6


def test_gradcheck_batchnorm_loop_method_table():
    r = run("gradcheck", "--hidden", "10,10", "--batch-norm", "--dims", "8", "--method", "loop")
    assert r.exit_code == 0
    assert "batchnorm1.gamma" in r.output and "batchnorm2.beta" in r.output


def test_unknown_recipe_is_one_line_error(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlplab.cli",
            "train",
            "--recipe",
            "nope/none",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert p.stderr.startswith("error: unknown recipe 'nope/none'")
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_train_and_evaluate_on_real_images(tmp_path, real_data_dir):
    """A short run on a subset of the real CIFAR-10 images must learn (well above 10 %)."""
    out = tmp_path / "run"
    r = run(
        "train",
        "--recipe",
        "assignment2/ex3",
        "--data",
        str(real_data_dir),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "split=5000/1000",
        "--set",
        "n_s=150",
    )
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["test_accuracy"] > 0.30
    assert res["n_train"] == 5000 and res["n_test"] == 10000 and res["updates"] == 300
    r = run("evaluate", str(out), "--data", str(real_data_dir), "--json")
    assert r.exit_code == 0
    assert json.loads(r.output.strip().splitlines()[-1])["accuracy"] == pytest.approx(
        res["test_accuracy"]
    )
