"""Hand-written SVG charts: well-formed, escaped, and placed where the numbers say."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from torch2ort.report.svg import latency_boxes, speedup_bars

NS = "{http://www.w3.org/2000/svg}"


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


def _bars(svg: str) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in r.attrib.items() if k in ("x", "y", "width", "height")}
            for r in ET.fromstring(svg).iter(f"{NS}rect")]


def test_speed_up_bars_spread_over_the_plot_and_scale_with_the_median():
    points = [("batch 1", 1.5, 1.4, 1.6), ("batch 8", 3.0, 2.8, 3.2), ("batch 32", 0.75, 0.7, 0.8)]
    bars = _bars(speedup_bars(points, "speed"))
    assert len(bars) == 3
    centres = [b["x"] + b["width"] / 2 for b in bars]
    assert centres == sorted(centres) and centres[-1] - centres[0] > 250  # one slot per point across 440 px
    heights = [b["height"] for b in bars]
    assert abs(heights[1] / heights[0] - 2.0) < 0.01 and abs(heights[2] / heights[0] - 0.5) < 0.01
    bottoms = {round(b["y"] + b["height"], 1) for b in bars}
    assert len(bottoms) == 1  # every bar stands on the 0× line


def test_latency_boxes_put_the_faster_backend_to_the_left_on_a_log_axis():
    svg = latency_boxes([("torch, batch 1", [10.0, 11.0, 12.0, 10.5]), ("onnxruntime, batch 1", [1.0, 1.1, 1.2])],
                        "lat")
    root = ET.fromstring(svg)
    boxes = _bars(svg)
    torch_box, ort_box = boxes
    assert ort_box["x"] + ort_box["width"] < torch_box["x"]  # a 10× gap leaves the boxes apart
    ticks = [t.text for t in root.iter(f"{NS}text") if t.text and re.fullmatch(r"[0-9.e+-]+", t.text)]
    assert {"1", "2", "5", "10"} <= set(ticks)
    assert "10.8 ms" in svg and "1.1 ms" in svg  # the medians are written beside their boxes


def test_hostile_labels_and_titles_are_escaped():
    evil = "<script>alert(1)</script> & \"q\""
    for svg in (latency_boxes([(f"torch {evil}", [1.0, 2.0])], evil), speedup_bars([(evil, 2.0, 1.0, 3.0)], evil)):
        root = ET.fromstring(svg)  # still well-formed XML
        assert "<script>" not in svg and root.get("aria-label") == evil
        assert any(evil in (t.text or "") for t in root.iter(f"{NS}text"))
