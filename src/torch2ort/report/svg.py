"""Small dependency-free SVG charts for the report: latency box plots and speed-up bars.

Hand-written so the HTML report stays one self-contained file (no matplotlib, no CDN) and the
same bytes come out on every machine.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

COLORS = {"torch": "#d9534f", "onnxruntime": "#2a7ab0"}
FONT = 'font-family="system-ui, sans-serif"'


def _color(label: str) -> str:
    """By backend, the label's first word: torch red, any onnxruntime flavour blue."""
    backend = label.split(",")[0].split()[0]
    return COLORS.get("onnxruntime" if backend.startswith("onnxruntime") else backend, "#6c757d")


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks or [lo, hi]


def _fmt(v: float) -> str:
    return f"{v:g}" if v >= 0.01 else f"{v:.0e}"


def latency_boxes(series: list[tuple[str, list[float]]], title: str) -> str:
    """One horizontal box (p5–p95 whiskers, quartile box, median line) per labelled sample list."""
    series = [(label, s) for label, s in series if s]
    if not series:
        return ""
    row_h, left, right, top = 28, 190, 30, 40
    width = 720
    height = top + row_h * len(series) + 45
    allv = np.concatenate([np.asarray(s, dtype=float) for _, s in series])
    lo = max(float(np.percentile(allv, 1)) * 0.8, 1e-4)
    hi = float(np.percentile(allv, 99.5)) * 1.25
    span = math.log10(hi) - math.log10(lo)

    def x(v: float) -> float:
        v = min(max(v, lo), hi)
        return left + (width - left - right) * (math.log10(v) - math.log10(lo)) / span

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}" {FONT} font-size="12">',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">'
             f'{escape(title)}</text>']
    axis_y = top + row_h * len(series) + 5
    for t in _log_ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 5}" y2="{axis_y}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y + 15}" text-anchor="middle">{_fmt(t)}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{axis_y + 33}" text-anchor="middle">'
                 'latency per call, ms (log scale)</text>')
    for i, (label, samples) in enumerate(series):
        s = np.asarray(samples, dtype=float)
        p5, q1, med, q3, p95 = (float(np.percentile(s, q)) for q in (5, 25, 50, 75, 95))
        cy = top + row_h * i + row_h / 2
        c = _color(label)
        parts += [
            f'<text x="{left - 10}" y="{cy + 4}" text-anchor="end">{escape(label)}</text>',
            f'<line x1="{x(p5):.1f}" x2="{x(p95):.1f}" y1="{cy}" y2="{cy}" stroke="{c}"/>',
            f'<rect x="{x(q1):.1f}" y="{cy - 8}" width="{max(x(q3) - x(q1), 1):.1f}" height="16" '
            f'fill="{c}" fill-opacity="0.25" stroke="{c}"/>',
            f'<line x1="{x(med):.1f}" x2="{x(med):.1f}" y1="{cy - 8}" y2="{cy + 8}" stroke="{c}" stroke-width="2.5"/>',
            f'<text x="{min(x(p95) + 6, width - right - 40):.1f}" y="{cy + 4}" fill="#555">{med:.3g} ms</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def speedup_bars(points: list[tuple[str, float, float, float]], title: str) -> str:
    """Bars of median speed-up with min–max whiskers; a dashed line marks 1× (no change)."""
    if not points:
        return ""
    width, height, left, bottom, top = 520, 280, 60, 50, 40
    ymax = max(max(p[3] for p in points), 1.0) * 1.15
    plot_w = width - left - 20
    plot_h = height - top - bottom
    slot = plot_w / len(points)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="{escape(title)}" {FONT} font-size="12">',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">'
             f'{escape(title)}</text>']
    step = next(v for v in (0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 1e9) if v >= ymax / 6)
    for t in [k * step for k in range(int(ymax / step) + 1)]:
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 8}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}×</text>')
    for i, (label, med, lo, hi) in enumerate(points):
        cx = left + slot * (i + 0.5)
        bw = min(70, slot * 0.6)
        parts += [
            f'<rect x="{cx - bw / 2:.1f}" y="{y(med):.1f}" width="{bw:.1f}" height="{y(0) - y(med):.1f}" '
            f'fill="{COLORS["onnxruntime"]}" fill-opacity="0.8"/>',
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(hi):.1f}" y2="{y(lo):.1f}" stroke="#222"/>',
            f'<line x1="{cx - 8:.1f}" x2="{cx + 8:.1f}" y1="{y(hi):.1f}" y2="{y(hi):.1f}" stroke="#222"/>',
            f'<line x1="{cx - 8:.1f}" x2="{cx + 8:.1f}" y1="{y(lo):.1f}" y2="{y(lo):.1f}" stroke="#222"/>',
            f'<text x="{cx:.1f}" y="{y(hi) - 6:.1f}" text-anchor="middle" font-weight="600">{med:.2f}×</text>',
            f'<text x="{cx:.1f}" y="{height - bottom + 18}" text-anchor="middle">{escape(label)}</text>',
        ]
    parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(1):.1f}" y2="{y(1):.1f}" stroke="#d9534f" '
                 'stroke-dasharray="5 4"/>')
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">'
                 'ONNX Runtime speed-up vs PyTorch (p50 ratio; whiskers: min–max over A/B pairs)</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def image(data_uri: str, title: str = "segmentation colour mask") -> str:
    """A PNG ``data:`` URI as a standalone SVG at the PNG's own size (its IHDR), so Markdown links it as a
    file and the HTML report inlines it, fetching nothing."""
    import base64
    import binascii

    try:
        head = base64.b64decode(data_uri.split(",", 1)[1][:64])
    except (binascii.Error, ValueError, IndexError):
        head = b""
    ok = head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24
    width, height = (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) if ok else (1, 1)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img"><title>{escape(title)}</title>'
            f'<image width="{width}" height="{height}" href="{escape(data_uri)}" style="image-rendering:pixelated"/>'
            "</svg>")
