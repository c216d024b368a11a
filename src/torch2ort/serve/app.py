"""The HTTP app: FastAPI composed of the routers in ``routes/``, over a ``ServerState`` shared with gRPC.

``create_app(hosts, max_body_mb=…, read_timeout_s=…)`` takes already-loaded hosts (tests can pass
their own), so the app carries no model logic. Every error is ``{"error": "…"}`` with a JSON
content type: 400 bad input, 401 no or wrong bearer token (with ``--token-file``; health stays
open), 404 unknown model or route, 405 (with ``Allow``), 408 body too slow, 413 body too large,
503 not ready or overloaded, 500 only for a real internal fault. Here: those error answers, the
body guard (408/413), bearer auth, and the lifespan that starts and stops the models and gRPC.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from torch2ort import __version__
from torch2ort.errors import ProtocolError
from torch2ort.serve import openapi as oa
from torch2ort.serve.auth import BearerAuth
from torch2ort.serve.host import ModelHost
from torch2ort.serve.metrics import Metrics
from torch2ort.serve.routes import error, routers
from torch2ort.serve.state import HELD_BACK, INTAKE, ServerState

log = logging.getLogger("torch2ort.serve")


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
        # time the server itself kept the body waiting (for a reading slot) does not count against the client
        scope.setdefault("state", {})[HELD_BACK] = held_back = [0.0]

        async def guarded():
            nonlocal seen, deadline, done
            if done:  # the body is complete: what is left to wait for is a disconnect
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.read_timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(deadline + held_back[0] - loop.time(), 0.001))
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


@dataclass(frozen=True)
class GrpcEndpoint:
    host: str
    port: int
    max_message_bytes: int


async def _protocol_error(_, exc: ProtocolError):
    return error(exc.status, exc.message, {"Connection": "close"} if exc.status in (408, 413) else None)


async def _http_error(_, exc: HTTPException):
    return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))  # 405 keeps its Allow


async def _validation_error(_, exc: RequestValidationError):
    return error(400, "; ".join(str(e.get("msg")) for e in exc.errors()) or "bad request")


async def _internal_error(_, exc: Exception):
    log.exception("internal error")
    return error(500, f"internal error: {type(exc).__name__}")


ERROR_HANDLERS = {ProtocolError: _protocol_error, HTTPException: _http_error,
                  RequestValidationError: _validation_error, Exception: _internal_error}


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the models (and gRPC, over the same state); on shutdown stop gRPC, then drain the models."""
    state: ServerState = app.state.server
    endpoint: GrpcEndpoint | None = app.state.grpc
    await state.start()
    grpc_server = None
    if endpoint is not None:
        from torch2ort.serve.grpc_server import start_grpc

        grpc_server = await start_grpc(state, endpoint.host, endpoint.port, endpoint.max_message_bytes)
        log.info("gRPC on %s:%d", endpoint.host, endpoint.port)
    log.info("serving %s", ", ".join(state.hosts))
    yield
    if grpc_server is not None:
        await grpc_server.stop(5.0)  # in-flight calls get 5 s, then are cancelled
    await state.stop()  # uvicorn has already let in-flight requests finish


def create_app(hosts: dict[str, ModelHost], max_body_mb: float = 64.0, read_timeout_s: float = 30.0,
               intake: int = INTAKE, token: str | None = None, metrics: Metrics | None = None,
               grpc_port: int | None = None, grpc_host: str = "127.0.0.1", ui: bool = True) -> FastAPI:
    """The app over loaded hosts. ``intake``: requests reading and parsing their body at once;
    ``token``: bearer token every route but health requires; ``grpc_port``: also serve the gRPC
    protocol there (``grpc_server.py``), started and stopped with the app, over the same state;
    ``ui``: serve the page at ``/`` (``routes/ui.py``)."""
    max_bytes = int(max_body_mb * 2**20)
    app = FastAPI(title="torch2ort server", version=__version__, lifespan=lifespan,
                  description="Open Inference Protocol (KServe v2) REST API over torch2ort bundles.")
    app.state.server = ServerState(hosts, metrics or Metrics(), token, intake)
    app.state.grpc = None if grpc_port is None else GrpcEndpoint(grpc_host, grpc_port, max_bytes)
    for exc_class, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    for router in routers(ui):
        app.include_router(router)
    oa.add_schemas(app, sorted(hosts), auth=token is not None)
    app.add_middleware(Guard, max_bytes=max_bytes, read_timeout_s=read_timeout_s)
    if token is not None:
        app.add_middleware(BearerAuth, token=token)  # outermost: nothing is read for a refused request
    return app
