"""The HTML report renders cleanly in real headless Chromium (Debian's chromium), with nothing fetched."""

from __future__ import annotations

import os
import shutil

import pytest

from torch2ort.errors import UsageError
from torch2ort.runners.web import CHROMIUM_FLAGS, chromium_path

pytestmark = pytest.mark.browser


def _chromium() -> str:
    try:
        return chromium_path()
    except UsageError as exc:
        pytest.fail(f"{exc} (scripts/test installs it)")


def test_report_html_renders_in_chromium(migrated, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((migrated / "report.html").as_uri())
            page.wait_for_load_state("load")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            layout = page.evaluate("""() => ({
                overflow: document.documentElement.scrollWidth - window.innerWidth,
                svgs: [...document.querySelectorAll('figure svg')].map(s => {
                    const r = s.getBoundingClientRect(); return [r.width, r.height]; }),
                tables: document.querySelectorAll('table').length,
                h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
                banner: document.querySelector('.banner').textContent,
            })""")
        finally:
            browser.close()
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched from anywhere
    assert errors == []
    assert layout["overflow"] <= 0, "the page scrolls sideways"
    assert len(layout["svgs"]) == 2 and all(w > 200 and h > 100 for w, h in layout["svgs"])
    assert layout["tables"] >= 6 and layout["banner"].startswith("PASSED")
    assert {"Parity: PyTorch vs ONNX Runtime (fp32 export)", "Performance", "Cold start", "Footprint",
            "Deploy it", "Reproduce"} <= set(layout["h2"])
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("TORCH2ORT_KEEP_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
