"""lift1d: 1-D convs as 2-D ones of unit height compute what they did, and ORT's NCHWc layout takes them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from torch2ort.optimization.passes import PassContext, PassError, pass_class
from torch2ort.optimization.passes.lift1d import conv1d_count
from torch2ort.optimization.planner import plan_auto


def _resnet1d(path, opset: int = 18) -> None:
    """Conv-Relu-MaxPool, a residual block, a head that leaves the lifted region, and a lifted output."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], kernel_shape=[7], pads=[3, 3], strides=[2]),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[3], pads=[1, 1], strides=[2]),
             helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"], kernel_shape=[3], pads=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3], pads=[2, 2], dilations=[2]),
             helper.make_node("Add", ["c2", "p0"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("ReduceMean", ["r2", "ax"], ["y"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "resnet1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("r1", TensorProto.FLOAT, ["batch", 8, 16])],
        [w("w0", 8, 4, 7), w("b0", 8), w("w1", 8, 8, 3), w("b1", 8), w("w2", 8, 8, 3),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "ax")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))


def _optimised_ops(path, tmp_path) -> dict[str, int]:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "ort-all.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    ops: dict[str, int] = {}
    for n in onnx.load(opts.optimized_model_filepath).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def test_lifted_convs_compute_the_same_and_join_ort_nchwc(tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "lifted.onnx"
    _resnet1d(src)
    result = pass_class("lift1d")()(src, out, PassContext(tmp_path))
    assert result.changed and result.details["lifted"] == 4  # three Conv and the MaxPool
    assert conv1d_count(onnx.load(str(src)).graph) == 3 and conv1d_count(onnx.load(str(out)).graph) == 0
    x = np.random.default_rng(1).standard_normal((2, 4, 64)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for r, g in zip(ref, got):
        assert r.shape == g.shape and np.allclose(r, g, atol=1e-5, rtol=1e-5)
    # ORT blocks the lifted convs (NCHWc reorders appear) and fuses the residual Add and Relu into them
    before, after = _optimised_ops(src, tmp_path), _optimised_ops(out, tmp_path)
    reorders = ("ReorderInput", "ReorderOutput")
    assert not any(r in before for r in reorders) and any(r in after for r in reorders)
    assert before.get("Add", 0) == 1 and "Add" not in after and "Relu" not in after


def test_auto_offers_it_only_where_there_are_1d_convs(tmp_path):
    _resnet1d(tmp_path / "m.onnx")
    conv2d = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], "conv2d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")])
    onnx.save(helper.make_model(conv2d, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "c.onnx"))

    def labels(path) -> list[str]:
        return ["+".join(p.label for p in chain) for chain in plan_auto(path, ["CPUExecutionProvider"])[0]]

    assert "lift1d" in labels(tmp_path / "m.onnx") and "lift1d" not in labels(tmp_path / "c.onnx")


def test_an_old_opset_is_refused_with_a_reason(tmp_path):
    _resnet1d(tmp_path / "old.onnx", opset=12)
    with pytest.raises(PassError, match="opset 13"):
        pass_class("lift1d")()(tmp_path / "old.onnx", tmp_path / "out.onnx", PassContext(tmp_path))
