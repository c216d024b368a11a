"""Report rendering from evidence: partial runs, escaping, and valid SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from torch2ort.evidence import Evidence
from torch2ort.report import summary_lines
from torch2ort.report.document import build
from torch2ort.report.render import to_html, to_markdown
from torch2ort.report.svg import latency_boxes, speedup_bars

PARTIAL = Evidence.from_dict({
    "format": 2, "torch2ort": "0.1.0", "command": "torch2ort migrate x.py:Net --input 'x:2,4:float32' -o out",
    "started": "2026-11-21T00:00:00+00:00", "finished": "2026-11-21T00:00:05+00:00",
    "machine": {"python": "3.11"}, "versions": {"torch": "2.13.0"},
    "model": {"source": "x.py:Net <b>", "kind": "factory", "task": None, "notes": ["built"], "parameters": 20,
              "parameter_mb": 0.0001},
    "stages": [{"name": "load", "status": "ok", "seconds": 0.1, "summary": "ok", "error": None},
               {"name": "export", "status": "failed", "seconds": 1.0, "summary": "",
                "error": "both exporters failed: aten::linalg_eigh <unsupported>"},
               {"name": "verify", "status": "not run", "seconds": 0.0, "summary": "", "error": None}],
    "outcome": {"passed": False, "stopped_at": "export", "reason": "both exporters failed", "exit_code": 3},
})


def test_partial_evidence_renders_and_says_where_it_stopped():
    blocks = build(PARTIAL)
    md = to_markdown(blocks, {})
    assert "STOPPED at stage **export** (exit 3): both exporters failed" in md
    assert "| export | failed | 1.0 s | both exporters failed: aten::linalg_eigh <unsupported> |" in md
    lines = summary_lines(PARTIAL)
    assert lines[0].startswith("parity: not verified") and lines[1].startswith("speed-up: not measured")
    assert lines[2].startswith("footprint: not measured")


def test_html_escapes_user_text():
    html = to_html(build(PARTIAL), "t")
    assert "<unsupported>" not in html and "&lt;unsupported&gt;" in html
    assert "x.py:Net &lt;b&gt;" in html


def test_svg_charts_are_well_formed():
    box = latency_boxes([("torch, batch 1", [1.0, 1.2, 1.1, 3.0]), ("onnxruntime, batch 1", [0.3, 0.31, 0.5])],
                        "lat & co")
    bars = speedup_bars([("batch 1", 3.2, 3.0, 3.5), ("batch 8", 0.8, 0.7, 0.9)], "speed")
    for svg in (box, bars):
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
    assert "#d9534f" in box and "#2a7ab0" in box  # torch and ORT in their own colours
    assert "3.20×" in bars and "0.80×" in bars
    assert latency_boxes([], "empty") == "" and speedup_bars([], "empty") == ""
