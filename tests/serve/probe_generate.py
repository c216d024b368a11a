"""Probes for issue 25 part 6 (serving generation) against the probe server, whose models do not generate:
every generation route answers them with a one-line 4xx (never a 500, never an event stream), and
``/v1/models`` lists none. The generating side is tested on a real decoder in ``test_generation.py``."""

from __future__ import annotations

import json
from collections.abc import Callable

from serve.probes import Target, expect, request

Probe = Callable[[Target], "str | None"]


def _one_line(t: Target, path: str, body: bytes, status: int, needle: str, openai: bool = False) -> str | None:
    resp = request(t.url, "POST", path, body, {"Content-Type": "application/json"})
    problem = expect(resp, status)
    if problem:
        return problem
    error = json.loads(resp[2])["error"]
    message = error.get("message") if openai and isinstance(error, dict) else error
    if not isinstance(message, str) or "\n" in message or needle not in message:
        return f"not a one-line error naming {needle!r}: {resp[2][:160]!r}"
    return None


def _doc(**fields) -> bytes:
    return json.dumps(fields).encode()


FAMILIES: dict[str, dict[str, Probe]] = {"generation (25.6)": {
    "generate-on-a-classifier": lambda t: _one_line(t, "/v2/models/mobilenet/generate", _doc(text_input="hi"), 400,
                                                    "does not generate"),
    "generate-stream-on-an-encoder": lambda t: _one_line(t, "/v2/models/encoder/generate_stream",
                                                         _doc(text_input="hi"), 400, "does not generate"),
    "generate-unknown-model": lambda t: _one_line(t, "/v2/models/nope/generate", _doc(text_input="hi"), 404,
                                                  "unknown model"),
    "completions-on-an-encoder": lambda t: _one_line(t, "/v1/completions", _doc(model="encoder", prompt="hi"), 400,
                                                     "does not generate", openai=True),
    "chat-on-an-encoder": lambda t: _one_line(t, "/v1/chat/completions", _doc(
        model="encoder", messages=[{"role": "user", "content": "hi"}]), 400, "does not generate", openai=True),
    "completions-bad-json": lambda t: _one_line(t, "/v1/completions", b'{"model": "encoder", "prompt": NaN}', 400,
                                                "not valid JSON", openai=True),
    "models-lists-none": lambda t: None if json.loads(request(t.url, "GET", "/v1/models")[2]) == {
        "object": "list", "data": []} else "/v1/models lists models that do not generate",
}}
