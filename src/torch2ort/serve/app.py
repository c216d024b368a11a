"""The HTTP layer: Open Inference Protocol (KServe v2) REST routes over ModelHosts, on FastAPI.

``create_app(hosts, max_body_mb=…)`` takes already-loaded hosts (tests can pass their own), so the
routes carry no model logic. Every error is ``{"error": "…"}`` with a JSON content type: 400 bad
input, 404 unknown model or route, 413 body too large, 503 not ready or overloaded, 500 only for a
real internal fault.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from torch2ort import __version__
from torch2ort.errors import ProtocolError
from torch2ort.serve.host import ModelHost
from torch2ort.serve.protocol import HEADER, encode_response, parse_request

log = logging.getLogger("torch2ort.serve")
EXTENSIONS = ["binary_tensor_data"]
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
                ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream",
                ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
# Cross-origin isolation: without it the page gets no SharedArrayBuffer, so no WASM threads.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-cache"}


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over the limit, by header or by the bytes actually sent."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_error(send, 413, self._message())
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ProtocolError(self._message(), 413)
            return message

        try:
            await self.app(scope, limited, send)
        except ProtocolError as exc:  # raised while the route was reading the body
            await _send_error(send, exc.status, exc.message)

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes / 2**20:g} MiB (--max-body-mb)"


async def _send_error(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(hosts: dict[str, ModelHost], max_body_mb: float = 64.0):
    @asynccontextmanager
    async def lifespan(app):
        for host in hosts.values():
            await host.start()
        log.info("serving %s", ", ".join(hosts))
        yield
        for host in hosts.values():  # uvicorn has already let in-flight requests finish
            await host.stop()

    app = FastAPI(title="torch2ort server", version=__version__, lifespan=lifespan,
                  description="Open Inference Protocol (KServe v2) REST API over torch2ort bundles.")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ProtocolError)
    async def _protocol(_, exc: ProtocolError):
        return error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http(_, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(_, exc: RequestValidationError):
        return error(400, "; ".join(str(e.get("msg")) for e in exc.errors()) or "bad request")

    @app.exception_handler(Exception)
    async def _internal(_, exc: Exception):
        log.exception("internal error")
        return error(500, f"internal error: {type(exc).__name__}")

    def host_of(name: str, version: str | None = None) -> ModelHost:
        host = hosts.get(name)
        if host is None:
            raise ProtocolError(f"unknown model {name!r}; served: {', '.join(sorted(hosts))}", 404)
        if version is not None and version != host.version:
            raise ProtocolError(f"model {name!r} has no version {version!r}; versions: {host.version}", 404)
        return host

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        if not all(h.ready for h in hosts.values()):
            return error(503, "not ready")
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {"name": "torch2ort", "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None):
        return host_of(name, version).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None):
        host = host_of(name, version)
        if not host.ready:
            return error(503, f"model {name!r} is not ready")
        return {"name": name, "ready": True}

    infer_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

    @app.post("/v2/models/{name}/infer", openapi_extra=infer_doc)
    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=infer_doc)
    async def infer(name: str, request: Request, version: str | None = None):
        host = host_of(name, version)
        req = parse_request(await request.body(), request.headers.get(HEADER))
        feed = host.validate(req.inputs)
        known = [m["name"] for m in host.output_meta]
        wanted = req.outputs if req.outputs is not None else known
        unknown = [o for o in wanted if o not in known]
        if unknown:
            raise ProtocolError(f"unknown outputs {unknown}; outputs: {', '.join(known)}")
        host.admit()
        try:
            outputs = await host.infer(feed)
        finally:
            host.release()
        body, headers = encode_response(name, host.version, {k: outputs[k] for k in wanted}, req)
        return Response(body, headers=headers)

    @app.get("/bundles/{name}/{path:path}", include_in_schema=False)
    async def bundle_file(name: str, path: str):
        """A bundle's own files (its web page among them), cross-origin isolated so WASM threads work."""
        host = host_of(name)
        listed = host.bundle.manifest["files"]
        if (path in ("", "web") or path.startswith("web/")) and "web/index.html" not in listed:
            raise ProtocolError(f"bundle {name!r} has no web page (pack it with --web)", 404)
        if path in ("", "web"):
            return RedirectResponse(f"/bundles/{name}/web/", status_code=307)
        if path.endswith("/"):
            path += "index.html"
        if path not in listed and path != "torch2ort.json":
            raise ProtocolError(f"bundle {name!r} has no file {path!r}", 404)
        return FileResponse(host.bundle.path / path, media_type=STATIC_TYPES.get(Path(path).suffix),
                            headers=ISOLATION)

    app.openapi_schema = None
    _add_schemas(app)
    app.add_middleware(BodyLimit, max_bytes=int(max_body_mb * 2**20))
    return app


def _add_schemas(app) -> None:
    """Describe the infer request body in the OpenAPI document (the route reads the raw body itself)."""
    base = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
            "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string"}, "parameters": {"type": "object"}, "data": {"type": "array"}}}
        schema.setdefault("components", {}).setdefault("schemas", {})["InferRequest"] = {
            "type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": tensor},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "parameters": {"type": "object"}}}}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
