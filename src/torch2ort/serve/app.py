"""The HTTP layer: Open Inference Protocol (KServe v2) REST routes over ModelHosts, on FastAPI.

``create_app(hosts, max_body_mb=…, read_timeout_s=…)`` takes already-loaded hosts (tests can pass
their own), so the routes carry no model logic. Every error is ``{"error": "…"}`` with a JSON
content type: 400 bad input, 401 no or wrong bearer token (with ``--token-file``; health stays
open), 404 unknown model or route, 405 (with ``Allow``), 408 body too slow, 413 body too large,
503 not ready or overloaded, 500 only for a real internal fault. ``GET /metrics`` is the Prometheus
exposition (``metrics.py``); ``POST /v2/repository/index`` lists the served models.

An infer request takes a queue slot first (503 when full), then one of ``INTAKE`` reading slots
while its body is read and then parsed (JSON, BYTES, tokenizing) on one of ``PARSERS`` worker
threads, never on the event loop; so health checks answer while large requests are in flight,
and memory is bounded by ``INTAKE × --max-body-mb`` of bodies plus ``PARSERS`` parses at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from torch2ort import __version__
from torch2ort.errors import ProtocolError
from torch2ort.serve import openapi as oa
from torch2ort.serve.auth import BearerAuth
from torch2ort.serve.host import ModelHost
from torch2ort.serve.metrics import CONTENT_TYPE, Metrics
from torch2ort.serve.protocol import HEADER, encode_response

log = logging.getLogger("torch2ort.serve")
EXTENSIONS = ["binary_tensor_data"]
INTAKE = 4   # requests reading + parsing their body at once, server-wide
PARSERS = 2  # of those, parsing (JSON, BYTES, tokenizing) or encoding at once: worker threads
INLINE_ENCODE = 64 * 1024  # outputs up to this many bytes are encoded on the event loop
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
                ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream",
                ".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
# Cross-origin isolation: without it the page gets no SharedArrayBuffer, so no WASM threads.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-cache"}


class Guard:
    """Pure ASGI middleware on every request body: 413 over the size limit (by ``Content-Length``, or
    by the bytes actually sent), 408 when the body is not all there within ``read_timeout_s`` of the
    first read. (Request *headers* have their own timeout in ``server.py``, at the protocol level.)"""

    def __init__(self, app, max_bytes: int, read_timeout_s: float) -> None:
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _send_error(send, 413, self._message())
        seen, deadline, done = 0, None, False

        async def guarded():
            nonlocal seen, deadline, done
            if done:  # the body is complete: what is left to wait for is a disconnect
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.read_timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                raise ProtocolError(f"the request body did not arrive within {self.read_timeout_s:g} s "
                                    "(--read-timeout-s)", 408) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ProtocolError(self._message(), 413)
                done = not message.get("more_body", False)
            return message

        await self.app(scope, guarded, send)

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes / 2**20:g} MiB (--max-body-mb)"


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(hosts: dict[str, ModelHost], max_body_mb: float = 64.0, read_timeout_s: float = 30.0,
               intake: int = INTAKE, token: str | None = None, metrics: Metrics | None = None,
               grpc_port: int | None = None, grpc_host: str = "127.0.0.1"):
    """The app over loaded hosts. ``intake``: requests reading and parsing their body at once;
    ``token``: bearer token every route but health requires; ``grpc_port``: also serve the gRPC
    protocol there (``grpc_server.py``), started and stopped with the app, over the same hosts."""
    metrics = metrics or Metrics()
    metrics.attach(hosts)
    parse_pool = ThreadPoolExecutor(max_workers=PARSERS, thread_name_prefix="parse")
    reading = asyncio.Semaphore(intake)

    @asynccontextmanager
    async def lifespan(app):
        for host in hosts.values():
            await host.start()
        grpc_server = None
        if grpc_port is not None:
            from torch2ort.serve.grpc_server import start_grpc
            grpc_server = await start_grpc(state, grpc_host, grpc_port, int(max_body_mb * 2**20))
            log.info("gRPC on %s:%d", grpc_host, grpc_port)
        log.info("serving %s", ", ".join(hosts))
        yield
        if grpc_server is not None:
            await grpc_server.stop(5.0)  # in-flight calls get 5 s, then are cancelled
        for host in hosts.values():  # uvicorn has already let in-flight requests finish
            await host.stop()
        parse_pool.shutdown(wait=True)

    app = FastAPI(title="torch2ort server", version=__version__, lifespan=lifespan,
                  description="Open Inference Protocol (KServe v2) REST API over torch2ort bundles.")

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(ProtocolError)
    async def _protocol(_, exc: ProtocolError):
        return error(exc.status, exc.message, {"Connection": "close"} if exc.status in (408, 413) else None)

    @app.exception_handler(HTTPException)
    async def _http(_, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))  # 405 keeps its Allow

    @app.exception_handler(RequestValidationError)
    async def _validation(_, exc: RequestValidationError):
        return error(400, "; ".join(str(e.get("msg")) for e in exc.errors()) or "bad request")

    @app.exception_handler(Exception)
    async def _internal(_, exc: Exception):
        log.exception("internal error")
        return error(500, f"internal error: {type(exc).__name__}")

    def host_of(name: str, version: str | None = None) -> ModelHost:
        if not name or "/" in name or "\\" in name or ".." in name:
            raise ProtocolError(f"{name!r} is not a model name", 404)
        host = hosts.get(name)
        if host is None:
            raise ProtocolError(f"unknown model {name!r}; served: {', '.join(sorted(hosts))}", 404)
        if version is not None and version != host.version:
            raise ProtocolError(f"model {name!r} has no version {version!r}; versions: {host.version}", 404)
        return host

    state = SimpleNamespace(hosts=hosts, host_of=host_of, metrics=metrics, token=token, parse_pool=parse_pool,
                            extensions=EXTENSIONS)

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", responses={503: oa.error_response("not ready")})
    async def ready():
        if not all(h.ready for h in hosts.values()):
            return error(503, "not ready")
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata():
        return {"name": "torch2ort", "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/models/{name}", responses=oa.MODEL_RESPONSES)
    @app.get("/v2/models/{name}/versions/{version}", responses=oa.MODEL_RESPONSES)
    async def model_metadata(name: str, version: str | None = None):
        return host_of(name, version).metadata()

    @app.get("/v2/models/{name}/ready", responses=oa.READY_RESPONSES)
    @app.get("/v2/models/{name}/versions/{version}/ready", responses=oa.READY_RESPONSES)
    async def model_ready(name: str, version: str | None = None):
        host = host_of(name, version)
        if not host.ready:
            return error(503, f"model {name!r} is not ready")
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", openapi_extra=oa.INFER_BODY, responses=oa.INFER_RESPONSES)
    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=oa.INFER_BODY, responses=oa.INFER_RESPONSES)
    async def infer(name: str, request: Request, version: str | None = None):
        host = host_of(name, version)
        with metrics.track(name, "http"):
            return await _infer(host, request)

    async def _infer(host: ModelHost, request: Request):
        name = host.name
        host.admit()  # a queue slot first (or 503): nothing is read or parsed for a request we cannot take
        loop = asyncio.get_running_loop()
        try:
            async with reading:  # at most `intake` bodies read and parsed at once: bounded memory
                body = bytearray()  # one growing buffer: no list of chunks plus a joined copy
                async for chunk in request.stream():
                    body += chunk
                req, feed, wanted = await loop.run_in_executor(parse_pool, host.prepare, body,
                                                               request.headers.get(HEADER))
                del body
            outputs = await host.infer(feed)
            chosen = {k: outputs[k] for k in wanted}
            if sum(v.nbytes for v in chosen.values()) <= INLINE_ENCODE:  # microseconds: not worth a thread hop
                content, headers = encode_response(name, host.version, chosen, req)
            else:
                content, headers = await loop.run_in_executor(parse_pool, encode_response, name, host.version,
                                                              chosen, req)
        except ClientDisconnect:  # the client went away mid-body: nobody to answer, nothing to log loudly
            log.debug("client disconnected while sending a request to %s", name)
            return Response(status_code=400)
        finally:
            host.release()
        return Response(content, headers=headers)

    @app.post("/v2/repository/index", openapi_extra=oa.INDEX_BODY, responses=oa.INDEX_RESPONSES)
    async def repository_index(request: Request):
        """Triton's repository index: every served model, its version and state."""
        body = await request.body()
        ready_only = False
        if body.strip():
            try:
                query = json.loads(body)
            except (ValueError, RecursionError):
                raise ProtocolError("the repository index request body must be JSON, e.g. {\"ready\": true}") from None
            if not isinstance(query, dict) or not isinstance(query.get("ready", False), bool):
                raise ProtocolError('the repository index request body is {"ready": true|false} (optional)')
            ready_only = query.get("ready", False)
        return [{"name": n, "version": h.version, "state": "READY" if h.ready else "UNAVAILABLE", "reason": ""}
                for n, h in sorted(hosts.items()) if h.ready or not ready_only]

    @app.get("/metrics", responses=oa.METRICS_RESPONSES)
    async def prometheus_metrics():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

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
    oa.add_schemas(app, sorted(hosts), auth=token is not None)
    app.add_middleware(Guard, max_bytes=int(max_body_mb * 2**20), read_timeout_s=read_timeout_s)
    if token is not None:
        app.add_middleware(BearerAuth, token=token)  # outermost: nothing is read for a refused request
    app.state.metrics = metrics
    return app
