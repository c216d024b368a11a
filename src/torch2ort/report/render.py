"""Render report blocks to Markdown (plots as SVG files beside it) and to one self-contained HTML file."""

from __future__ import annotations

import re
from html import escape

_INLINE = re.compile(r"(`[^`]+`|\*\*[^*]+\*\*)")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # what starts an HTML tag, comment or autolink; "<=" stays as it is

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;max-width:1100px;margin:2rem auto;
padding:0 1.5rem;background:#fff}
h1{font-size:1.7rem;margin-bottom:.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #e5e5e5;padding-bottom:.3rem}
h3{margin-top:1.4rem}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}
pre{background:#f6f8fa;border:1px solid #e5e5e5;border-radius:6px;padding:.8rem 1rem;overflow-x:auto}
pre code{background:none;padding:0}
table{border-collapse:collapse;margin:.8rem 0;font-size:13.5px;display:block;overflow-x:auto}
th,td{border:1px solid #e1e4e8;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr:nth-child(even) td{background:#fbfbfc}
.banner{padding:.8rem 1rem;border-radius:6px;font-weight:500;margin:1rem 0}
.ok{background:#e8f5e9;border:1px solid #a5d6a7}.bad{background:#fdecea;border:1px solid #f5a3a3}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}
footer{margin-top:3rem;color:#666;font-size:13px}
"""


def _html_inline(text: str) -> str:
    out = []
    for part in _INLINE.split(text):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{escape(part[1:-1])}</code>")
        elif part.startswith("**") and part.endswith("**") and len(part) > 3:
            out.append(f"<strong>{escape(part[2:-2])}</strong>")
        else:
            out.append(escape(part))
    return "".join(out)


def _md_inline(text: str) -> str:
    """Text as Markdown: a ``<`` that would open raw HTML (a hostile model name, say) is escaped, outside code."""
    return "".join(part if part.startswith("`") else _TAG.sub("&lt;", part) for part in _INLINE.split(str(text)))


def _md_cell(text: str) -> str:
    return _md_inline(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple], figures: dict[str, str]) -> str:
    """``figures`` maps a figure name to the relative path its SVG was written to."""
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += [f"{'#' * int(kind[1])} {_md_inline(block[1])}", ""]
        elif kind == "p":
            lines += [_md_inline(block[1]), ""]
        elif kind == "banner":
            lines += [f"> **{'✅' if block[1] else '❌'}** {_md_inline(block[2])}", ""]
        elif kind == "list":
            lines += [f"- {_md_inline(item)}" for item in block[1]] + [""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            lines.append("|" + "|".join(" --- " for _ in headers) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "code":
            lines += [f"```{block[1]}", block[2], "```", ""]
        elif kind == "figure":
            lines += [f"![{block[1]}]({figures[block[1]]})", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_html(blocks: list[tuple], title: str) -> str:
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_html_inline(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_html_inline(block[1])}</p>")
        elif kind == "banner":
            body.append(f'<div class="banner {"ok" if block[1] else "bad"}">{_html_inline(block[2])}</div>')
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_html_inline(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_html_inline(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "code":
            body.append(f'<pre><code class="language-{escape(block[1])}">{escape(block[2])}</code></pre>')
        elif kind == "figure":
            body.append(f'<figure id="fig-{escape(block[1])}">{block[2]}</figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body)
            + "\n<footer>Written by torch2ort migrate. Self-contained: no scripts, fonts or images are fetched."
              "</footer>\n</body></html>\n")
