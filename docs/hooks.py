"""MkDocs hook: tables generated from the code, so the reference cannot drift from it.

A page asks for a table with a marker on a line of its own; ``on_page_markdown`` replaces it
before the page is rendered:

``<!-- mlplab:recipe-fields -->``
    every field of :class:`mlplab.config.Config`: type, default and the comment beside it,
    grouped by the section comments of the class;
``<!-- mlplab:components -->``
    every registered optimiser, schedule, augmentation and layer kind with its options (what
    ``mlplab recipes --options`` prints);
``<!-- mlplab:recipes -->``
    the shipped recipes and their descriptions (what ``mlplab recipes`` prints);
``<!-- mlplab:public-api -->``
    one mkdocstrings block per name of ``import mlplab`` (``mlplab._PUBLIC``), so the page
    follows the package when a name moves to another module.

An unknown ``mlplab:`` marker is an error, so a typo fails the build.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import tokenize
from pathlib import Path

MARKER = re.compile(r"^<!-- mlplab:([a-z-]+) -->$", re.MULTILINE)


def _cell(text: object) -> str:
    """Text made safe for one cell of a Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: object) -> str:
    return f"`{text}`" if str(text) != "" else ""


def recipe_fields() -> str:
    """The fields of ``Config``, one table per section of the class."""
    from mlplab import config

    source = inspect.getsource(config.Config)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    tree = ast.parse(source).body[0]
    assert isinstance(tree, ast.ClassDef)
    defaults = {f.name: f for f in dataclasses.fields(config.Config)}
    out: list[str] = []
    for node in tree.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        line = node.lineno
        above = lines[line - 2].strip() if line >= 2 else ""
        if above.startswith("#"):  # a section comment opens a new table
            out += ["", f"**{above.lstrip('#').strip()}**", ""]
            out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        elif not out:
            out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        f = defaults[name]
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:  # pragma: no cover - every field has a default
            default = ""
        kind = ast.unparse(node.annotation)
        meaning = comments.get(line, "")
        out.append(f"| `{name}` | `{kind}` | {_code(default)} | {_cell(meaning)} |")
    return "\n".join(out) + "\n"


def components() -> str:
    """Every registered component and its declared options."""
    from mlplab.train.build import component_options

    out = ["| component | option | type | default | valid values |", "|---|---|---|---|---|"]
    for owner, name, opt in component_options():
        if not name:
            out.append(f"| {owner} | (no options) | | | |")
            continue
        default = str(opt.default).lower() if opt.kind is bool else f"{opt.default:g}"
        out.append(
            f"| {owner} | `{name}` | {opt.kind.__name__} | `{default}` | {_cell(opt.describe())} |"
        )
    return "\n".join(out) + "\n"


def recipes() -> str:
    """The shipped recipes and their descriptions."""
    from mlplab.config import load_recipe, recipe_names

    out = ["| recipe | description |", "|---|---|"]
    for name in recipe_names():
        out.append(f"| `{name}` | {_cell(load_recipe(name).description)} |")
    return "\n".join(out) + "\n"


def _documented_elsewhere(docs_dir: Path) -> set[str]:
    """Identifiers rendered by the other API pages (``::: name`` lines)."""
    found: set[str] = set()
    for page in sorted((docs_dir / "reference" / "api").glob("*.md")):
        if page.name != "index.md":
            found |= set(re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.M))
    return found


def _canonical(module: str, attr: str) -> tuple[str, str, bool]:
    """``(module, full name, is_code)`` of where a public object is defined: an alias such as
    ``mlplab.gradcheck.gradcheck`` resolves to ``mlplab.gradcheck.check.gradcheck``; a
    registry (a dict) stays where the package names it."""
    import importlib

    obj = getattr(importlib.import_module(module), attr)
    where = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if isinstance(where, str) and isinstance(qual, str) and where.startswith("mlplab"):
        return where, f"{where}.{qual}", True
    return module, f"{module}.{attr}", False


def public_api(docs_dir: Path) -> str:
    """A table of the package's public names (``mlplab._PUBLIC``), linked to where each is
    documented, then the documentation of those that no module page renders."""
    import mlplab

    elsewhere = _documented_elsewhere(docs_dir)
    table = ["| name | defined in |", "|---|---|"]
    blocks: list[str] = []
    for public, (module, attr) in mlplab._PUBLIC.items():
        home, where, is_code = _canonical(module, attr)
        if where in elsewhere or home in elsewhere:
            target = where if is_code else home  # a registry: its module's page
            table.append(f"| `mlplab.{public}` | [`{where}`][{target}] |")
            continue
        table.append(f"| `mlplab.{public}` | [`{where}`][{where}] |")
        blocks += [f"::: {where}", "    options:", "      heading_level: 2", ""]
    return "\n".join([*table, "", *blocks])


GENERATORS = {
    "recipe-fields": recipe_fields,
    "components": components,
    "recipes": recipes,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "public-api":
            return public_api(Path(config["docs_dir"]))
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown marker mlplab:{name}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)
