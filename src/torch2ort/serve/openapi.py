"""The server's OpenAPI document: every status the routes send, and the infer and generation request bodies.

The infer route reads its raw body itself (JSON or the binary tensor extension), so its request
schema is declared here by hand, with the same rules ``protocol.parse_request`` enforces on
structure: a non-empty ``inputs`` list, non-negative integer shapes, known datatypes, and typed
parameters (``binary_data`` and ``binary_data_output`` are booleans).
"""

from __future__ import annotations

from torch2ort.serve.protocol import DATATYPES

ERROR_REF = {"$ref": "#/components/schemas/Error"}


def error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


MODEL_RESPONSES = {404: error_response("unknown model or version")}
READY_RESPONSES = MODEL_RESPONSES | {503: error_response("not ready")}
INFER_RESPONSES = {
    200: {"description": "outputs: JSON, or the binary tensor extension (a JSON header, then tensor bytes)",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
                      "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    400: error_response("malformed request, or inputs the model cannot take (a corrupt or hostile file "
                        "included: unreadable, over the pixel or duration limits, an unsafe archive)"),
    404: error_response("unknown model or version"),
    408: error_response("the request body was not received in time (--read-timeout-s)"),
    413: error_response("body over --max-body-mb, or a file over --max-file-mb"),
    503: error_response("model not ready, its queue is full (--queue), or decoding took longer than "
                        "--decode-timeout-s"),
}
INDEX_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}
INDEX_RESPONSES = {
    200: {"description": "the served models", "content": {"application/json": {"schema": {
        "type": "array", "items": {"type": "object", "required": ["name", "state"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "state": {"type": "string"},
            "reason": {"type": "string"}}}}}}},
    400: error_response("a body that is not {\"ready\": bool}"),
    408: error_response("the request body was not received in time (--read-timeout-s)"),
    413: error_response("body over --max-body-mb"),
}
_GEN_ERRORS = {
    400: error_response("malformed request, a field out of range, an empty prompt, a prompt or max_tokens over "
                        "the caps (--max-prompt-tokens, --max-new-tokens, the model's context), or a model that "
                        "does not generate text"),
    404: error_response("unknown model or version"),
    408: error_response("the request body was not received in time (--read-timeout-s)"),
    413: error_response("body over --max-body-mb"),
    503: error_response("model not ready, its queue is full (--queue), or the generation took longer than "
                        "--generate-timeout-s"),
}
# each server-sent event, as an object (``data`` holds one JSON document, or OpenAI's closing [DONE])
_SSE = {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
    "data": {"type": "string"}, "event": {"type": "string"}}}}}
GENERATE_RESPONSES = {200: {"description": "the generated text", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/GenerateResponse"}}}}} | _GEN_ERRORS
GENERATE_STREAM_RESPONSES = {200: {"description": "server-sent events, one generate response per token; an error "
                                                  "after the first is a last data: {\"error\": …} event",
                                   "content": _SSE}} | _GEN_ERRORS
_OPENAI_ERROR = {"$ref": "#/components/schemas/OpenAIError"}
OPENAI_RESPONSES = {200: {"description": "an OpenAI completion object, or with stream: true server-sent chunks "
                                         "ending in data: [DONE]",
                          "content": {"application/json": {"schema": {"type": "object"}}} | _SSE}} | {
    code: {"description": r["description"], "content": {"application/json": {"schema": _OPENAI_ERROR}}}
    for code, r in _GEN_ERRORS.items()}
TRANSCRIPTION_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "model"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "an encoded audio file (wav, flac, ogg…)"},
        "model": {"type": "string", "description": "a served speech-recognition model"},
        "response_format": {"type": "string", "enum": ["json", "text"], "default": "json"},
        "language": {"type": "string", "description": "ISO-639-1; only the language the bundle transcribes"},
        "temperature": {"type": "number", "description": "0 only (greedy)"},
        "prompt": {"type": "string", "description": "refused unless empty"}}}}}}}
