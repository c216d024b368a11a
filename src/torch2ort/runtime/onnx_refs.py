"""List the external-data files an ONNX model refers to, without the onnx package.

The runtime must stay small (numpy + onnxruntime), so this walks the protobuf wire format
directly: ModelProto.graph -> GraphProto.{initializer, sparse_initializer, node.attribute} ->
TensorProto.external_data["location"], recursing into subgraphs and functions. Field numbers are
onnx.proto's (a test checks them against onnx's own descriptors); subgraphs nested deeper than
``MAX_DEPTH`` are refused rather than recursed into.
"""

from __future__ import annotations

from torch2ort.errors import WireError

# (message, field number) pairs that hold messages we must descend into.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE = 1, 5, 15
_FUNC_NODE, _FUNC_ATTR_PROTO = 7, 11
_NODE_ATTR = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
# protobuf's own default recursion limit is 100 messages; real models nest a few subgraphs at most.
MAX_DEPTH = 64
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) where value is a memoryview for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise WireError("truncated field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        yield number, wire, value


def _sub(buf: memoryview, *numbers: int):
    for number, wire, value in _fields(buf):
        if wire == 2 and number in numbers:
            yield number, value


def _tensor(buf: memoryview, out: list[str]) -> None:
    for _, entry in _sub(buf, _TENSOR_EXTERNAL):
        kv = {n: bytes(v).decode("utf-8", "replace") for n, v in _sub(entry, _ENTRY_KEY, _ENTRY_VALUE)}
        if kv.get(_ENTRY_KEY) == "location":
            out.append(kv.get(_ENTRY_VALUE, ""))


def _sparse(buf: memoryview, out: list[str]) -> None:
    for _, t in _sub(buf, _SPARSE_VALUES, _SPARSE_INDICES):
        _tensor(t, out)


def _attributes(attrs, out: list[str], depth: int) -> None:
    for attr in attrs:
        for number, value in _sub(attr, _ATTR_T, _ATTR_G, _ATTR_GRAPHS, _ATTR_TENSORS, _ATTR_SPARSE,
                                  _ATTR_SPARSES):
            if number in (_ATTR_T, _ATTR_TENSORS):
                _tensor(value, out)
            elif number in (_ATTR_SPARSE, _ATTR_SPARSES):
                _sparse(value, out)
            else:
                _graph(value, out, depth + 1)


def _nodes(bufs, out: list[str], depth: int) -> None:
    for node in bufs:
        _attributes([a for _, a in _sub(node, _NODE_ATTR)], out, depth)


def _graph(buf: memoryview, out: list[str], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"subgraphs nested more than {MAX_DEPTH} levels deep")
    nodes = []
    for number, value in _sub(buf, _GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE):
        if number == _GRAPH_INIT:
            _tensor(value, out)
        elif number == _GRAPH_SPARSE:
            _sparse(value, out)
        else:
            nodes.append(value)
    _nodes(nodes, out, depth)


def external_data_locations(model_bytes: bytes) -> list[str]:
    """Every external_data ``location`` in the model, in order, duplicates removed."""
    out: list[str] = []
    buf = memoryview(model_bytes)
    for number, value in _sub(buf, _MODEL_GRAPH, _MODEL_FUNCTIONS):
        if number == _MODEL_GRAPH:
            _graph(value, out)
        else:
            _nodes([v for _, v in _sub(value, _FUNC_NODE)], out, 0)
            _attributes([v for _, v in _sub(value, _FUNC_ATTR_PROTO)], out, 0)
    return list(dict.fromkeys(out))
