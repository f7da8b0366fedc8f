"""A small report model rendered both as Markdown and as one self-contained HTML page.

A :class:`Document` is a title, an optional banner and sections of blocks
(paragraphs, tables, figures, links). Figures are PNG files in the output
directory: Markdown links them, the HTML page embeds them as ``data:`` URIs so
that ``index.html`` opens anywhere without a server or its neighbours.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    text: str  # plain text; `code`, **bold** and [label](link) are rendered in both outputs


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


def render_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", ""]
    if doc.banner:
        lines += [f"> **{doc.banner}**", ""]
    for s in doc.sections:
        lines += [f"{'#' * s.level} {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                lines += [b.text, ""]
            elif isinstance(b, Table):
                if b.caption:
                    lines += [f"*{b.caption}*", ""]
                lines.append("| " + " | ".join(b.header) + " |")
                lines.append("|" + "---|" * len(b.header))
                lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in b.rows]
                lines.append("")
            else:
                lines += [f"![{b.caption}]({b.path})", ""]
                if b.caption:
                    lines += [f"*{b.caption}*", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape, then render `code` spans, **bold** and [label](href) links."""
    import re

    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:0 auto;padding:1.2rem 1.5rem 3rem;color:#1d232a;line-height:1.5}
h1{font-size:1.8rem;margin-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #dde;
padding-bottom:.2rem}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #ccd;padding:.3rem .6rem;text-align:left}th{background:#f1f3f7}
tr:nth-child(even) td{background:#fafbfc}caption{caption-side:top;text-align:left;
font-style:italic;padding-bottom:.2rem;white-space:nowrap}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9rem;color:#555}code{background:#f3f3f6;padding:0 .25rem;border-radius:3px}
.banner{background:#fff4d6;border:1px solid #e8c770;padding:.6rem 1rem;border-radius:6px;
font-weight:600}nav ul{columns:2}
"""


def _slug(title: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render_html(doc: Document, out_dir: Path) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    if doc.banner:
        parts.append(f'<p class="banner">{_inline(doc.banner)}</p>')
    parts.append(
        "<nav><ul>"
        + "".join(
            f'<li><a href="#{_slug(s.title)}">{html.escape(s.title)}</a></li>'
            for s in doc.sections
            if s.level == 2
        )
        + "</ul></nav>"
    )
    for s in doc.sections:
        parts.append(f'<h{s.level} id="{_slug(s.title)}">{html.escape(s.title)}</h{s.level}>')
        for b in s.blocks:
            if isinstance(b, Text):
                parts.append(f"<p>{_inline(b.text)}</p>")
            elif isinstance(b, Table):
                cap = f"<caption>{_inline(b.caption)}</caption>" if b.caption else ""
                head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>"
                    for r in b.rows
                )
                parts.append(
                    f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                )
            else:
                data = base64.b64encode((out_dir / b.path).read_bytes()).decode()
                parts.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(b.caption or b.path)}">'
                    f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)
