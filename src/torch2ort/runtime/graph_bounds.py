"""What a model's ONNX graph says its integer inputs may hold, read without the onnx package.

A token id past the embedding table, a negative id, a ``token_type_ids`` of 5 against a table of 2,
or a sequence longer than the position table all look like valid ``INT64 [batch, seq]`` tensors,
and ONNX Runtime refuses them only when it runs (issue 27, item 4). The graph knows the limits:

- ``Gather(table, x)``, with ``table`` an initializer (through Cast, Identity or
  DequantizeLinear) and ``x`` a graph input (through Cast, Reshape, Unsqueeze…), means
  ``0 <= x < rows(table)``. ONNX's Gather accepts ``-rows <= x < 0`` too, but counts from the end,
  where torch's ``nn.Embedding`` (what was exported) refuses negatives; so they are refused here.
- ``Gather(table, Range(0, Shape(x)[axis], 1))`` (or a Slice of a buffer up to that size: HF's
  ``position_ids[:, :seq]``) is a position table: ``1 <= x.shape[axis] <= rows(table)``.
- ORT's fused ``EmbedLayerNormalization`` carries the same three tables as inputs.

Anything else is left to the run itself (the server answers a refused run with a 400 for that
request alone: ``serve/scheduler.py``). Field numbers are onnx.proto's, walked with the wire reader
of ``onnx_refs.py``.
"""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch2ort.errors import PredictInputError, WireError
from torch2ort.runtime.onnx_refs import _MODEL_GRAPH, _fields, _sub, _varint

log = logging.getLogger("torch2ort.runtime")

_GRAPH_NODE, _GRAPH_INIT, _GRAPH_INPUT = 1, 5, 11
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP, _NODE_ATTR = 1, 2, 4, 5
_ATTR_NAME, _ATTR_I, _ATTR_T, _ATTR_INTS = 1, 3, 5, 8
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_INT32, _TENSOR_INT64, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 5, 7, 8, 9
_VALUE_NAME = 1
_INT_TYPES = {6: "<i4", 7: "<i8"}  # TensorProto.DataType INT32, INT64: the constants index arithmetic uses
VALUE_KEEPS = {"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand"}  # values pass unchanged
TABLE_KEEPS = {"Cast", "Identity", "DequantizeLinear"}  # a table's rows stay its rows
MAX_HOPS = 16


@dataclass
class _Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, object]


@dataclass
class _Graph:
    inputs: set[str] = field(default_factory=set)
    tables: dict[str, list[int]] = field(default_factory=dict)     # initializer -> dims
    consts: dict[str, np.ndarray] = field(default_factory=dict)    # small integer initializers and Constants
    producer: dict[str, _Node] = field(default_factory=dict)
    nodes: list[_Node] = field(default_factory=list)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(wire: int, value) -> list[int]:
    """A repeated int64 field: one varint, or a packed run of them."""
    if wire == 0:
        return [_signed(value)]
    if wire != 2:
        return []
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _tensor(buf: memoryview) -> tuple[str, list[int], np.ndarray | None]:
    """(name, dims, values when a small integer tensor)."""
    name, dims, dtype, raw, ints = "", [], 0, None, []
    for number, wire, value in _fields(buf):
        if number == _TENSOR_NAME and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif number == _TENSOR_DIMS:
            dims += _ints(wire, value)
        elif number == _TENSOR_TYPE and wire == 0:
            dtype = value
        elif number == _TENSOR_RAW and wire == 2 and len(value) <= 64:
            raw = bytes(value)
        elif number in (_TENSOR_INT64, _TENSOR_INT32):
            ints += _ints(wire, value)
    values = None
    if dtype in _INT_TYPES and int(np.prod(dims)) <= 8:
        if raw is not None:
            values = np.frombuffer(raw, _INT_TYPES[dtype]).astype(np.int64)
        elif ints:
            values = np.array(ints, np.int64)
    return name, dims, values


