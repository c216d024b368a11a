"""OpenAI-compatible ``POST /v1/audio/transcriptions`` for speech-recognition (Whisper) bundles.

A multipart form, as OpenAI's clients send it: ``file`` (an encoded audio file) and ``model`` (a served
speech-recognition bundle), and optionally ``response_format`` (``json``, the default: ``{"text": …}``, or
``text``: the transcript as plain text), ``language`` (accepted only when it is the language the bundle's
forced prefix transcribes), ``temperature`` (``0`` only: transcripts are greedy, as ``Bundle.predict``'s) and
``prompt`` (empty only). Anything else (``verbose_json``, ``srt``, ``vtt``, timestamps, streaming, another
language) is refused in one line rather than ignored. The file goes through the model's queue and worker
thread as an OIP infer request does (``transcription.SpeechCompute``), so its transcript is ``Bundle.predict``'s.
Errors take OpenAI's shape (``routes/openai.py``).
"""

from __future__ import annotations

import math

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from torch2ort.errors import ProtocolError
from torch2ort.serve import openapi as oa
from torch2ort.serve.host import ModelHost
from torch2ort.serve.protocol import file_too_large
from torch2ort.serve.routes import State
from torch2ort.serve.routes.openai import openai_error
from torch2ort.serve.transcription import AUDIO_INPUT, TEXT_OUTPUT

FIELDS = ("file", "model", "response_format", "language", "temperature", "prompt", "stream")
FORMATS = ("json", "text")
router = APIRouter()


@router.post("/v1/audio/transcriptions", openapi_extra=oa.TRANSCRIPTION_BODY, responses=oa.TRANSCRIPTION_RESPONSES)
async def transcriptions(s: State, request: Request):
    try:
        return await _transcribe(s, request)
    except ProtocolError as exc:
        return openai_error(exc)


async def _form(request: Request) -> dict:
    """The form's fields (each once), or ProtocolError(400) for a body that is not a multipart form."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ProtocolError("a transcription request is a multipart/form-data form with 'file' and 'model'")
    try:
        form = await request.form(max_files=1, max_fields=len(FIELDS))
    except HTTPException as exc:  # starlette's for a malformed form, too many fields or files
        raise ProtocolError(f"the form: {exc.detail}", exc.status_code) from None
    keys = list(form.keys())
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ProtocolError(f"form fields {twice} are given more than once; give each once")
    unknown = sorted(k for k in keys if k not in FIELDS)
    if unknown:
        raise ProtocolError(f"form fields {unknown} are not served; fields: {', '.join(FIELDS)}")
    return dict(form)


def _text(form: dict, key: str) -> str | None:
    value = form.get(key)
    if isinstance(value, UploadFile):
        raise ProtocolError(f"form field {key!r} must be text, not a file")
    return value


def _host(s, form: dict) -> ModelHost:
    model = _text(form, "model")
    if not model:
        raise ProtocolError("the transcription request needs 'model': the name of a served speech-recognition model")
    host = s.host_of(model)
    if not getattr(host, "transcribes", False):
        served = sorted(n for n, h in s.hosts.items() if getattr(h, "transcribes", False))
        raise ProtocolError(f"model {model!r} does not transcribe speech; models that do: "
                            f"{', '.join(served) or 'none served'}")
    return host


def _check(host: ModelHost, form: dict) -> str:
    """The response format, once every optional field is one this server honours."""
    fmt = _text(form, "response_format") or "json"
    if fmt not in FORMATS:
        raise ProtocolError(f"response_format {fmt[:40]!r} is not served; formats: {', '.join(FORMATS)}")
    language = _text(form, "language")
    if language:
        own = host.compute.language_token()
        if own != f"<|{language}|>":
            said = f"{own.strip('<|>')!r}" if own else "the language its generation config fixes"
            raise ProtocolError(f"language {language[:20]!r}: model {host.name!r} transcribes {said} only")
    temperature = _text(form, "temperature")
    if temperature is not None:
        try:
            value = float(temperature)
        except ValueError:
            raise ProtocolError(f"temperature {temperature[:20]!r} is not a number") from None
        if value != 0 or not math.isfinite(value):
            raise ProtocolError(f"temperature {temperature[:20]}: transcripts are greedy here; only 0 is served")
    if _text(form, "prompt"):
        raise ProtocolError("prompt is not served: the bundle's forced prefix starts every transcript")
    if (_text(form, "stream") or "false").lower() != "false":
        raise ProtocolError("stream is not served for transcriptions; leave it out or false")
    return fmt


async def _transcribe(s, request: Request) -> Response:
    form = await _form(request)
    host = _host(s, form)
    with s.metrics.track(host.name, "openai"):
        fmt = _check(host, form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ProtocolError("the transcription request needs 'file': an audio file (wav, flac, ogg…) sent as "
                                "a file in the form")
        if upload.size is not None and upload.size > host.compute.caps.max_file_bytes:
            raise file_too_large("file", upload.size, host.compute.caps)
        data = await upload.read()
        if not data:
            raise ProtocolError(f"the file {upload.filename or ''!r} is empty")
        host.scheduler.admit()
        try:
            feed = host.compute.validate({AUDIO_INPUT: np.array([data], dtype=object)})
            del data
            text = str((await host.scheduler.infer(feed))[TEXT_OUTPUT][0])
        finally:
            host.scheduler.release()
    if fmt == "text":
        return PlainTextResponse(text)
    return JSONResponse({"text": text})


__all__ = ["router"]
