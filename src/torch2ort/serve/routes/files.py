"""``GET /bundles/{name}/{path}``: a bundle's own files (its web page among them), cross-origin isolated."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from torch2ort.errors import ProtocolError
from torch2ort.serve.routes import State

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
                ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream",
                ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
# Cross-origin isolation: without it the page gets no SharedArrayBuffer, so no WASM threads.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-cache"}
router = APIRouter()


@router.get("/bundles/{name}/{path:path}", include_in_schema=False)
async def bundle_file(s: State, name: str, path: str):
    """Only files the manifest lists (plus ``torch2ort.json``); ``web/`` redirects to the page."""
    host = s.host_of(name)
    listed = host.bundle.manifest["files"]
    if (path in ("", "web") or path.startswith("web/")) and "web/index.html" not in listed:
        raise ProtocolError(f"bundle {name!r} has no web page (pack it with --web)", 404)
    if path in ("", "web"):
        return RedirectResponse(f"/bundles/{name}/web/", status_code=307)
    if path.endswith("/"):
        path += "index.html"
    if path not in listed and path != "torch2ort.json":
        raise ProtocolError(f"bundle {name!r} has no file {path!r}", 404)
    return FileResponse(host.bundle.path / path, media_type=STATIC_TYPES.get(Path(path).suffix), headers=ISOLATION)