def _node(buf: memoryview) -> _Node:
    node = _Node("", [], [], {})
    for number, wire, value in _fields(buf):
        if number == _NODE_OP and wire == 2:
            node.op = bytes(value).decode("utf-8", "replace")
        elif number in (_NODE_INPUT, _NODE_OUTPUT) and wire == 2:
            (node.inputs if number == _NODE_INPUT else node.outputs).append(bytes(value).decode("utf-8", "replace"))
        elif number == _NODE_ATTR and wire == 2:
            name, val = "", None
            for n, w, v in _fields(value):
                if n == _ATTR_NAME and w == 2:
                    name = bytes(v).decode("utf-8", "replace")
                elif n == _ATTR_I and w == 0:
                    val = _signed(v)
                elif n == _ATTR_INTS:
                    val = (val or []) + _ints(w, v)
                elif n == _ATTR_T and w == 2:
                    val = _tensor(v)[2]
            node.attrs[name] = val
    return node


def _read(model: memoryview) -> _Graph:
    g = _Graph()
    for _, graph in _sub(model, _MODEL_GRAPH):
        for number, value in _sub(graph, _GRAPH_NODE, _GRAPH_INIT, _GRAPH_INPUT):
            if number == _GRAPH_INPUT:
                g.inputs |= {bytes(v).decode("utf-8", "replace") for _, v in _sub(value, _VALUE_NAME)}
            elif number == _GRAPH_INIT:
                name, dims, values = _tensor(value)
                g.tables[name] = dims
                if values is not None:
                    g.consts[name] = values
            else:
                node = _node(value)
                g.nodes.append(node)
                for out in node.outputs:
                    g.producer[out] = node
                if node.op == "Constant" and node.outputs:
                    v = node.attrs.get("value", node.attrs.get("value_int", node.attrs.get("value_ints")))
                    if v is not None:
                        g.consts[node.outputs[0]] = np.atleast_1d(np.asarray(v, np.int64))
    g.inputs -= set(g.tables)  # old exporters list initializers among the inputs
    return g


def _through(g: _Graph, name: str, ops: set[str]) -> str:
    """Follow ``name`` back through producers in ``ops`` (their first input) to where it starts."""
    for _ in range(MAX_HOPS):
        node = g.producer.get(name)
        if node is None or node.op not in ops or not node.inputs:
            return name
        name = node.inputs[0]
    return name


def _rows(g: _Graph, name: str) -> int | None:
    dims = g.tables.get(_through(g, name, TABLE_KEEPS))
    return dims[0] if dims else None


def _const(g: _Graph, name: str) -> list[int] | None:
    v = g.consts.get(name)
    return None if v is None else v.tolist()


def _dim_of(g: _Graph, name: str) -> tuple[str, int] | None:
    """(graph input, axis) when ``name`` is that input's size along ``axis``: Shape(x)[axis]."""
    name = _through(g, name, {"Squeeze", "Unsqueeze", "Cast", "Identity", "Reshape"})
    node = g.producer.get(name)
    if node is None:
        return None
    if node.op == "Gather" and len(node.inputs) == 2 and _const(g, node.inputs[1]) is not None:
        index, shape = _const(g, node.inputs[1]), g.producer.get(node.inputs[0])
        if len(index) == 1 and shape is not None and shape.op == "Shape" and "start" not in shape.attrs:
            node, start = shape, index[0]
        else:
            return None
    elif node.op == "Shape":
        start, end = node.attrs.get("start", 0), node.attrs.get("end")
        if end != start + 1:
            return None
    else:
        return None
    if start < 0 or not node.inputs or node.inputs[0] not in g.inputs:
        return None
    return node.inputs[0], start


