"""A small report model rendered as Markdown, and that Markdown as one self-contained HTML page.

A :class:`Document` is a title, an optional banner and sections of blocks
(paragraphs, tables, figures, links). :func:`render_markdown` turns it into the
text of ``report.md``; :func:`render_html` renders *that same Markdown* with
markdown-it-py, so the two outputs cannot drift apart. Figures are PNG files in
the output directory: Markdown links them, the HTML page embeds them as
``data:`` URIs so that ``index.html`` opens anywhere without a server or its
neighbours.

Why a Markdown library instead of hand-written HTML: report text carries
strings nobody at mlplab chose (data folder names, recipe values), and a
regex renderer that builds ``<a href>`` after escaping is one quote away from
script injection (a run or class name holding ``<script>``). markdown-it-py runs with
raw HTML disabled, so
``<img onerror=...>`` in any block is shown as text, escapes every text node
and attribute value itself, percent-encodes link targets and refuses
``javascript:``/``data:`` links. What this module still has to do is keep
user text from changing the Markdown *structure*: line breaks become spaces
(no new blocks) and pipes in table cells are escaped (no extra columns).

``report.md`` itself is read by other renderers too (GitHub's shows raw HTML and
``$...$`` as math), so every piece of text is normalised before it is written
(:func:`safe_inline`): parsed as inline Markdown, then written back with what it meant as
markup (bold, emphasis, code, links, images) and everything else escaped: ``<script>`` is
``\\<script\\>`` and ``$x$`` is ``\\$x\\$``. The HTML page renders that same text, so
both show it literally.
"""

from __future__ import annotations

import base64
import functools
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from mlplab.fileio import atomic_write_bytes


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass
class Figure:
    path: str  # relative to the output directory
    caption: str = ""


@dataclass
class Text:
    # One paragraph of CommonMark inline text (`code`, **bold**, [label](link)); raw
    # HTML is shown as text, line breaks become spaces. Pass strings that must appear
    # literally (a folder name, say) through md_escape().
    text: str


@dataclass
class Section:
    title: str
    blocks: list[Table | Figure | Text] = field(default_factory=list)
    level: int = 2


