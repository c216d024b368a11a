"""Markdown + HTML rendering of a migration's typed evidence (``evidence.json``); it measures nothing itself.

Example::

    paths = write_reports(Evidence.from_json(Path("out/evidence.json").read_text()), Path("out"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch2ort.report.document import build, model_title, summary_lines
from torch2ort.report.render import to_html, to_markdown

if TYPE_CHECKING:
    from torch2ort.evidence import Evidence


def write_reports(evidence: Evidence, out: Path) -> list[Path]:
    """Write report.md (with plots/*.svg beside it) and a self-contained report.html into ``out``."""
    blocks = build(evidence)
    figures = {}
    plots = out / "plots"
    for block in blocks:
        if block[0] == "figure":
            plots.mkdir(exist_ok=True)
            (plots / f"{block[1]}.svg").write_text(block[2], encoding="utf-8")
            figures[block[1]] = f"plots/{block[1]}.svg"
    md = out / "report.md"
    md.write_text(to_markdown(blocks, figures), encoding="utf-8")
    html = out / "report.html"
    title = f"torch2ort migration report: {model_title(evidence.model.source) if evidence.model else ''}"
    html.write_text(to_html(blocks, title), encoding="utf-8")
    return [md, html]


__all__ = ["model_title", "summary_lines", "write_reports"]
