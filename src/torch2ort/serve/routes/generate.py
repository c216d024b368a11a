"""Triton's generate extension, ``POST /v2/models/{name}[/versions/{v}]/generate`` and ``…/generate_stream``
(server-sent events), and OIP infer with a BYTES ``text_input`` for a generating bundle.

Every generation request takes a queue slot of its model first (503 when full), then is parsed,
checked and tokenised off the event loop, then joins the model's decode loop
(``generation.GenerationEngine``). A request whose client disconnects is dropped from the loop
before its next step, streamed or not. Refused before any token: a one-line ``{"error": …}`` with
a 4xx (or 503); once a stream has begun: a last ``data: {"error": …}`` event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from torch2ort.errors import ProtocolError
from torch2ort.serve import openapi as oa
from torch2ort.serve.gen_requests import GenerationFields, TritonGenerate, load_object, params_of, validated
from torch2ort.serve.generation import GenerateParams, GenerationEngine, Prepared, Stream, complete, merged
from torch2ort.serve.host import ModelHost
from torch2ort.serve.protocol import HEADER, encode_response, parse_request
from torch2ort.serve.routes import State
from torch2ort.serve.sse import EventStream, error_event, event
from torch2ort.serve.state import ServerState

TEXT_INPUT, TEXT_OUTPUT = "text_input", "text_output"
router = APIRouter()


def engine_of(host: ModelHost) -> GenerationEngine:
    if host.generation is None:
        raise ProtocolError(f"model {host.name!r} does not generate text (not a text-generation bundle); "
                            f"use /v2/models/{host.name}/infer")
    return host.generation


async def start(s: ServerState, engine: GenerationEngine, prepare: Callable[[], list[Prepared]]) -> list[Stream]:
    """Check and tokenise on the parse pool (``prepare``), then join the decode loop."""
    prepared = await asyncio.get_running_loop().run_in_executor(s.parse_pool, prepare)
    return [engine.submit(p) for p in prepared]


def streamed(host: ModelHost, streams: list[Stream], source: AsyncIterator[str]) -> EventStream:
    """An SSE answer; when it ends, or its client goes away, the streams are cancelled and the slot released."""
    def close() -> None:
        for st in streams:
            st.cancel()
        host.scheduler.release()

    return EventStream(source, close)


def _triton(body: bytes) -> tuple[TritonGenerate, GenerateParams]:
    r = validated(TritonGenerate, load_object(body, "generate request"), "generate request")
    top = {k: v for k, v in r.model_dump(exclude_none=True).items()
           if k in GenerationFields.model_fields}
    inner = r.parameters.model_dump(exclude_none=True) if r.parameters else {}
    twice = sorted(set(top) & set(inner))
    if twice:
        raise ProtocolError(f"{', '.join(twice)}: given both at the top level and in 'parameters'; give each once")
    fields = GenerationFields.model_validate(top | inner)
    return r, params_of(fields, sample_by_default=False)


def _head(host: ModelHost, r: TritonGenerate) -> dict:
    return {"model_name": host.name, "model_version": host.version} | ({"id": r.id} if r.id is not None else {})


@router.post("/v2/models/{name}/generate", openapi_extra=oa.body("TritonGenerate"), responses=oa.GENERATE_RESPONSES)
@router.post("/v2/models/{name}/versions/{version}/generate", openapi_extra=oa.body("TritonGenerate"),
             responses=oa.GENERATE_RESPONSES)
async def generate(s: State, name: str, request: Request, version: str | None = None):
    host = s.host_of(name, version)
    with s.metrics.track(name, "generate"):
        engine = engine_of(host)
        host.scheduler.admit()
        try:
            r, params = _triton(await request.body())
            if r.stream or (r.parameters and r.parameters.stream):
                raise ProtocolError(f"stream: true is for /v2/models/{name}/generate_stream")
            streams = await start(s, engine, lambda: [engine.prepare(r.text_input, params)])
            results = await complete(streams, request.receive)
        finally:
            host.scheduler.release()
        if results is None:  # the client has gone: nobody reads this
            return Response(status_code=400)
        c = results[0]
        return JSONResponse(_head(host, r) | {TEXT_OUTPUT: c.text, "token_ids": c.token_ids,
                                              "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens})


@router.post("/v2/models/{name}/generate_stream", openapi_extra=oa.body("TritonGenerate"),
             responses=oa.GENERATE_STREAM_RESPONSES)
@router.post("/v2/models/{name}/versions/{version}/generate_stream", openapi_extra=oa.body("TritonGenerate"),
             responses=oa.GENERATE_STREAM_RESPONSES)
async def generate_stream(s: State, name: str, request: Request, version: str | None = None):
    host = s.host_of(name, version)
    with s.metrics.track(name, "generate"):
        engine = engine_of(host)
        host.scheduler.admit()
        try:
            r, params = _triton(await request.body())
            streams = await start(s, engine, lambda: [engine.prepare(r.text_input, params)])
        except BaseException:
            host.scheduler.release()
            raise
        head = _head(host, r)

        async def source():
            try:
                async for _, d in merged(streams):
                    yield event(head | {TEXT_OUTPUT: d.text, "token_ids": [d.token]}
                                | ({"finish_reason": d.finish_reason} if d.finish_reason else {}))
            except Exception as exc:
                yield error_event(exc)

        return streamed(host, streams, source())


async def infer_text(s: ServerState, host: ModelHost, request: Request) -> Response:
    """OIP infer on a generating bundle: BYTES ``text_input`` of shape [N] (N prompts, generated side by side)
    in, BYTES ``text_output`` out; the request's ``parameters`` are the generation parameters."""
    engine = engine_of(host)
    host.scheduler.admit()
    try:
        body = await request.body()
        loop = asyncio.get_running_loop()
        req = await loop.run_in_executor(s.parse_pool, parse_request, bytes(body), request.headers.get(HEADER),
                                         host.compute.caps)
        texts = req.inputs.get(TEXT_INPUT)
        if set(req.inputs) != {TEXT_INPUT} or texts.dtype != object or texts.ndim != 1 or texts.size == 0:
            raise ProtocolError(f"model {host.name!r} generates text: send one BYTES input {TEXT_INPUT!r} of shape "
                                "[N] (N >= 1 prompts)")
        wanted = req.outputs if req.outputs is not None else [TEXT_OUTPUT]
        if any(o != TEXT_OUTPUT for o in wanted):
            raise ProtocolError(f"unknown outputs {[o for o in wanted if o != TEXT_OUTPUT]}; outputs: {TEXT_OUTPUT}")
        extra = {k: v for k, v in req.parameters.items() if k != "binary_data_output"}
        params = params_of(validated(GenerationFields, extra, "request parameters"), sample_by_default=False)
        streams = await start(s, engine, lambda: [engine.prepare(str(t), params) for t in texts])
        results = await complete(streams, request.receive)
    finally:
        host.scheduler.release()
    if results is None:
        return Response(status_code=400)
    outputs = {TEXT_OUTPUT: np.array([c.text for c in results], dtype=object)} if wanted else {}
    content, headers = encode_response(host.name, host.version, outputs, req)
    return Response(content, headers=headers)


__all__ = ["engine_of", "infer_text", "router", "start", "streamed"]
