"""The project's text speaks of the project, never of how it was developed.

A measurement names its command, its host and its version or date; a docstring says what
the code does and why. Words that date things by a stage of the project's development
("session 4", "the previous implementation", "issue #13", "used to crash", "now that ...")
mean nothing to a reader of the code or the documentation. This test scans every text file
of the project (tracked, or new and not ignored) for them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = (
    "README.md",
    "docs/",
    "src/",
    "tests/",
    "benchmarks/",
    ".ci/",
    "pyproject.toml",
    "mkdocs.yml",
)
BINARY = {".png", ".jpg", ".jpeg", ".npz", ".npy", ".onnx", ".gz", ".db", ".pkl", ".ico"}

#: what dates a text by the project's development, and why each is refused
PHRASES = {
    r"\bsessions?\b": "a work session of the project (session 3, across sessions)",
    r"\bthis turn\b|\bturn \d+\b": "a turn of a conversation",
    r"\btoday\b|\byesterday\b|\bthis morning\b": "a day of development",
    r"\bwe tried\b|\bI (?:have|had|tried|measured|ran|did|chose|think)\b": "who did what",
    r"\b(?:another|other) helpers?\b|\bhelpers? (?:wrote|writes|did|added)\b": "who did what",
    r"\bthe lead\b|\bLLM\b": "who did what",
    r"\bround \d+\b|\bstage \d+\b|\bmilestone\b|\bsprint\b": "a stage of work",
    r"\b(?:issue|ticket|PR|pull request) ?#?\d+|\(#\d+\)": "a tracker issue instead of the reason",
    r"\bthe issue(?:'s)?\b": "a tracker issue instead of the reason itself",
    r"\bprevious (?:implementation|code|session)\b|\bfirst version of\b": "an earlier state",
    r"\bearlier (?:session|implementation|code|build)s?\b|\blater stage\b": "an earlier state",
    r"\b(?:before|after) the (?:change|rewrite|rebuild|refactor)s?\b": "an earlier state",
    r"\bnow that\b|\bno longer\b": "an earlier state",
    r"(?<!\bis )(?<!\bare )(?<!\bbe )(?<!\bbeen )(?<!\bwas )\bused to\b": "an earlier state",
}
PATTERN = re.compile("|".join(f"(?:{p})" for p in PHRASES), re.IGNORECASE)

#: (file, text on the line) -> why that use of a listed word is not about development
ALLOWED = {
    ("tests/conftest.py", 'scope="session"'): "pytest's fixture scope, not a work session",
}
#: this file names the phrases it refuses
SELF = "tests/test_project_words.py"


def project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return sorted(
        f
        for f in set(out)
        if f.startswith(ROOTS)
        and f != SELF
        and Path(f).suffix.lower() not in BINARY
        and (REPO / f).is_file()
    )


def hits(path: str) -> list[str]:
    try:
        text = (REPO / path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in PATTERN.finditer(line):
            if any(path == f and allowed in line for f, allowed in ALLOWED):
                continue
            found.append(f"{path}:{n}: {m.group(0)!r} in: {line.strip()}")
    return found


def test_the_scan_sees_the_project():
    files = project_files()
    assert "README.md" in files and "pyproject.toml" in files
    assert any(f.startswith("src/mlplab/") for f in files)
    assert any(f.startswith("docs/") for f in files)


@pytest.mark.parametrize(
    "line",
    [
        "| search wall time (40 trials; session 3) | 399 s |",
        "identical to an earlier session's, measured with 2 threads",
        "the small net across sessions), and",
        "the previous implementation published",
        "(24.5 % -> 11 % accuracy in issue #13)",
        "writes stay atomic (#13).",
        "a crafted file of 200,000 nested tuples used to crash the process",
        "takes 1,162 MB now that it frees them first",
        "I have not measured it on such a host.",
    ],
)
def test_the_phrases_catch_what_they_should(line):
    assert PATTERN.search(line), line


@pytest.mark.parametrize(
    "line",
    [
        "a lock is used to guard the study",
        "the helper thread gathers the next batch",
        "the coarse stage samples 20 values",
        "runtime = ort.InferenceSession(path)",
        "an earlier run continues bit-identically",
    ],
)
def test_the_phrases_leave_ordinary_text_alone(line):
    assert not PATTERN.search(line), line


def test_no_file_speaks_of_how_the_project_was_developed():
    found = [h for f in project_files() for h in hits(f)]
    assert not found, "\n".join(found)
