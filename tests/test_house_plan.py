"""The floors of the architecture page: no module imports from a floor above its own (no
exception), and no module is over 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mlplab"
#: top-level module or package -> floor (higher floors may import lower ones)
FLOORS = {
    **dict.fromkeys(["fileio", "machine", "errors", "faults", "images", "options"], 0),
    **dict.fromkeys(["kernels", "transform"], 0),
    "report.__init__": 0,
    "report.document": 0,
    "report.plots": 0,
    "nn": 1,  # networks know arrays, never files of data sets
    "data": 2,
    "optim": 3,
    "gradcheck": 3,
    "train": 4,
    "config": 4,  # a recipe names components of every floor below (train/build.py checks them)
    "search": 5,
    "reproduce": 6,
    **{p.stem: 7 for p in SRC.glob("cli*.py")},
}


def _floor(dotted: str) -> tuple[str, int] | None:
    parts = dotted.split(".")
    for n in (2, 1):
        key = ".".join(parts[:n])
        if key in FLOORS:
            return key, FLOORS[key]
    return None


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlplab."):
            yield node.module[len("mlplab.") :], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mlplab."):
                    yield a.name[len("mlplab.") :], node.lineno


def test_no_module_imports_from_a_floor_above_its_own():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        me = ".".join(path.relative_to(SRC).with_suffix("").parts)
        mine = _floor(me)
        if mine is None:  # mlplab/__init__.py
            continue
        for target, line in _imports(path):
            theirs = _floor(target)
            if theirs and theirs[1] > mine[1]:
                upward.append(f"{me}:{line} imports {target} (floor {theirs[1]} > {mine[1]})")
    assert not upward, "\n".join(upward)


def test_every_module_is_placed_and_small():
    for path in sorted(SRC.rglob("*.py")):
        me = ".".join(path.relative_to(SRC).with_suffix("").parts)
        assert me == "__init__" or _floor(me), f"{me} is on no floor of the house plan"
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 450, f"{me} has {lines} lines"


def test_the_architecture_page_names_every_module():
    """docs/explanations/architecture.md names each module in its table: as ``dir/name.py``,
    or as ``name.py`` on a line that names ``dir/`` (``train/trainer.py``, ``callbacks.py``)."""
    page = (SRC.parents[1] / "docs" / "explanations" / "architecture.md").read_text("utf-8")
    lines = page.splitlines()
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name == "__init__.py" and rel.parent.name not in ("transform", "reproduce"):
            continue
        if len(rel.parts) == 1:
            named = f"`{rel.name}`" in page or f"{rel.name}" in page
        else:
            folder = f"{rel.parent.as_posix()}/"
            named = f"{folder}{rel.name}" in page or any(
                folder in line and rel.name in line for line in lines
            )
        if not named:
            missing.append(rel.as_posix())
    assert not missing, f"modules the architecture page does not name: {missing}"