TRANSCRIPTION_RESPONSES = {200: {"description": "the transcript: {\"text\": …}, or with response_format text the "
                                                "text itself",
                                 "content": {"application/json": {"schema": {"type": "object", "required": ["text"]}},
                                             "text/plain": {"schema": {"type": "string"}}}}} | {
    code: {"description": d, "content": {"application/json": {"schema": _OPENAI_ERROR}}} for code, d in {
        400: "malformed form, a missing or empty file, not audio, a field this server does not honour, or a "
             "model that does not transcribe speech",
        404: "unknown model",
        408: "the request body was not received in time (--read-timeout-s)",
        413: "body over --max-body-mb, or the file over --max-file-mb",
        503: "model not ready, or its queue is full (--queue)"}.items()}
OPENAI_MODELS_RESPONSES = {200: {"description": "the served models that generate text or transcribe speech",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["object", "data"]}}}}}


def body(schema: str) -> dict:
    """A route's JSON request body, by the name of its schema in ``generation_schemas``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "$ref": f"#/components/schemas/{schema}"}}}}}


def generation_schemas() -> dict:
    """The generation request bodies, made from the same pydantic models the routes validate with."""
    from torch2ort.serve.gen_requests import ChatCompletion, Completion, TritonGenerate

    out: dict = {}
    for model in (TritonGenerate, Completion, ChatCompletion):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    out["OpenAIError"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}}}}}
    out["GenerateResponse"] = {"type": "object", "required": ["model_name", "text_output"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "text_output": {"type": "string"}, "token_ids": {"type": "array", "items": {"type": "integer"}},
        "finish_reason": {"type": "string", "enum": ["eos", "stop", "length"]},
        "prompt_tokens": {"type": "integer"}}}
    return out


METRICS_RESPONSES = {200: {"description": "Prometheus text exposition format",
                           "content": {"text/plain": {"schema": {"type": "string"}}}}}
UNAUTHORIZED = error_response("no or wrong bearer token (only with --token-file)")
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
# a 2x2 PNG, whole and cut short: a file input's JSON form (one base64 string per file), answered or refused
_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGM8IRfFwMDAxMDAwMDAAAAPmAFE4knAJgAAAABJRU5ErkJggg=="
FILE_EXAMPLES = {
    "image_file": {"summary": "an encoded image file, base64 (bundles whose preprocess starts from an image)",
                   "value": {"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [1], "data": [_PNG]}]}},
    "corrupt_file": {"summary": "a corrupt image file: a 400 with one line",
                     "value": {"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [1],
                                           "data": [_PNG[:40]]}]}},
}
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}, "examples": FILE_EXAMPLES},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

# 'data' is flat, or nested as deep as the shape (the server accepts any depth up to 32; spelled out
# to 3 levels here, since an open recursive schema trips schemathesis' generator)
_SCALAR = {"type": ["number", "boolean", "string"]}
_VALUE = {"anyOf": [_SCALAR, {"type": "array", "items": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}}]}
_TENSOR_PARAMS = {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}
_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string", "minLength": 1},
    "shape": {"type": "array", "maxItems": 16, "items": {"type": "integer", "minimum": 0}},
    "datatype": {"type": "string", "enum": list(DATATYPES)},
    "parameters": _TENSOR_PARAMS, "data": {"type": "array", "items": _VALUE}},
    "anyOf": [{"required": ["data"]},  # JSON data, or bytes after the JSON header
              {"required": ["parameters"], "properties": {"parameters": {"required": ["binary_data_size"]}}}]}
SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}}}},
    "InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                "datatype": {"type": "string"},
                "parameters": {"type": "object", "properties": {
                    "binary_data_size": {"type": "integer"}, "non_finite": {"type": "boolean"}}},
                "data": {"type": "array"}}}}}},
}


def add_schemas(app, models: list[str], auth: bool = False) -> None:
    """Put SCHEMAS into the generated document (FastAPI only sees the routes), and served model names
    as examples of the ``name`` path parameter (so generated requests reach real models too). With
    ``auth``: a bearer security scheme, required (with its 401) everywhere but health."""
    base = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS | generation_schemas())
        for body in ("Completion", "ChatCompletion"):  # served names, so generated requests reach real models
            if models:
                schema["components"]["schemas"][body]["properties"]["model"]["examples"] = models
        if auth:
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                if auth and path not in OPEN_PATHS:
                    operation["security"] = [{"bearer": []}]
                    operation.setdefault("responses", {})["401"] = UNAUTHORIZED
                for param in operation.get("parameters", []):
                    if param.get("in") == "path" and param["name"] in ("name", "version") and models:
                        param["schema"]["examples"] = models if param["name"] == "name" else ["1"]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
