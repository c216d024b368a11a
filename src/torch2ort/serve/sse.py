"""Server-sent events for streamed generation, which stop generating when the client goes away.

``EventStream`` is an ASGI response: it sends each string its source yields as one ``data:``
event, and watches the connection while it does. When the client disconnects, ``on_close`` runs at
once (the routes cancel their streams there, so the decode loop drops them before their next
step), not only when the next event fails to send.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response

from torch2ort.errors import ProtocolError
from torch2ort.serve.generation import until_disconnect

log = logging.getLogger("torch2ort.serve")
HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
           (b"x-accel-buffering", b"no")]


def event(doc: dict | str) -> str:
    """One SSE event: ``data: <json>`` and a blank line (``data: [DONE]`` for a plain string)."""
    return f"data: {doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False)}\n\n"


def error_event(exc: BaseException) -> str:
    """An error after the 200 went out: ``data: {"error": …}`` (Triton's form; the openai client raises on it)."""
    if isinstance(exc, ProtocolError):
        return event({"error": exc.one_line()})
    log.error("generation failed: %r", exc)
    return event({"error": f"internal error: {type(exc).__name__}"})


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(self, source: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(status_code=200)
        self.source, self.on_close = source, on_close

    async def __call__(self, scope, receive, send) -> None:
        watcher = asyncio.ensure_future(until_disconnect(receive))
        closed = False

        def close(_=None) -> None:
            nonlocal closed
            if not closed:
                closed = True
                self.on_close()

        watcher.add_done_callback(lambda t: t.cancelled() or close())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            async for chunk in self.source:
                if watcher.done():
                    break
                await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            if not watcher.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-send
            pass
        finally:
            watcher.cancel()
            close()
            await self.source.aclose()
