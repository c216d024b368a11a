"""``GET /``: a page to try the served models (``--no-ui`` leaves it out): plain HTML and JS, no build step.

The page talks to the same Open Inference Protocol endpoints as any client (the repository index,
model metadata, ``…/infer`` with files as base64), and shows the answer as the metadata's
``torch2ort_display`` hints say: top-k bars, per-label probabilities against their thresholds, a
per-segment timeline. With ``--token-file`` the page itself is open (it holds no data) and asks for
the token, which it keeps in memory and sends as a header, never in the URL.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).resolve().parents[1] / "ui" / "index.html"
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                      "img-src 'self' data:; frame-ancestors 'none'"}
router = APIRouter()


@cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(_page(), headers=HEADERS)
