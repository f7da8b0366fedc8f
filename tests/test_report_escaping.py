"""The report page cannot be made to run script by text it shows.

Every block of a :class:`Document` gets a hostile string; ``index.html`` is then
read back with a real HTML parser (``html.parser``) and must contain no element
or attribute built from it, while the ordinary markup still renders.
"""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from mlplab.report.document import (
    Document,
    Figure,
    Section,
    Table,
    Text,
    md_escape,
    render_markdown,
)

EVIL = 'a<img src=x onerror=alert(1)>[x](y"onfocus="alert(2))'
# attributes the renderer itself may write; anything else came from the text
ALLOWED_ATTRS = {"lang", "charset", "name", "content", "href", "id", "src", "alt"}


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each tag name."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br", "hr"):
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def handle_data(self, data):
        for tag in set(self.open):
            self.text.setdefault(tag, []).append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


def _png(path: Path) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buf, "PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _document(tmp_path: Path) -> tuple[Document, bytes]:
    png = _png(tmp_path / "run" / "curves.png")
    doc = Document(
        f"report {EVIL}",
        f"banner {EVIL}",
        [
            Section(
                f"About {EVIL}",
                [
                    Text(f"Data from {EVIL}; **46.1 %** in [run/results.json](run/results.json)."),
                    Text(f"Literal: {md_escape(EVIL)}"),
                    Table(
                        ("name", f"head {EVIL}"),
                        [
                            (f"cell {EVIL}", "**bold cell** `code|pipe`"),
                            ("two\nlines | and a pipe", "[r](run/results.json)"),
                        ],
                        caption=f"caption {EVIL}",
                    ),
                    Figure("run/curves.png", f"figure {EVIL}"),
                ],
            ),
            Section(f"Second {EVIL}", [Text("end")], level=3),
        ],
    )
    return doc, png


@pytest.fixture
def page(tmp_path) -> Elements:
    doc, _ = _document(tmp_path)
    md_path, html_path = doc.write(tmp_path)
    assert md_path == tmp_path / "report.md" and html_path == tmp_path / "index.html"
    parser = Elements()
    parser.feed(html_path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_no_element_or_attribute_from_text(page):
    for tag, attrs in page.tags:
        assert set(attrs) <= ALLOWED_ATTRS, (tag, attrs)
        assert "onerror" not in attrs and "onfocus" not in attrs
    # the only image is the embedded figure, not the one in the text
    (img,) = page.named("img")
    assert str(img["src"]).startswith("data:image/png;base64,")
    for a in page.named("a"):
        href = str(a["href"])
        assert href != "y" and '"' not in href and not href.lower().startswith("javascript:")
    assert not [t for t, _ in page.tags if t in ("script", "iframe", "object", "embed", "svg")]
    # the hostile markup is shown as text instead
    shown = "".join(page.text["body"])
    assert "<img src=x onerror=alert(1)>" in shown


def test_ordinary_markup_still_renders(page, tmp_path):
    assert "46.1 %" in "".join(page.text["strong"])
    assert "bold cell" in "".join(page.text["strong"])
    assert "code|pipe" in "".join(page.text["code"])
    hrefs = [a["href"] for a in page.named("a")]
    assert hrefs.count("run/results.json") == 2
    assert len(page.named("table")) == 1
    # the pipe and the line break stay inside their cell: 2 columns in every row
    assert len(page.named("th")) == 2 and len(page.named("td")) == 4
    assert any("two lines | and a pipe" in s for s in page.text["td"])
    # headings carry anchors, and the table of contents links the level-2 ones
    ids = [a["id"] for t, a in page.tags if t in ("h1", "h2", "h3")]
    assert len(ids) == 3 and len(set(ids)) == 3
    nav_links = [a["href"] for a in page.named("a") if str(a["href"]).startswith("#")]
    assert nav_links == [f"#{ids[1]}"]
    # the figure is embedded byte for byte: the page needs no neighbour files
    (img,) = page.named("img")
    data = base64.b64decode(str(img["src"]).split(",", 1)[1])
    assert data == (tmp_path / "run" / "curves.png").read_bytes()


def test_escaped_text_is_shown_literally(page):
    # md_escape: the link syntax stays text, no <a href="y...">
    literal = "".join(page.text["p"])
    assert f"Literal: {EVIL}" in literal


def test_markdown_keeps_its_structure(tmp_path):
    doc, _ = _document(tmp_path)
    md = render_markdown(doc)
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, rule, two rows: the line break did not add a row
    assert "two lines \\| and a pipe" in md
    assert "![figure" in md and "(run/curves.png)" in md


# ------------------------------------------------ report.md itself

#: Names a user gives runs, classes and data: a pipe, backticks, raw HTML, mathtext, a newline.
NAMES = ["a|b", "cat`s", "<script>alert(1)</script>", "$x$ and $$y$$", "two\nlines", "``|``"]


def _tokens(md: str, html: bool):
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": html}).enable("table")
    return parser.parse(md)


def _hostile_table_doc() -> Document:
    return Document(
        f"run {NAMES[2]}",
        f"banner {NAMES[3]}",
        [
            Section(
                f"classes {NAMES[1]}",
                [
                    Text(f"1. {NAMES[2]} {NAMES[3]} **kept** `code` [link](run/results.json)"),
                    Table(
                        NAMES,
                        [NAMES, [f"**{n}**" for n in NAMES], ["`x|y`"] * len(NAMES)],
                        caption=NAMES[4],
                    ),
                ],
            )
        ],
    )


def test_report_md_holds_no_raw_html_math_or_broken_table():
    """Rendered by a renderer that shows raw HTML (as GitHub's does), report.md makes no
    HTML of user text, every ``$`` is escaped (no math), and every row keeps its cells."""
    md = render_markdown(_hostile_table_doc())
    tokens = _tokens(md, html=True)
    inline = [c for t in tokens if t.type == "inline" for c in t.children or ()]
    assert not [t for t in tokens if t.type == "html_block"]
    assert not [c for c in inline if c.type == "html_inline"]
    assert "<script>" not in md and "\\<script\\>" in md
    for line in md.splitlines():  # a $ outside a code span is always escaped
        assert not re.search(r"(?<!\\)\$", re.sub(r"`[^`]*`", "", line)), line
    rows = [t for t in tokens if t.type == "tr_open"]
    assert len(rows) == 4
    cells = [t for t in tokens if t.type in ("th_open", "td_open")]
    assert len(cells) == 4 * len(NAMES)
    assert not [t for t in tokens if t.type in ("ordered_list_open", "bullet_list_open")]


def test_hostile_names_show_literally_and_markup_still_renders(tmp_path):
    doc = _hostile_table_doc()
    _md, page_path = doc.write(tmp_path)
    page = Elements()
    page.feed(page_path.read_text(encoding="utf-8"))
    assert not [t for t, _ in page.tags if t in ("script", "math")]
    cells = page.text["th"]
    shown = [c for c in cells if c.strip()]
    for name in NAMES[:-1]:  # each name is one cell, as typed (its line break a space)
        assert name.replace("\n", " ") in shown, (name, shown)
    assert shown[-1] == "|" and "|" in page.text["code"]  # paired backticks are a code span
    assert "$x$ and $$y$$" in page.text["strong"]  # the bold cell: bold kept, $ literal
    assert page.text["code"].count("x|y") == len(NAMES)
    assert any(a["href"] == "run/results.json" for a in page.named("a"))
    assert "1. <script>alert(1)</script> $x$ and $$y$$" in "".join(page.text["p"])
