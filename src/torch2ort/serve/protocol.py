"""Open Inference Protocol (KServe v2) tensors: JSON and the binary tensor data extension.

Torch-free and framework-free: ``parse_request(body, header_length, caps)`` turns a request body
into named numpy arrays plus the requested outputs; ``encode_response(...)`` turns outputs into a
JSON or binary-extension body. Every malformed input raises ``ProtocolError`` with an HTTP status,
whatever the body (types, sizes, nesting, huge integers): a 400, never another exception.

Non-finite floats (NaN, ±Infinity) in outputs: JSON has no token for them, so JSON ``data`` holds
``null`` in their place, and every output holding one, JSON or binary, says
``"parameters": {"non_finite": true}`` (binary data keeps the IEEE values).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torch2ort.errors import ProtocolError

# OIP datatype <-> numpy dtype
DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64", "BYTES": "object"}
NUMPY_TO_OIP = {np.dtype(v): k for k, v in DATATYPES.items() if k != "BYTES"}
HEADER = "Inference-Header-Content-Length"
MAX_ELEMENTS = 2**31                  # elements in one tensor
MAX_NESTING = 32                      # list depth of 'data' (shapes have at most 16 dims)


@dataclass(frozen=True)
class Caps:
    """Per-request limits checked while parsing, before any large allocation."""

    max_rows: int = 1024              # first dim of every input; elements of a BYTES input
    max_text_chars: int = 100_000     # characters in one BYTES element
    max_file_bytes: int = 32 * 2**20  # bytes in one element of a file input, checked before decoding
    files: frozenset[str] = frozenset()  # BYTES inputs that carry encoded files (bytes, not text)
    decode_timeout_s: float = 30.0    # parsing and decoding one request (the route's deadline, not the parser's)


def oip_datatype(dtype: str | np.dtype) -> str:
    if str(dtype) in ("str", "object", "bytes"):
        return "BYTES"
    try:
        return NUMPY_TO_OIP[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ProtocolError(f"no Open Inference Protocol datatype for {dtype}", 500) from None


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[str] | None = None             # None: all outputs
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False                 # request-level binary_data_output
    parameters: dict = field(default_factory=dict)


def _obj(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _flag(params: dict, key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where} parameter {key!r} must be true or false, got {json.dumps(value)[:40]}")
    return value


def _count(name: str, shape: list[int], caps: Caps) -> int:
    """Elements of ``shape`` with exact integers (no int64 wrap-around), within the caps.

    A zero dim makes the count 0 but not the shape small: ``[0, 10**30]`` or ``[0, 3, 64, 2**62]``
    still breaks numpy's reshape (issue 27, item 5), so the other dims are bounded as if it were 1.
    """
    count = span = 1
    for d in shape:
        count, span = count * d, span * max(d, 1)
        if span > MAX_ELEMENTS:
            raise ProtocolError(f"input {name!r}: shape {str(shape)[:80]} is too large "
                                f"(over {MAX_ELEMENTS} elements, counting a 0 dim as 1)")
    if shape and shape[0] > caps.max_rows:
        raise ProtocolError(f"input {name!r}: {shape[0]} rows; at most {caps.max_rows} per request (--max-rows)")
    return count


def parse_request(body: bytes, header_length: str | None, caps: Caps = Caps()) -> InferRequest:
    """Parse an infer body; ``header_length`` is the Inference-Header-Content-Length header, if any."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER} must be an integer, got {header_length!r}") from None
        if n < 0 or n > len(body):
            raise ProtocolError(f"{HEADER} is {n} but the body has {len(body)} bytes")
        head, binary = body[:n], memoryview(body)[n:]
    else:
        head, binary = body, memoryview(b"")
    try:
        doc = json.loads(head)
    except RecursionError:
        raise ProtocolError("the request JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers over Python's digit limit
        raise ProtocolError(f"the request is not valid JSON: {exc}") from None
    doc = _obj(doc, "the request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("the request needs a non-empty 'inputs' list")
    req_id = doc.get("id")
    if "id" in doc and not isinstance(req_id, str):  # null too: the document says a string
        raise ProtocolError("'id' must be a string")
    params = _obj(doc.get("parameters", {}), "'parameters'")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, spec in enumerate(raw_inputs):
        spec = _obj(spec, f"inputs[{i}]")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{i}] needs a 'name'")
        if name in inputs:
            raise ProtocolError(f"input {name!r} is given twice")
        datatype, shape = spec.get("datatype"), spec.get("shape")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise ProtocolError(f"input {name!r}: datatype {repr(datatype)[:40]}; valid: {', '.join(DATATYPES)}")
        if (not isinstance(shape, list) or any(not isinstance(d, int) or isinstance(d, bool) or d < 0
                                                for d in shape) or len(shape) > 16):
            raise ProtocolError(f"input {name!r}: 'shape' must be a list of non-negative integers")
        count = _count(name, shape, caps)
        if datatype == "BYTES" and count > caps.max_rows:
            raise ProtocolError(f"input {name!r}: {count} BYTES elements; at most {caps.max_rows} per request "
                                "(--max-rows)")
        in_params = _obj(spec.get("parameters", {}), f"input {name!r} parameters")
        size = in_params.get("binary_data_size")
        if "binary_data_size" in in_params:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise ProtocolError(f"input {name!r}: binary_data_size {size!r} does not fit the "
                                    f"{len(binary)} binary bytes after the JSON header")
            chunk = binary[offset:offset + size]
            offset += size
            inputs[name] = _from_binary(name, datatype, shape, count, chunk, caps)
        else:
            if "data" not in spec:
                raise ProtocolError(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
            inputs[name] = _from_json(name, datatype, shape, count, spec["data"], caps)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} binary bytes after the JSON header belong to no input")
    outputs, binary_outputs = None, set()
    if "outputs" in doc:
        if not isinstance(doc["outputs"], list):
            raise ProtocolError("'outputs' must be a list")
        outputs = []
        for j, o in enumerate(doc["outputs"]):
            o = _obj(o, f"outputs[{j}]")
            if not isinstance(o.get("name"), str):
                raise ProtocolError(f"outputs[{j}] needs a 'name'")
            outputs.append(o["name"])
            if _flag(_obj(o.get("parameters", {}), f"output {o['name']!r} parameters"), "binary_data",
                     f"output {o['name']!r}"):
                binary_outputs.add(o["name"])
    return InferRequest(inputs, req_id, outputs, binary_outputs, _flag(params, "binary_data_output", "request"),
                        params)


def _flatten(name: str, data: Any, limit: int) -> list:
    """Nested lists to one flat list, without recursion; more than ``limit`` values is an error."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    out: list = []
    stack = [iter(data)]
    while stack:
        item = next(stack[-1], stack)
        if item is stack:
            stack.pop()
        elif isinstance(item, list):
            if len(stack) >= MAX_NESTING:
                raise ProtocolError(f"input {name!r}: 'data' is nested more than {MAX_NESTING} deep")
            if list in set(map(type, item)):
                stack.append(iter(item))
            else:  # a innermost row: one C-speed extend, not a Python step per value
                out.extend(item)
        else:
            out.append(item)
        if len(out) > limit:
            break
    return out


def file_too_large(name: str, size: int, caps: Caps) -> ProtocolError:
    return ProtocolError(f"input {name!r}: a file of {size:,} bytes; at most {caps.max_file_bytes:,} per file "
                         "(--max-file-mb)", 413)


def _files_from_base64(name: str, shape: list[int], flat: list) -> np.ndarray:
    """A file input's JSON ``data``: one base64 string per file, sized before it is decoded."""
    if not all(isinstance(v, str) for v in flat):
        raise ProtocolError(f"input {name!r}: a file travels in JSON as a base64 string")
    return np.array(flat, dtype=object).reshape(shape)


def decode_files(name: str, arr: np.ndarray, caps: Caps) -> np.ndarray:
    """Base64 strings (JSON) to bytes; every file's size is checked against ``--max-file-mb`` first."""
    out = []
    for v in arr.ravel():
        if isinstance(v, str):
            if len(v) // 4 * 3 > caps.max_file_bytes + 2:  # the decoded size, from the text's length
                raise file_too_large(name, len(v) // 4 * 3, caps)
            try:
                v = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(f"input {name!r}: a file in JSON must be base64 (RFC 4648, no line breaks)"
                                    ) from None
        if len(v) > caps.max_file_bytes:
            raise file_too_large(name, len(v), caps)
        out.append(v)
    return np.array(out, dtype=object).reshape(arr.shape)


def _from_json(name: str, datatype: str, shape: list[int], count: int, data: Any, caps: Caps) -> np.ndarray:
    flat = _flatten(name, data, count)
    if len(flat) != count:
        raise ProtocolError(f"input {name!r}: shape {shape} needs {count} values, 'data' has {len(flat)}")
    if datatype == "BYTES" and name in caps.files:
        return decode_files(name, _files_from_base64(name, shape, flat), caps)
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"input {name!r}: BYTES data must be strings")
        if any(len(v) > caps.max_text_chars for v in flat):
            raise ProtocolError(f"input {name!r}: a BYTES element is longer than {caps.max_text_chars} characters "
                                "(--max-text-chars)")
        return np.array(flat, dtype=object).reshape(shape)
    kinds = set(map(type, flat))  # JSON gives exactly bool, int, float, str, dict, list or None
    if datatype == "BOOL":
        if kinds - {bool}:
            raise ProtocolError(f"input {name!r}: BOOL data must be true/false")
    elif kinds - {int, float}:
        raise ProtocolError(f"input {name!r}: {datatype} data must be numbers")
    elif datatype not in ("FP16", "FP32", "FP64") and float in kinds:
        raise ProtocolError(f"input {name!r}: {datatype} data must be integers")
    try:
        with np.errstate(over="raise", invalid="raise"):
            arr = np.array(flat, dtype=np.float64 if datatype.startswith("FP") else None)
            if datatype.startswith(("INT", "UINT")):
                info = np.iinfo(DATATYPES[datatype])
                if flat and (min(flat) < info.min or max(flat) > info.max):
                    raise ProtocolError(f"input {name!r}: values out of range for {datatype}")
            return arr.astype(DATATYPES[datatype]).reshape(shape)
    except (OverflowError, FloatingPointError, ValueError) as exc:
        raise ProtocolError(f"input {name!r}: {exc}") from None


def _from_binary(name: str, datatype: str, shape: list[int], count: int, chunk: memoryview,
                 caps: Caps, copy: bool = True) -> np.ndarray:
    """``copy=False``: a read-only view of ``chunk`` (gRPC: a bytes object of its own, which the
    array then keeps alive) instead of a copy (HTTP: a slice of the whole body)."""
    if datatype == "BYTES":
        items, pos, data = [], 0, bytes(chunk)
        while pos < len(data):
            if pos + 4 > len(data):
                raise ProtocolError(f"input {name!r}: truncated BYTES element length")
            if len(items) >= count:
                raise ProtocolError(f"input {name!r}: shape {shape} needs {count} elements, the data has more")
            n = int.from_bytes(data[pos:pos + 4], "little")
            if name in caps.files:  # an encoded file: kept as bytes, sized before anything decodes it
                if n > caps.max_file_bytes:
                    raise file_too_large(name, n, caps)
                if pos + 4 + n > len(data):
                    raise ProtocolError(f"input {name!r}: BYTES element overruns the binary data")
                items.append(data[pos + 4:pos + 4 + n])
                pos += 4 + n
                continue
            if n > 4 * caps.max_text_chars:
                raise ProtocolError(f"input {name!r}: a BYTES element is longer than {caps.max_text_chars} "
                                    "characters (--max-text-chars)")
            if pos + 4 + n > len(data):
                raise ProtocolError(f"input {name!r}: BYTES element overruns the binary data")
            try:
                items.append(data[pos + 4:pos + 4 + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise ProtocolError(f"input {name!r}: BYTES elements must be UTF-8 text") from None
            if len(items[-1]) > caps.max_text_chars:
                raise ProtocolError(f"input {name!r}: a BYTES element is longer than {caps.max_text_chars} "
                                    "characters (--max-text-chars)")
            pos += 4 + n
        if len(items) != count:
            raise ProtocolError(f"input {name!r}: shape {shape} needs {count} elements, got {len(items)}")
        return np.array(items, dtype=object).reshape(shape)
    dtype = np.dtype(DATATYPES[datatype])
    if len(chunk) != count * dtype.itemsize:
        raise ProtocolError(f"input {name!r}: {datatype} {shape} needs {count * dtype.itemsize} bytes, "
                            f"binary_data_size is {len(chunk)}")
    arr = np.frombuffer(chunk, dtype=dtype).reshape(shape)
    arr = arr.copy() if copy else arr
    if datatype == "BOOL" and arr.size and arr.view(np.uint8).max() > 1:
        raise ProtocolError(f"input {name!r}: BOOL bytes must be 0 or 1")
    return arr


def _bytes_payload(arr: np.ndarray) -> bytes:
    parts = []
    for item in arr.ravel():
        b = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts += [len(b).to_bytes(4, "little"), b]
    return b"".join(parts)


def encode_response(model: str, version: str | None, outputs: dict[str, np.ndarray], req: InferRequest
                    ) -> tuple[bytes, dict[str, str]]:
    """The response body and headers; outputs asked for as binary go after the JSON header."""
    entries, blobs = [], []
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        entry: dict[str, Any] = {"name": name, "datatype": oip_datatype(arr.dtype), "shape": list(arr.shape)}
        finite = arr.dtype.kind != "f" or bool(np.isfinite(arr).all())
        params: dict[str, Any] = {} if finite else {"non_finite": True}
        if name in req.binary_outputs or req.binary_default:
            blob = _bytes_payload(arr) if arr.dtype == object else np.ascontiguousarray(arr).tobytes()
            params["binary_data_size"] = len(blob)
            blobs.append(blob)
        else:
            flat = arr.ravel()
            if arr.dtype == object:
                entry["data"] = [str(x) for x in flat]
            elif finite:
                entry["data"] = flat.tolist()
            else:  # JSON has no NaN or Infinity: null in their place
                entry["data"] = [v if math.isfinite(v) else None for v in flat.tolist()]
        if params:
            entry["parameters"] = params
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model, "outputs": entries}
    if version:
        doc["model_version"] = version
    if req.id is not None:
        doc["id"] = req.id
    head = json.dumps(doc, allow_nan=False).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream", HEADER.lower(): str(len(head))}
