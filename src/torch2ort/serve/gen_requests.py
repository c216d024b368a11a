"""The request bodies of the generation routes, as strict pydantic models, and their one-line errors.

Strict: a number must be a JSON number (not ``"5"``, not ``true``), whole where it is a count, and
finite (``NaN`` and ``Infinity`` are not JSON, and are refused as such); an unknown field is an
error that lists the valid ones. The OpenAPI document is made from these same models
(``openapi.generation_schemas``), so what it promises is what the server checks.

- ``TritonGenerate``: Triton's generate extension, ``{"text_input", "parameters"}``; as in Triton,
  the parameters may also sit at the top level of the request;
- ``Completion``, ``ChatCompletion``: OpenAI's ``/v1/completions`` and ``/v1/chat/completions``
  (the fields this server implements; OpenAI fields it cannot honour accept only their neutral value);
- ``params_of``: any of them to the engine's ``GenerateParams``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from torch2ort.errors import ProtocolError
from torch2ort.serve.generation import GenerateParams

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
Count = Annotated[int, Field(ge=1, le=2**31)]
Stop = Annotated[str, Field(min_length=1, max_length=1000)]
Stops = Stop | Annotated[list[Stop], Field(max_length=16)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Penalty = Annotated[float, Field(gt=0, le=100)]
TopP = Annotated[float, Field(gt=0, le=1)]
TopK = Annotated[int, Field(ge=0, le=2**31)]
MinTokens = Annotated[int, Field(ge=0, le=2**16)]
Prompt = Annotated[str, Field(min_length=1)]
Zero = Annotated[float, Field(ge=0, le=0)]  # an OpenAI penalty this server does not apply: only its neutral value


class GenerationFields(BaseModel):
    """Triton-style generation parameters (also OIP infer's request ``parameters`` for a generating model)."""

    model_config = STRICT
    max_tokens: Count | None = None
    max_new_tokens: Count | None = None
    min_tokens: MinTokens | None = None
    min_new_tokens: MinTokens | None = None
    temperature: Annotated[float, Field(ge=0, le=100)] | None = None
    top_k: TopK | None = None
    top_p: TopP | None = None
    repetition_penalty: Penalty | None = None
    seed: Seed | None = None
    random_seed: Seed | None = None
    stop: Stops | None = None
    stop_words: Stops | None = None
    do_sample: bool | None = None
    stream: bool | None = None


class TritonGenerate(GenerationFields):
    """``POST /v2/models/{name}/generate``: ``text_input`` and optional ``parameters``."""

    text_input: Prompt
    id: str | None = None
    parameters: GenerationFields | None = None


class StreamOptions(BaseModel):
    model_config = STRICT
    include_usage: bool | None = None


class _OpenAI(BaseModel):
    model_config = STRICT
    model: Annotated[str, Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: TopP | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop | Annotated[list[Stop], Field(max_length=4)] | None = None
    seed: Seed | None = None
    user: str | None = None
    presence_penalty: Zero | None = None
    frequency_penalty: Zero | None = None
    logit_bias: None = None
    # extensions (vLLM's names): transformers' top-k, repetition penalty and minimum length
    top_k: TopK | None = None
    repetition_penalty: Penalty | None = None
    min_tokens: MinTokens | None = None


class Completion(_OpenAI):
    """``POST /v1/completions``: one prompt, or a list of them (each its own choice)."""

    prompt: Prompt | Annotated[list[Prompt], Field(min_length=1, max_length=16)]
    max_tokens: Count | None = None
    echo: bool | None = None  # false only (checked in params_of: a strict Literal[False] would take 0)
    logprobs: None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    suffix: None = None


class TextPart(BaseModel):
    model_config = STRICT
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = STRICT
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | Annotated[list[TextPart], Field(max_length=64)] | None = None
    name: str | None = None


class ChatCompletion(_OpenAI):
    """``POST /v1/chat/completions``: messages rendered with the model's chat template."""

    messages: Annotated[list[Message], Field(min_length=1, max_length=256)]
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    logprobs: bool | None = None  # false only (params_of)
    top_logprobs: None = None

    def chat(self) -> list[dict]:
        """The messages as the template sees them: text parts joined into one string."""
        out = []
        for m in self.messages:
            content = m.content if not isinstance(m.content, list) else "".join(p.text for p in m.content)
            out.append({"role": m.role, "content": content or ""} | ({"name": m.name} if m.name else {}))
        return out


def _one(a: Any, b: Any, names: str) -> Any:
    if a is not None and b is not None:
        raise ProtocolError(f"give {names}, not both")
    return a if a is not None else b


def params_of(r: GenerationFields | _OpenAI, sample_by_default: bool) -> GenerateParams:
    """The engine's parameters. Sampling: ``do_sample`` when given; else on when ``sample_by_default``
    (OpenAI's, whose temperature defaults to 1) or when a sampling knob is set; temperature 0 is greedy."""
    if isinstance(r, GenerationFields):
        max_new = _one(r.max_tokens, r.max_new_tokens, "max_tokens or max_new_tokens")
        min_new = _one(r.min_tokens, r.min_new_tokens, "min_tokens or min_new_tokens")
        seed = _one(r.seed, r.random_seed, "seed or random_seed")
        stop = _one(r.stop, r.stop_words, "stop or stop_words")
        explicit = r.do_sample
    else:
        max_new = getattr(r, "max_tokens", None)
        if isinstance(r, ChatCompletion):
            max_new = _one(r.max_tokens, r.max_completion_tokens, "max_tokens or max_completion_tokens")
        min_new, seed, stop, explicit = r.min_tokens, r.seed, r.stop, None
        for name in ("echo", "logprobs"):
            if getattr(r, name, None):
                raise ProtocolError(f"{name}: true is not supported by this server; leave it out")
    knobs = (r.temperature not in (None, 0)) or (r.top_k or 0) > 0 or (r.top_p is not None and r.top_p < 1)
    sample = explicit if explicit is not None else (sample_by_default or knobs)
    if r.temperature == 0:
        if explicit:
            raise ProtocolError("do_sample with temperature 0: temperature 0 is greedy decoding; give a temperature "
                                "above 0 to sample")
        sample = False
    return GenerateParams(max_new_tokens=max_new, min_new_tokens=min_new or 0, do_sample=bool(sample),
                          temperature=r.temperature or 1.0, top_k=r.top_k or None,
                          top_p=1.0 if r.top_p is None else r.top_p,
                          repetition_penalty=r.repetition_penalty or 1.0, seed=seed,
                          stop=tuple([stop] if isinstance(stop, str) else stop or ()))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def load_object(body: bytes, what: str) -> dict:
    """The request body as a JSON object, or ProtocolError(400) in one line."""
    try:
        doc = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise ProtocolError(f"the {what} JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, over-long integers
        raise ProtocolError(f"the {what} is not valid JSON: {' '.join(str(exc).split())[:160]}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"the {what} must be a JSON object")
    return doc


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def validated(model: type[BaseModel], doc: Any, what: str):
    """``model`` from a parsed JSON value, or ProtocolError(400) naming the first problem in one line."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        e = errors[0]
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and ("[" in p or "-" in p or p in _TYPE_TAGS
                                                                                  or p.startswith("literal"))))
        if e["type"] == "extra_forbidden":
            where, _, key = loc.rpartition(".")
            message = (f"unknown field {key!r} in {where + ' of ' if where else ''}the {what}; "
                       f"fields: {', '.join(_fields(model, e['loc'][:-1]))}")
        elif e["type"] == "missing":
            message = f"the {what} needs {loc!r}"
        else:
            message = f"{loc or what}: {' '.join(str(e['msg']).split())}"
        more = len({tuple(x["loc"][:1]) for x in errors}) - 1
        raise ProtocolError(message[:400] + (f" (and {more} more)" if more > 0 else "")) from None


def _fields(model: type[BaseModel], path: tuple) -> list[str]:
    """The field names valid where an unknown one was found (the top level, or a nested object)."""
    target: Any = model
    for part in path:
        field = getattr(target, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is None:
            break
        inner = [a for a in getattr(field.annotation, "__args__", (field.annotation,))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            break
        target = inner[0]
    return list(getattr(target, "model_fields", {}) or model.model_fields)


__all__ = ["ChatCompletion", "Completion", "GenerationFields", "TritonGenerate", "load_object", "params_of",
           "validated"]
