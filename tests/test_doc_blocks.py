"""Every code block of the README and of the how-to guides runs, or says why it cannot.

A fenced block is run unless the line right above its opening fence is a marker:

``<!-- not-run: REASON -->``
    not runnable (a directory layout, a command's output, an install, a run of many
    minutes); the reason is required.
``<!-- run-by: tests/FILE.py ... -->``
    another test runs it; that file must exist and name the page.
``<!-- run-with: COMMAND: ARGS; kill: update:N -->``
    run, with ``ARGS`` appended to every ``mlplab COMMAND`` of the block (smaller settings);
    with ``kill: update:N`` the block's first command runs in a child process that is
    killed at update N (as a crash or Ctrl-C stops a run), so that the next one can resume.

``python`` blocks are executed (one namespace per page). ``bash`` and ``console`` blocks
must consist of ``mlplab ...`` commands (in a console block the lines after ``$ ``; the
other lines are output); each runs in this process through click's test runner and must
exit 0. Any other block needs a marker. The blocks of one page run in order, in one
temporary directory that holds a small world for them: ``DIR`` and ``shapes/`` (an image
folder of 3 classes of 16x16 grayscale images), ``shapes-copy/`` (the same images),
``photo.jpg`` and ``my-cat.jpg``. The README's first two blocks are the commands CI and a
new user run; ``tests/test_readme.py`` checks them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs/how-to").glob("*.md")),
]
#: the README's two opening commands: installing and running the main job, and the tests
FRONT_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/mlplab reproduce "
    "assignment2 --workers 2 --data ../shared/data/cifar10-images\n",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
    ".venv/bin/python -m pytest -q -n 2\n",
)
MARKER = re.compile(r"^<!--\s*(not-run|run-by|run-with):\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
SHELLS = {"bash", "sh", "shell", "console"}


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # not-run, run-by, run-with or None
    arg: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``page`` with the marker above each."""
    lines = (REPO / page).read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        above = MARKER.match(lines[i - 1].strip()) if i else None
        out.append(
            Block(
                page=page,
                line=i + 1,
                lang=lang,
                text="".join(line + "\n" for line in lines[i + 1 : j]),
                marker=above.group(1) if above else None,
                arg=above.group(2) if above else "",
            )
        )
        i = j + 1
    return out


def commands(block: Block) -> list[list[str]] | None:
    """The ``mlplab`` commands of a shell block as argument lists (without ``mlplab``), or
    None if it holds anything else."""
    text = block.text
    if block.lang == "console":
        kept, going = [], False
        for line in text.splitlines():
            if line.startswith("$ ") or going:
                kept.append(line[2:] if line.startswith("$ ") else line)
                going = line.rstrip().endswith("\\")
        text = "\n".join(kept)
    out = []
    for logical in re.sub(r"\\\n", " ", text).splitlines():
        try:
            words = shlex.split(logical, comments=True)
        except ValueError:
            return None
        if not words:
            continue
        if words[0] != "mlplab" or any(w in {"&&", "|", ";", ">", "<"} for w in words):
            return None
        out.append(words[1:])
    return out or None


def classify(block: Block) -> str:
    """``skip: reason``, ``python`` or ``shell``; raises AssertionError for a block that
    neither runs nor says why."""
    if block.page == "README.md" and block.text in FRONT_COMMANDS:
        return "skip: the README's opening command, checked by tests/test_readme.py"
    if block.marker == "not-run":
        assert len(block.arg) >= 10, f"{block.where}: not-run needs a reason"
        return f"skip: {block.arg}"
    if block.marker == "run-by":
        name = block.arg.split()[0] if block.arg else ""
        runner = REPO / name
        assert runner.is_file() and name.startswith("tests/"), f"{block.where}: no test {name!r}"
        assert block.page in runner.read_text(encoding="utf-8"), (
            f"{block.where}: {name} does not name {block.page}"
        )
        return f"skip: run by {name}"
    if block.lang in {"python", "py"}:
        return "python"
    if block.lang in SHELLS and commands(block) is not None:
        return "shell"
    raise AssertionError(
        f"{block.where}: a {block.lang or 'plain'} block that is neither run nor marked "
        "<!-- not-run: REASON --> right above its fence"
    )


