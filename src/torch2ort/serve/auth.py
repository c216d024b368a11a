"""Optional bearer-token auth (``--token-file``) for HTTP and gRPC; health checks stay open.

The token file holds one token (surrounding whitespace ignored). Clients send
``Authorization: Bearer <token>`` (gRPC: the ``authorization`` metadata key, same value). Tokens
are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from torch2ort.errors import UsageError

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
CHALLENGE = b'Bearer realm="torch2ort"'


def read_token(path: str | Path) -> str:
    """The token in ``path``, or UsageError (missing, unreadable, empty, or with spaces inside)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
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
