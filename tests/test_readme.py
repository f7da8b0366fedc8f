"""README.md is the front page: it opens with the two commands, fits on a page, links into
the documentation, and its Python example runs and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_doc_blocks import FRONT_COMMANDS, blocks

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_it_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    opening = "# mlplab\n\n```bash\n{}```\n\n```bash\n{}```\n".format(*FRONT_COMMANDS)
    assert text.startswith(opening)
    # .ci/run runs the second command as it is written here (pip quieted with -q)
    ci = (
        (REPO / ".ci" / "run")
        .read_text(encoding="utf-8")
        .replace("pip install -q ", "pip install ")
    )
    assert FRONT_COMMANDS[1].strip() in ci


def test_it_fits_on_a_page():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_its_links_lead_somewhere():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing


@pytest.mark.slow  # a few seconds of training
def test_the_python_example_runs(capsys, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    (code,) = [b for b in blocks("README.md") if b.lang == "python"]
    assert code.marker == "run-by" and code.arg.startswith("tests/test_readme.py")
    assert "import mlplab" in code.text and "mlplab.MLPClassifier" in code.text
    monkeypatch.chdir(tmp_path)
    exec(compile(code.text, code.where, "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"test accuracy 0\.9[5-9]\d", out), out
    assert "64 -> dense 64 -> gelu -> dense 10" in out
