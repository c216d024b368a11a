"""Optional bearer-token auth (``--token-file``) for HTTP and gRPC; health checks stay open.

The token file holds one token (surrounding whitespace ignored); it must be a regular file of at
most 4 KiB (a FIFO would hang start-up, ``/dev/zero`` would be read until memory runs out). Clients send
``Authorization: Bearer <token>`` (gRPC: the ``authorization`` metadata key, same value). Tokens
are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import os
import stat
from pathlib import Path

from torch2ort.errors import UsageError

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/")  # "/": the page, which holds no data and asks for the token
CHALLENGE = b'Bearer realm="torch2ort"'


MAX_TOKEN_FILE = 4096  # bytes: a token is a line, not a document


def read_token(path: str | Path) -> str:
    """The token in ``path``, or UsageError (missing, unreadable, not a regular file, over 4 KiB, empty,
    or with spaces inside). Opened without blocking and checked before reading: a FIFO or a device is
    refused, never waited on or read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"--token-file {path}: not a regular file; give a file that holds the token")
        if info.st_size > MAX_TOKEN_FILE:
            raise UsageError(f"--token-file {path}: {info.st_size} bytes; a token file holds at most "
                             f"{MAX_TOKEN_FILE}")
        data = os.read(fd, MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE:  # it grew after the check
        raise UsageError(f"--token-file {path}: over {MAX_TOKEN_FILE} bytes; a token file holds at most that")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc})") from None
    if not token or any(c.isspace() for c in token) or not token.isprintable():
        raise UsageError(f"--token-file {path}: must hold one token (printable, no spaces)")
    return token


def authorized(header: str | bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` value carries ``token`` as a bearer token."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


class BearerAuth:
    """Pure ASGI middleware: 401 (with ``WWW-Authenticate``) unless the request carries the token."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if authorized(dict(scope.get("headers") or []).get(b"authorization"), self.token):
            return await self.app(scope, receive, send)
        body = json.dumps({"error": "missing or wrong bearer token (Authorization: Bearer <token>)"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", CHALLENGE)]})
        await send({"type": "http.response.body", "body": body})
