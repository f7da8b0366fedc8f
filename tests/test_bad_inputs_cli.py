"""Bad input at the command line itself (through the `mlplab` entry point, as a user types it):
click's usage errors, impossible numbers, unreadable recipes, a network too large to build.
Each gives one `error:` line and exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    (["train", "--bogus"], "No such option '--bogus'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["search", "--workers", "0"], "Invalid value for '--workers'"),
    (["gradcheck", "--h", "0"], "'--h': 0.0 is not a finite number > 0 and < 1"),
    (["gradcheck", "--h", "nan"], "'--h': nan is not a finite number"),
    (["gradcheck", "--lam", "nan"], "'--lam': nan is not a finite number >= 0"),
    (["gradcheck", "--lam", "-1"], "'--lam': -1.0 is not a finite number >= 0"),
    (["gradcheck", "--drop-prob", "1"], "'--drop-prob': 1.0 is not a finite number"),
    (["lr-range", "--epochs", "inf"], "'--epochs': inf is not a finite number > 0"),
    (["lr-range", "--min", "nan"], "'--min': nan is not a finite number > 0"),
    (["train", "--recipe", "assignment2/ex3", "--set", "hidden=10000000"], "in [1, 1e+06]"),
    (["train", "--recipe", "assignment2/ex3", "--set", "hidden=100000,100000"], "at most 1e+09"),
    (["search", "--study", "x;y"], "study name 'x;y' is not allowed"),
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = "from mlplab.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_one_error_line(args: list[str], message: str, tmp_path: Path) -> None:
    p = _run(args, tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("suffix", [".toml", ".space"])
def test_recipe_or_space_file_not_utf8(suffix: str, tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('base = "assignment2/search"\n')
    bad = tmp_path / f"r{suffix}"
    bad.write_bytes(b'description = "\xff\xfe caf\xe9"\n')
    p = _run(["search", "--recipe", str(recipe), "--out", str(tmp_path / "o")], tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read "), p.stderr
    assert "utf-8" in lines[0]


def test_no_arguments_prints_the_help(tmp_path: Path) -> None:
    p = _run([], tmp_path)
    assert p.returncode == 0 and p.stdout.startswith("Usage: ") and "train" in p.stdout


def test_error_about_a_name_with_a_newline_is_one_line(tmp_path: Path) -> None:
    odd = tmp_path / "a\nb"
    odd.write_text("a file, not a directory")
    p = _run(["train", "--recipe", "assignment2/ex3", "--out", str(odd)], tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "a\\nb" in p.stderr