@dataclass
class Document:
    title: str
    banner: str = ""
    sections: list[Section] = field(default_factory=list)

    def write(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``report.md`` and ``index.html`` into ``out_dir``; return their paths."""
        out = Path(out_dir)
        md, page = out / "report.md", out / "index.html"
        atomic_write_bytes(md, render_markdown(self).encode())
        atomic_write_bytes(page, render_html(self, out).encode())
        return md, page


# -- Markdown -------------------------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|[\r\n\v\f\x85\u2028\u2029]")
_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&\"'=:])")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/-]+")


def _one_line(text: object) -> str:
    """``text`` with every line break replaced by a space.

    Markdown blocks start at line starts, so a string without line breaks
    placed mid-line cannot open a heading, list, table or code block.
    """
    return _LINE_BREAK.sub(" ", str(text))


def md_escape(text: object) -> str:
    """``text`` as literal Markdown: punctuation backslash-escaped, line breaks as spaces.

    For strings that must not be read as markup at all, e.g. a data folder
    named ``[x](y)``: it then shows as typed instead of becoming a link.
    """
    return _MD_PUNCT.sub(r"\\\1", _one_line(text))


#: Text characters that could start markup somewhere (HTML, math, code, emphasis, links,
#: entities, headings, strikethrough); ``_`` only where it is not inside a word.
_TEXT_SPECIAL = re.compile(r"[\\`*\[\]<>&$~#]|(?<![^\W_])_|_(?![^\W_])")
_BLOCK_START = re.compile(r"^(\d{0,9})([.)](?=\s|$)|[-+=](?=[-=\s]|$))")  # a list, a rule


def _text(content: str) -> str:
    return _TEXT_SPECIAL.sub(lambda m: "\\" + m.group(0), content)


def _code(content: str) -> str:
    """A code span that holds ``content`` exactly, whatever backticks it holds."""
    fence = "`" * (max(map(len, re.findall("`+", content)), default=0) + 1)
    pad = " " if content[:1] in ("`", " ") or content[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{content}{pad}{fence}"


def _destination(href: str) -> str:
    if _PLAIN_PATH.fullmatch(href):
        return href
    return "<" + re.sub(r"([\\<>])", r"\\\1", _one_line(href)) + ">"


def safe_inline(text: object, *, cell: bool = False) -> str:
    """``text`` (inline Markdown) on one line, with its bold, emphasis, code spans, links
    and images kept and every other character that a Markdown renderer could read as markup
    (raw HTML, ``$`` math, entities, a stray backtick or bracket) backslash-escaped; a table
    ``cell`` also escapes every ``|`` (GFM reads ``\\|`` as a pipe, in code spans too)."""
    blocks = _markdown_it().parseInline(_one_line(text))
    out: list[str] = []
    hrefs: list[str] = []
    for t in [c for b in blocks for c in b.children or ()]:
        if t.type == "text":
            out.append(_text(t.content))
        elif t.type == "code_inline":
            out.append(_code(t.content))
        elif t.type in ("strong_open", "strong_close"):
            out.append("**")
        elif t.type in ("em_open", "em_close"):
            out.append("*")
        elif t.type == "link_open":
            hrefs.append(str(t.attrGet("href") or ""))
            out.append("[")
        elif t.type == "link_close":
            out.append(f"]({_destination(hrefs.pop())})")
        elif t.type == "image":
            src = _destination(str(t.attrGet("src") or ""))
            out.append(f"![{_text(t.content)}]({src})")
        elif t.type in ("softbreak", "hardbreak"):
            out.append(" ")
        else:  # anything else is shown as its text
            out.append(_text(t.content))
    line = "".join(out)
    return line.replace("|", "\\|") if cell else line


def _paragraph(text: object) -> str:
    """:func:`safe_inline` for text at the start of a line: it cannot open a list or a
    heading either."""
    line = safe_inline(text).lstrip()
    return _BLOCK_START.sub(r"\1\\\2", line, count=1)


def _cell(text: object) -> str:
    """A table cell: inline Markdown kept (bold, `code`, links), confined to its cell and
    without raw HTML or math (:func:`safe_inline`)."""
    return safe_inline(text, cell=True)


def _image(caption: str, path: str) -> str:
    alt = re.sub(r"([\\\[\]])", r"\\\1", _one_line(caption))
    if not _PLAIN_PATH.fullmatch(path):  # spaces, parentheses, ...: a <...> destination
        path = "<" + re.sub(r"([\\<>])", r"\\\1", _one_line(path)) + ">"
    return f"![{alt}]({path})"


def markdown_table(table: Table) -> str:
    """``table`` as a GFM table (header, ``|---|`` rule, rows), without its caption: the one
    table writer of every Markdown file mlplab writes."""
    lines = ["| " + " | ".join(_cell(c) for c in table.header) + " |"]
    lines.append("|" + "---|" * len(table.header))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(doc: Document) -> str:
    """The Markdown text of ``doc`` (``report.md``; also the source of the HTML page)."""
    lines = [f"# {safe_inline(doc.title)}", ""]
    if doc.banner:
        lines += [f"> **{safe_inline(doc.banner)}**", ""]
    for s in doc.sections:
        lines += [f"{'#' * s.level} {safe_inline(s.title)}", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                lines += [_paragraph(b.text), ""]
            elif isinstance(b, Table):
                if b.caption:
                    lines += [f"*{safe_inline(b.caption)}*", ""]
                lines += [markdown_table(b), ""]
            else:
                lines += [_image(b.caption, b.path), ""]
                if b.caption:
                    lines += [f"*{safe_inline(b.caption)}*", ""]
    return "\n".join(lines)


# -- HTML -----------------------------------------------------------------------------------


@functools.cache
def _markdown_it() -> MarkdownIt:
    """CommonMark plus GFM tables, with raw HTML off: every ``<`` in the source is text."""
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _inline(text: str) -> str:
    """One line of inline Markdown as HTML (escaped; `code`, **bold**, links rendered)."""
    return _markdown_it().renderInline(_one_line(text))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:0 auto;padding:1.2rem 1.5rem 3rem;color:#1d232a;line-height:1.5}
h1{font-size:1.8rem;margin-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #dde;
padding-bottom:.2rem}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #ccd;padding:.3rem .6rem;text-align:left}th{background:#f1f3f7}
tr:nth-child(even) td{background:#fafbfc}
img{max-width:100%;height:auto;border:1px solid #eee}
code{background:#f3f3f6;padding:0 .25rem;border-radius:3px}
blockquote{background:#fff4d6;border:1px solid #e8c770;padding:.6rem 1rem;border-radius:6px;
margin:1rem 0}blockquote p{margin:0}nav ul{columns:2}
"""

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def _plain(inline: Token) -> str:
    """The text of an inline token without its markup (for the table of contents)."""
    return "".join(c.content for c in inline.children or () if c.type in ("text", "code_inline"))


def _embed_figures(doc: Document, out_dir: Path, md: MarkdownIt) -> dict[str, str]:
    """``{normalised src: data URI}`` of the document's figures.

    Only files named by a :class:`Figure` are embedded; an image written in a
    :class:`Text` stays a link and never pulls an arbitrary file into the page.
    """
    uris = {}
    for s in doc.sections:
        for b in s.blocks:
            if isinstance(b, Figure):
                data = base64.b64encode((out_dir / b.path).read_bytes()).decode()
                mime = _MIME.get(Path(b.path).suffix.lower(), "image/png")
                uris[md.normalizeLink(b.path)] = f"data:{mime};base64,{data}"
    return uris


def _nav(entries: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<li><a href="#{slug}">{html.escape(label)}</a></li>' for label, slug in entries
    )
    return f"<nav><ul>{items}</ul></nav>\n"


def render_html(doc: Document, out_dir: Path) -> str:
    """``index.html``: the Markdown of ``doc`` rendered by markdown-it-py, figures embedded.

    The token stream is adjusted before rendering (never the HTML after it):
    headings get ``id`` anchors for the table of contents, figure images get
    their ``data:`` URI. markdown-it escapes both attribute values.
    """
    md = _markdown_it()
    env: dict[str, Any] = {}
    tokens = md.parse(render_markdown(doc), env)
    uris = _embed_figures(doc, Path(out_dir), md)
    used: set[str] = set()
    nav: list[tuple[str, str]] = []
    first_section = len(tokens)
    for i, t in enumerate(tokens):
        if t.type == "heading_open":
            label = _plain(tokens[i + 1])
            slug = base = _slug(label)
            n = 1
            while slug in used:
                n += 1
                slug = f"{base}-{n}"
            used.add(slug)
            t.attrSet("id", slug)
            if t.tag != "h1":
                first_section = min(first_section, i)
            if t.tag == "h2":
                nav.append((label, slug))
        elif t.type == "inline":
            for c in t.children or ():
                if c.type == "image" and str(c.attrGet("src")) in uris:
                    c.attrSet("src", uris[str(c.attrGet("src"))])
    head = md.renderer.render(tokens[:first_section], md.options, env)
    body = md.renderer.render(tokens[first_section:], md.options, env)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(_one_line(doc.title))}</title><style>{CSS}</style></head><body>",
            head + _nav(nav) + body + "</body></html>",
        ]
    )
