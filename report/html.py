"""HTML pieces of the report page: escaped text, numbers, tables, figures, notes, the page.

The page is self-contained: one inline stylesheet, no scripts, no fonts or files from
the network; figures are PNG files beside the page, referenced by relative path.
Every helper returns an HTML string; text that came from data is always escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
nav ol { columns: 3; max-width: 900px; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code.dsl { font-size: 0.95em; word-break: break-all; }
td code.dsl { display: block; min-width: 16em; }
.wide { overflow-x: auto; }
.wide table { font-size: 0.8em; }
.note { background: #fff6e0; border-left: 4px solid #e0a000; padding: .4em .8em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.muted { color: #777; }
.row { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
.row figure { max-width: 550px; }
"""

MISSING = "–"


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def text(value: object) -> str:
    return escape(str(value))


def num(value: float | int | None, digits: int = 2) -> str:
    """A number for a table cell; NaN and None show as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def code(expr: str) -> str:
    return f'<code class="dsl">{escape(expr)}</code>'


def remark(message: str) -> str:
    """A highlighted remark."""
    return f'<p class="note">{escape(message)}</p>'


def note(reason: str) -> str:
    """Why a section or a part of it is missing."""
    return remark(f"Not available: {reason}")


def para(content: str) -> str:
    """A paragraph of HTML (the caller escapes its data)."""
    return f"<p>{content}</p>"


def row(*parts: str) -> str:
    """Blocks side by side (wrapping on narrow windows)."""
    return '<div class="row">' + "".join(f"<div>{p}</div>" for p in parts) + "</div>"


def link(href: str, label: str) -> str:
    return f'<a href="{escape(href)}">{escape(label)}</a>'


def figure(src: str, caption: str) -> str:
    return (f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def table(header: Sequence[str] | None, rows: Sequence[Sequence[str]],
          numeric: Sequence[int] = (), table_id: str | None = None, wide: bool = False) -> str:
    """A table whose cells are HTML already; columns listed in ``numeric`` align right;
    ``header=None``: no header row. ``wide``: many columns, set smaller and scrolled
    sideways where the page is still too narrow for them."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header or ())
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    ident = f' id="{escape(table_id)}"' if table_id else ""
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    html = f"<table{ident}>{thead}<tbody>{body}</tbody></table>"
    return f'<div class="wide">{html}</div>' if wide else html


def page(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole document: title, a table of contents, then each section."""
    toc = "".join(f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in sections)
    parts = "".join(f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{s.body}</section>'
                    for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{intro}<nav><ol>{toc}</ol></nav>{parts}"
            f"</body></html>\n")
