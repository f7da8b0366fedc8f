"""The README's Library API example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_library_api_example_runs(capsys):
    pytest.importorskip("sklearn")
    section = README.read_text(encoding="utf-8").split("## Library API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert "import mlplab" in code and "mlplab.MLPClassifier" in code
    exec(compile(code, "README.md (Library API)", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"test accuracy 0\.9[5-9]\d", out), out
    assert "64 -> dense 64 -> gelu -> dense 10" in out
