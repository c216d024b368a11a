"""OpenAI-compatible routes for generating bundles: ``GET /v1/models``, ``POST /v1/completions`` and
``POST /v1/chat/completions`` (only for a model whose tokenizer has a chat template), each with
``"stream": true`` as server-sent events ending in ``data: [DONE]``.

The request's ``model`` names a served generating bundle. OpenAI's defaults hold: ``temperature``
1 samples, ``temperature: 0`` is greedy (the same tokens as ``Bundle.generate``), ``max_tokens``
defaults to 16 for completions and to the rest of the context (capped by ``--max-new-tokens``) for
chat. Fields this server cannot honour (``n`` > 1, ``logprobs``, ``echo``, penalties other than 0)
are refused in one line rather than ignored. Errors take OpenAI's shape, ``{"error": {"message": "…",
"type", "param", "code"}}``, so OpenAI clients show the message (the message is the server's one line).
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from torch2ort.errors import ProtocolError
from torch2ort.serve import openapi as oa
from torch2ort.serve.gen_requests import ChatCompletion, Completion, load_object, params_of, validated
from torch2ort.serve.generation import complete, merged
from torch2ort.serve.routes import State
from torch2ort.serve.routes.generate import engine_of, start, streamed
from torch2ort.serve.sse import error_event, event

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}  # ours -> OpenAI's finish_reason
router = APIRouter()


@router.get("/v1/models", responses=oa.OPENAI_MODELS_RESPONSES)
async def models(s: State):
    """The served models that generate text or transcribe speech (``/v1/audio/transcriptions``)."""
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "torch2ort"}
                                       for n, h in sorted(s.hosts.items())
                                       if h.generation is not None or getattr(h, "transcribes", False)]}


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               408: "timeout_error", 413: "invalid_request_error", 503: "server_error"}


def openai_error(exc: ProtocolError) -> JSONResponse:
    """OpenAI's error object around the server's one line."""
    return JSONResponse({"error": {"message": exc.one_line(), "type": ERROR_TYPES.get(exc.status, "server_error"),
                                   "param": None, "code": exc.status}}, status_code=exc.status,
                        headers={"Connection": "close"} if exc.status in (408, 413) else None)


@router.post("/v1/completions", openapi_extra=oa.body("Completion"), responses=oa.OPENAI_RESPONSES)
async def completions(s: State, request: Request):
    try:
        return await _serve(s, request, chat=False)
    except ProtocolError as exc:
        return openai_error(exc)


@router.post("/v1/chat/completions", openapi_extra=oa.body("ChatCompletion"), responses=oa.OPENAI_RESPONSES)
async def chat_completions(s: State, request: Request):
    try:
        return await _serve(s, request, chat=True)
    except ProtocolError as exc:
        return openai_error(exc)


async def _serve(s, request: Request, chat: bool) -> Response:
    what = "chat completion request" if chat else "completion request"
    body = load_object(await request.body(), what)
    model = body.get("model")
    if not isinstance(model, str):
        raise ProtocolError(f"the {what} needs 'model': the name of a served model (GET /v1/models)")
    host = s.host_of(model)
    with s.metrics.track(model, "openai"):
        engine = engine_of(host)
        r = validated(ChatCompletion if chat else Completion, body, what)
        params = params_of(r, sample_by_default=True)
        prompts = [] if chat else [r.prompt] if isinstance(r.prompt, str) else list(r.prompt)

        def prepare():  # on the parse pool: render the chat, tokenise, check the caps
            if chat:
                return [engine.prepare(engine.render_chat(r.chat()), params, special_tokens=False, default_max=None)]
            return [engine.prepare(p, params) for p in prompts]

        prompts_n = 1 if chat else len(prompts)
        host.scheduler.admit()
        try:
            streams = await start(s, engine, prepare)
        except BaseException:
            host.scheduler.release()
            raise
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        head = {"id": ident, "created": created, "model": host.name}
        if r.stream:
            usage = bool(r.stream_options and r.stream_options.include_usage)
            return streamed(host, streams, _chunks(head, streams, chat, usage, prompts_n))
        try:
            results = await complete(streams, request.receive)
        finally:
            host.scheduler.release()
        if results is None:  # the client has gone
            return Response(status_code=400)
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                        "finish_reason": FINISH[c.finish_reason]} for i, c in enumerate(results)]
        else:
            choices = [{"index": i, "text": c.text, "logprobs": None, "finish_reason": FINISH[c.finish_reason]}
                       for i, c in enumerate(results)]
        usage = _usage(sum(c.prompt_tokens for c in results), sum(len(c.token_ids) for c in results))
        return JSONResponse(head | {"object": "chat.completion" if chat else "text_completion", "choices": choices,
                                    "usage": usage, "system_fingerprint": None})


async def _chunks(head: dict, streams, chat: bool, usage: bool, n: int):
    kind = {"object": "chat.completion.chunk" if chat else "text_completion"}
    prompt_tokens = sum(len(st.prepared.prompt_ids) for st in streams)
    made = 0
    try:
        if chat:
            for i in range(n):
                yield event(head | kind | {"choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                        "logprobs": None, "finish_reason": None}]})
        async for i, d in merged(streams):
            made += 1
            finish = FINISH[d.finish_reason] if d.finish_reason else None
            if chat:
                delta = {"content": d.text} if d.text else {}
                choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": i, "text": d.text, "logprobs": None, "finish_reason": finish}
            if d.text or finish:
                yield event(head | kind | {"choices": [choice]})
        if usage:
            yield event(head | kind | {"choices": [], "usage": _usage(prompt_tokens, made)})
        yield event("[DONE]")
    except Exception as exc:
        yield error_event(exc)


__all__ = ["router"]
