"""Markdown and HTML rendering of report blocks: structure, inline markup, and escaping of hostile text."""

from __future__ import annotations

import re

from fixtures.evidence import optimised_evidence
from torch2ort.report import write_reports
from torch2ort.report.document import build
from torch2ort.report.render import to_html, to_markdown

EVIL = 'evil|<img src=x onerror=alert(1)>&"name"'


def test_markdown_structure():
    blocks = [("h1", "Title <b>x</b>"), ("banner", False, "STOPPED"), ("p", "a `code <b>` and **bold**"),
              ("list", ["one", "two"]),
              ("table", ["a", "b|c"], [["1|2", "x\ny"]]), ("code", "bash", "echo hi"), ("figure", "lat", "<svg/>")]
    md = to_markdown(blocks, {"lat": "plots/lat.svg"})
    assert md == ("# Title &lt;b>x&lt;/b>\n\n> **❌** STOPPED\n\na `code <b>` and **bold**\n\n- one\n- two\n\n"
                  "| a | b\\|c |\n| --- | --- |\n| 1\\|2 | x y |\n\n```bash\necho hi\n```\n\n"
                  "![lat](plots/lat.svg)\n")


def test_html_turns_inline_markup_into_tags_and_escapes_inside_them():
    html = to_html([("p", "run `a<b` then **x & y** <i>")], "t")
    assert "<p>run <code>a&lt;b</code> then <strong>x &amp; y</strong> &lt;i&gt;</p>" in html


def test_a_hostile_model_name_is_escaped_everywhere(tmp_path):
    ev = optimised_evidence(f"hf:/models/{EVIL}")
    blocks = build(ev)
    assert blocks[0] == ("h1", f"Migration report: {EVIL}")
    md = to_markdown(blocks, {"latency": "plots/latency.svg", "speedup": "plots/speedup.svg"})
    assert "# Migration report: evil|&lt;img src=x onerror=alert(1)>" in md  # no raw HTML in the Markdown
    assert md.count("<img") == md.count("`hf:/models/evil|<img") == 1  # raw only inside the Source code span
    md_path, html_path = write_reports(ev, tmp_path)
    html = html_path.read_text()
    assert "<img" not in html and "onerror=alert(1)&gt;" in html
    assert re.search(r"<title>torch2ort migration report: evil\|&lt;img src=x onerror=alert\(1\)&gt;&amp;"
                     r"&quot;name&quot;</title>", html)
    assert "<script" not in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert md_path.read_text() == md
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["latency.svg", "speedup.svg"]
    assert html.count("<svg") == 2  # the charts are inline: one self-contained file
