"""``POST /v2/models/{name}[/versions/{v}]/infer``: admission before reading, parsing off the event loop.

A request takes a queue slot first (503 when full), then, once its body flows (``SMALL_BODY`` bytes
in, or all of it), one of the server's reading slots while the body is read and then parsed (JSON,
BYTES, tokenizing) on the parse pool, never on the event loop; so health checks answer while large
requests are in flight, idle connections cannot hold the slots, and memory is bounded by
``intake × --max-body-mb`` of bodies, plus ``SMALL_BODY`` per waiting request, plus ``PARSERS``
parses at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from torch2ort.errors import ProtocolError
from torch2ort.serve import openapi as oa
from torch2ort.serve.host import ModelHost
from torch2ort.serve.protocol import HEADER, encode_response, parse_request
from torch2ort.serve.routes import State
from torch2ort.serve.state import HELD_BACK, ServerState

log = logging.getLogger("torch2ort.serve")
INLINE_ENCODE = 64 * 1024  # outputs up to this many bytes are encoded on the event loop
SMALL_BODY = 256 * 1024    # bytes a request may read before it needs a reading slot
STALL_S = 5.0              # inside a slot, the longest wait for the body's next bytes
router = APIRouter()


@router.post("/v2/models/{name}/infer", openapi_extra=oa.INFER_BODY, responses=oa.INFER_RESPONSES)
@router.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=oa.INFER_BODY, responses=oa.INFER_RESPONSES)
async def infer(s: State, name: str, request: Request, version: str | None = None):
    host = s.host_of(name, version)
    with s.metrics.track(name, "http"):
        if host.generation is not None:  # a decoder: text_input in, text_output out (routes/generate.py)
            from torch2ort.serve.routes.generate import infer_text

            return await infer_text(s, host, request)
        return await _infer(s, host, request)


async def _infer(s: ServerState, host: ModelHost, request: Request) -> Response:
    scheduler = host.scheduler
    scheduler.admit()  # a queue slot first (or 503): nothing is read or parsed for a request we cannot take
    timed = s.metrics.timed
    try:
        with timed(host.name, "http", "read"):
            body = await _read_body(s, request)  # returns holding a reading slot
        with timed(host.name, "http", "decode"):
            req, feed, wanted = await s.decode(_parse(s, host, body, request.headers.get(HEADER)),
                                               host.compute.caps.decode_timeout_s)
        del body
        outputs = await scheduler.infer(feed)
        chosen = {k: outputs[k] for k in wanted}
        with timed(host.name, "http", "encode"):
            if sum(v.nbytes for v in chosen.values()) <= INLINE_ENCODE:  # microseconds: not worth a thread hop
                content, headers = encode_response(host.name, host.version, chosen, req)
            else:
                loop = asyncio.get_running_loop()
                content, headers = await loop.run_in_executor(s.parse_pool, encode_response, host.name,
                                                              host.version, chosen, req)
    except ClientDisconnect:  # the client went away mid-body: nobody to answer, nothing to log loudly
        log.debug("client disconnected while sending a request to %s", host.name)
        return Response(status_code=400)
    finally:
        scheduler.release()
    return Response(content, headers=headers)


async def _parse(s: ServerState, host: ModelHost, body: bytearray, header: str | None):
    """Parse, validate and decode (files, text) off the event loop: (request, feed, outputs)."""
    loop = asyncio.get_running_loop()
    if s.large_json(body, header):  # off the GIL: see ServerState.parse_procs
        parsed = await loop.run_in_executor(s.parse_procs, parse_request, bytes(body), header, host.compute.caps)
        return await loop.run_in_executor(s.parse_pool, host.compute.finish, parsed)
    return await loop.run_in_executor(s.parse_pool, host.compute.prepare, body, header)


async def _acquire(s: ServerState, request: Request) -> None:
    """A reading slot; the wait is the server's, so the body's read deadline (``app.Guard``) moves by it."""
    start = time.monotonic()
    await s.reading.acquire()
    held_back = request.scope.get("state", {}).get(HELD_BACK)
    if held_back is not None:
        held_back[0] += time.monotonic() - start


async def _read_body(s: ServerState, request: Request) -> bytearray:
    """The whole body, returned holding one of the server's reading slots (the caller releases it).

    The slot is taken only once ``SMALL_BODY`` bytes have arrived, or the body is complete: a client
    that sends headers and then nothing waits outside the slots (until --read-timeout-s, a 408), so a
    few idle connections cannot hold the intake shut (issue 27, item 8). Inside a slot, the body must
    keep coming: a stall of ``STALL_S`` is a 408, so a slot is never held for long by a trickle.
    """
    body = bytearray()  # one growing buffer: no list of chunks plus a joined copy
    chunks = request.stream().__aiter__()
    held = False
    try:
        while True:
            try:
                chunk = await (asyncio.wait_for(chunks.__anext__(), STALL_S) if held else chunks.__anext__())
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ProtocolError(f"the request body stalled for {STALL_S:g} s", 408) from None
            body += chunk
            if not held and len(body) > SMALL_BODY:
                await _acquire(s, request)
                held = True
        if not held:
            await s.reading.acquire()
            held = True
        return body
    except BaseException:
        if held:
            s.reading.release()
        raise
