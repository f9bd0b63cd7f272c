"""HTML building blocks shared by report.html and the comparison page: page frame with inline
CSS, escaped text, tables with formatted numbers, PNG images embedded as data: URIs. Nothing
here refers to the network."""
from __future__ import annotations

import base64
import html
import struct

import numpy as np

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.6em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: .6em 0; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { color: #555; font-size: .9em; } .bad { color: #b00020; font-weight: bold; }
"""


def page(title: str, sections: list[str]) -> str:
    """A whole page: no script, no external reference; empty sections are left out."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{e(title)}</h1>\n" + "\n".join(section for section in sections if section)
            + "\n</body>\n</html>\n")


def e(text: object) -> str:
    """Text escaped for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def cell(value: object) -> str:
    """A table value as text: "-" for none/NaN, 3 decimals below 1000, thousands separated."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(headers: list[str], rows: list, text_columns: int = 1) -> str:
    """An HTML table; the first `text_columns` columns are left-aligned, numbers right."""
    head = "".join(f"<th class=\"text\">{e(h)}</th>" if i < text_columns else f"<th>{e(h)}</th>"
                   for i, h in enumerate(headers))
    body = "\n".join("<tr>" + "".join(
        f"<td class=\"text\">{e(cell(v))}</td>" if i < text_columns else f"<td>{e(cell(v))}</td>"
        for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def image(png: bytes, alt: str) -> str:
    """A PNG embedded as a data: URI, with its pixel size so the page lays out before decoding."""
    width, height = struct.unpack(">II", png[16:24])  # the PNG IHDR chunk
    return (f"<img src=\"data:image/png;base64,{base64.b64encode(png).decode()}\" "
            f"width=\"{width}\" height=\"{height}\" alt=\"{e(alt)}\">")