@pytest.mark.parametrize("page", PAGES)
def test_every_block_runs_or_says_why_not(page):
    found = blocks(page)
    for block in found:
        classify(block)
        if block.marker == "run-with":
            assert classify(block) == "shell", f"{block.where}: run-with on a non-shell block"
            _options(block)


def _options(block: Block) -> tuple[dict[str, list[str]], str | None]:
    """``run-with``: the arguments appended per command, and the kill point if any."""
    extra: dict[str, list[str]] = {}
    kill = None
    for part in filter(None, (p.strip() for p in block.arg.split(";"))):
        name, _, args = part.partition(":")
        name = name.strip()
        if name == "kill":
            kill = args.strip()
            assert re.fullmatch(r"update:\d+", kill), f"{block.where}: bad kill point {kill!r}"
        else:
            extra[name] = shlex.split(args)
    return extra, kill


# -- the world the blocks run in ------------------------------------------------------------
def make_world(root: Path) -> None:
    """A small image folder (3 classes, 16x16 grayscale, 120 train + 20 test images each)
    under the names the pages use, and two photos."""
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = root / "shapes"
    yy, xx = np.mgrid[0:16, 0:16]
    pictures = {
        "circle": ((yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 30).astype(float),
        "square": ((abs(yy - 7.5) < 5) & (abs(xx - 7.5) < 5)).astype(float),
        "stripes": (xx % 4 < 2).astype(float),
    }
    for part, n in (("train", 120), ("test", 20)):
        for name, pic in pictures.items():
            folder = shapes / part / name
            folder.mkdir(parents=True)
            for i in range(n):
                a = 40 + 150 * pic + rng.normal(0, 50, pic.shape)
                Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").save(folder / f"{i}.png")
    shutil.copytree(shapes, root / "shapes-copy")
    (root / "DIR").symlink_to("shapes")
    photo = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(photo).save(root / "photo.jpg")
    Image.fromarray(photo).save(root / "my-cat.jpg")


def _run_in_process(args: list[str], where: str) -> None:
    from click.testing import CliRunner

    from mlplab.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    if result.exit_code != 0:
        detail = repr(result.exception) if result.exception else ""
        pytest.fail(
            f"{where}: mlplab {shlex.join(args)} -> {result.exit_code}\n{result.output}\n{detail}"
        )


def _run_killed(args: list[str], kill: str, where: str) -> None:
    env = {**os.environ, "MLPLAB_KILL_AT": kill}
    code = "from mlplab.cli import main; main()"
    r = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == -signal.SIGKILL, f"{where}: not killed at {kill}: {r.stderr[-2000:]}"


def run_page(page: str, tmp_path: Path, monkeypatch) -> None:
    make_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / ".cache"))
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "shapes"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": "__doc_block__"}
    for block in blocks(page):
        kind = classify(block)
        if kind == "python":
            exec(compile(block.text, block.where, "exec"), namespace)
        elif kind == "shell":
            extra, kill = _options(block) if block.marker == "run-with" else ({}, None)
            for k, args in enumerate(commands(block) or []):
                args = [*args, *extra.get(args[0], [])] if args else args
                if kill and k == 0:
                    _run_killed(args, kill, block.where)
                else:
                    _run_in_process(args, block.where)


@pytest.mark.slow  # they train networks: several seconds a page
@pytest.mark.parametrize("page", PAGES)
def test_the_blocks_of_each_page_run(page, tmp_path, monkeypatch):
    if not any(classify(b) in {"python", "shell"} for b in blocks(page)):
        pytest.skip(f"{page} has no runnable block")
    run_page(page, tmp_path, monkeypatch)
