"""runtime/graph_bounds.py: the id and sequence bounds an ONNX graph states, read from its bytes, checked against
what ONNX Runtime itself accepts and refuses on the same graphs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from torch2ort.errors import PredictInputError
from torch2ort.runtime.graph_bounds import InputBounds

VOCAB, TYPES, POSITIONS, DIM = 30, 2, 8, 4


def _init(name: str, arr) -> TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def bert_like(positions: str = "slice", constant_nodes: bool = False) -> bytes:
    """Word and token-type embeddings (ids through a Cast), plus a position table indexed by
    ``position_ids[:, :seq]`` (HF BERT's buffer slice) or ``arange(seq)`` (a Range)."""
    nodes = [helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.INT64),
             helper.make_node("Gather", ["words", "ids"], ["w"]),
             helper.make_node("Gather", ["token_types", "token_type_ids"], ["t"]),
             helper.make_node("Shape", ["input_ids"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["seq"], axis=0)]
    inits = [_init("words", np.random.rand(VOCAB, DIM).astype(np.float32)),
             _init("token_types", np.random.rand(TYPES, DIM).astype(np.float32)),
             _init("table", np.random.rand(POSITIONS, DIM).astype(np.float32))]
    if constant_nodes:
        nodes.insert(0, helper.make_node("Constant", [], ["one"], value_int=1))
        nodes.insert(0, helper.make_node("Constant", [], ["zero"], value=_init("z", np.array(0, np.int64))))
    else:
        inits += [_init("one", np.array(1, np.int64)), _init("zero", np.array(0, np.int64))]
    if positions == "slice":
        inits += [_init("position_ids", np.arange(POSITIONS, dtype=np.int64)[None]),
                  _init("zeros1", np.array([0], np.int64)), _init("axes1", np.array([1], np.int64))]
        nodes += [helper.make_node("Unsqueeze", ["seq", "zeros1"], ["seq1"]),
                  helper.make_node("Slice", ["position_ids", "zeros1", "seq1", "axes1"], ["pos"])]
    else:
        inits.append(_init("step", np.array(1, np.int64)))
        nodes += [helper.make_node("Range", ["zero", "seq", "step"], ["range"]),
                  helper.make_node("Unsqueeze", ["range", "zeros1"], ["pos"])]
        inits.append(_init("zeros1", np.array([0], np.int64)))
    nodes += [helper.make_node("Gather", ["table", "pos"], ["p"]),
              helper.make_node("Add", ["w", "t"], ["wt"]), helper.make_node("Add", ["wt", "p"], ["h"])]
    graph = helper.make_graph(nodes, "bert_like",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "seq"]),
                               helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("positions, constant_nodes", [("slice", False), ("range", False), ("range", True)])
def test_bert_like_bounds_match_what_onnxruntime_accepts(positions, constant_nodes):
    model = bert_like(positions, constant_nodes)
    bounds = InputBounds.of_graph(model)
    assert bounds.values == {"input_ids": VOCAB, "token_type_ids": TYPES}
    assert bounds.dims == {("input_ids", 1): POSITIONS}
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    def feed(ids, types):
        return {"input_ids": np.array(ids, np.int32), "token_type_ids": np.array(types, np.int64)}

    good = [feed([[0, VOCAB - 1]], [[0, 1]]), feed([[1] * POSITIONS], [[0] * POSITIONS])]
    for f in good:
        bounds.check(f)
        session.run(None, f)
    refused = {"past the vocab": feed([[0, VOCAB]], [[0, 0]]), "token type 5": feed([[0, 1]], [[0, 5]]),
               "too long": feed([[1] * (POSITIONS + 1)], [[0] * (POSITIONS + 1)])}
    for f in refused.values():
        with pytest.raises(PredictInputError, match="table"):
            bounds.check(f)
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error types
            session.run(None, f)
    with pytest.raises(PredictInputError, match="holds -1"):  # onnx Gather would wrap it; torch's Embedding refuses it
        bounds.check(feed([[0, -1]], [[0, 0]]))
    with pytest.raises(PredictInputError, match="dim 1 is 0"):
        bounds.check(feed(np.zeros((1, 0)), np.zeros((1, 0))))


def test_fused_embed_layer_normalization():
    inits = [_init("w", np.zeros((VOCAB, DIM), np.float32)), _init("p", np.zeros((POSITIONS, DIM), np.float32)),
             _init("s", np.zeros((TYPES, DIM), np.float32))]
    node = helper.make_node("EmbedLayerNormalization", ["ids", "types", "w", "p", "s", "g", "b"], ["out", "mask"],
                            domain="com.microsoft")
    graph = helper.make_graph([node], "fused", [helper.make_tensor_value_info(n, TensorProto.INT32, ["b", "s"])
                                                for n in ("ids", "types")],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    bounds = InputBounds.of_graph(helper.make_model(graph).SerializeToString())
    assert bounds.values == {"ids": VOCAB, "types": TYPES} and bounds.dims == {("ids", 1): POSITIONS}


def test_no_bound_where_the_graph_does_not_state_one():
    """An index computed from the input (T5's relative buckets, an Add) or from an intermediate's
    shape bounds nothing: refusing there could refuse what the model takes."""
    nodes = [helper.make_node("Add", ["x", "one"], ["x1"]), helper.make_node("Gather", ["table", "x1"], ["y"]),
             helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "one"], ["n"]),
             helper.make_node("Div", ["n", "two"], ["half"]),
             helper.make_node("Range", ["zero", "half", "one"], ["buckets"]),
             helper.make_node("Gather", ["table", "buckets"], ["z"])]
    inits = [_init("table", np.zeros((5, 2), np.float32)), _init("one", np.array(1, np.int64)),
             _init("two", np.array(2, np.int64)), _init("zero", np.array(0, np.int64))]
    graph = helper.make_graph(nodes, "free", [helper.make_tensor_value_info("x", TensorProto.INT64, ["b", "s"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    bounds = InputBounds.of_graph(helper.make_model(graph).SerializeToString())
    assert bounds.values == {} and bounds.dims == {}


def test_unreadable_files_have_no_bounds(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    for name in ("empty.onnx", "junk.onnx", "missing.onnx"):
        bounds = InputBounds.of_file(tmp_path / name)
        assert bounds.values == {} and bounds.dims == {}