def _positions(g: _Graph, name: str) -> tuple[str, int] | None:
    """(graph input, axis) when ``name`` is ``arange(x.shape[axis])`` (a Range, or a Slice of a buffer)."""
    node = g.producer.get(_through(g, name, VALUE_KEEPS))
    if node is None:
        return None
    if node.op == "Range" and len(node.inputs) == 3:
        if _const(g, node.inputs[0]) == [0] and _const(g, node.inputs[2]) == [1]:
            return _dim_of(g, node.inputs[1])
    elif node.op == "Slice" and len(node.inputs) >= 3 and _through(g, node.inputs[0], TABLE_KEEPS) in g.tables:
        if _const(g, node.inputs[1]) == [0]:
            return _dim_of(g, node.inputs[2])
    return None


@dataclass
class InputBounds:
    """``values``: input -> rows of the table it indexes (0 <= v < rows); ``dims``: (input, axis) ->
    the position table's rows (1 <= size <= rows)."""

    values: dict[str, int] = field(default_factory=dict)
    dims: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def of_graph(cls, model: bytes | memoryview | mmap.mmap) -> InputBounds:
        g = _read(memoryview(model))
        bounds = cls()
        for node in g.nodes:
            if node.op == "Gather" and len(node.inputs) == 2 and node.attrs.get("axis", 0) == 0:
                bounds._table(g, node.inputs[0], node.inputs[1])
            elif node.op == "EmbedLayerNormalization" and len(node.inputs) >= 5:  # ORT's fused BERT embeddings
                ids, segments, words, positions, segment_table = node.inputs[:5]
                bounds._add_value(g, ids, words)
                if segments:
                    bounds._add_value(g, segments, segment_table)
                rows = _rows(g, positions)
                if rows and ids in g.inputs:
                    bounds._add_dim((ids, 1), rows)
        return bounds

    @classmethod
    def of_file(cls, path: str | Path) -> InputBounds:
        """The bounds of the model at ``path`` (memory-mapped, not read); none when it does not parse."""
        try:
            with open(path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            log.debug("no input bounds for %s: %s", path, exc)
            return cls()
        try:
            return cls._of_mapped(mapped, path)
        finally:
            try:
                mapped.close()
            except BufferError:  # a view still held somewhere: the mapping goes when it does
                pass

    @classmethod
    def _of_mapped(cls, mapped: mmap.mmap, path) -> InputBounds:
        try:
            return cls.of_graph(memoryview(mapped))
        except (WireError, ValueError, IndexError) as exc:
            log.debug("no input bounds for %s: %s", path, exc)
        return cls()  # here, past the except block: the traceback and its views are gone

    def _table(self, g: _Graph, table: str, indices: str) -> None:
        if self._add_value(g, indices, table):
            return
        rows, dim = _rows(g, table), _positions(g, indices)
        if rows and dim is not None:
            self._add_dim(dim, rows)

    def _add_value(self, g: _Graph, indices: str, table: str) -> bool:
        source, rows = _through(g, indices, VALUE_KEEPS), _rows(g, table)
        if rows is None or source not in g.inputs:
            return False
        self.values[source] = min(self.values.get(source, rows), rows)
        return True

    def _add_dim(self, dim: tuple[str, int], rows: int) -> None:
        self.dims[dim] = min(self.dims.get(dim, rows), rows)

    def check(self, feed: dict[str, np.ndarray]) -> None:
        """PredictInputError naming the first input outside its bounds (the server's 400)."""
        for (name, axis), rows in self.dims.items():
            arr = feed.get(name)
            if arr is not None and arr.ndim > axis and not 1 <= arr.shape[axis] <= rows:
                raise PredictInputError(f"input {name!r} dim {axis} is {arr.shape[axis]}; the model's position table "
                                    f"takes 1 to {rows}")
        for name, rows in self.values.items():
            arr = feed.get(name)
            if arr is None or arr.size == 0 or arr.dtype.kind not in "iu":
                continue
            low, high = int(arr.min()), int(arr.max())
            if low < 0 or high >= rows:
                bad = low if low < 0 else high
                raise PredictInputError(f"input {name!r} holds {bad}; the model's table for it has {rows} rows, "
                                    f"so values must be 0 to {rows - 1}")


__all__ = ["InputBounds"]
