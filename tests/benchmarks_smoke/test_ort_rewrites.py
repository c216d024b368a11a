"""benchmarks/ort_rewrites.py keeps every output while handing 1-D convs and ConvTranspose to ORT's NCHWc kernels."""

from __future__ import annotations

import copy
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ort_rewrites import conv1d_as_2d, convtranspose_as_conv, upsample_convtranspose_as_conv  # noqa: E402

RNG = np.random.default_rng(0)


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32) * 0.3, name)


def _run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def _resnet1d() -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], kernel_shape=[7], pads=[3, 3], strides=[2]),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[3], pads=[1, 1], strides=[2]),
             helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"], kernel_shape=[3], pads=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3], pads=[1, 1], dilations=[1]),
             helper.make_node("Add", ["c2", "p0"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("ReduceMean", ["r2", "ax"], ["y"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "resnet1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("r1", TensorProto.FLOAT, ["batch", 8, 16])],  # lifted, and an output
        [_w("w0", 8, 4, 7), _w("b0", 8), _w("w1", 8, 8, 3), _w("b1", 8), _w("w2", 8, 8, 3),
         numpy_helper.from_array(np.array([2], dtype=np.int64), "ax")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _decoder() -> onnx.ModelProto:
    nodes = [helper.make_node("ConvTranspose", ["x", "t0", "tb0"], ["u0"], kernel_shape=[3, 3], strides=[1, 1]),
             helper.make_node("Relu", ["u0"], ["r0"]),
             helper.make_node("ConvTranspose", ["r0", "t1", "tb1"], ["y"], kernel_shape=[4, 4], strides=[2, 2],
                              pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "decoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 9, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 22, 18])],
        [_w("t0", 5, 6, 3, 3), _w("tb0", 6), _w("t1", 6, 3, 4, 4), _w("tb1", 3)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_conv1d_as_2d_lifts_the_whole_chain_and_keeps_every_output():
    feed = {"x": RNG.standard_normal((2, 4, 64)).astype(np.float32)}
    original = _resnet1d()
    before = _run(original, feed)
    model, n = conv1d_as_2d(copy.deepcopy(original))
    onnx.checker.check_model(model)
    ops = Counter(nd.op_type for nd in model.graph.node)
    # 3 Conv + 1 MaxPool lifted; one Unsqueeze in, one Squeeze per 3-D tensor needed after (y's input, r1)
    assert n == 4 and ops["Unsqueeze"] == 1 and ops["Squeeze"] == 2
    for a, b in zip(before, _run(model, feed)):
        assert a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("upsample", [False, True])
def test_convtranspose_as_conv_is_the_same_function(upsample):
    feed = {"x": RNG.standard_normal((1, 5, 9, 7)).astype(np.float32)}
    original = _decoder()
    (before,) = _run(original, feed)
    model, n = convtranspose_as_conv(copy.deepcopy(original))
    assert n == 1  # the stride-1 one; the stride-2 one is left for the phase rewrite
    if upsample:
        model, n2 = upsample_convtranspose_as_conv(model)
        assert n2 == 1 and "ConvTranspose" not in {nd.op_type for nd in model.graph.node}
    onnx.checker.check_model(model)
    (after,) = _run(model, feed)
    assert after.shape == before.shape == (1, 3, 22, 18)
    assert np.allclose(after, before, rtol=1e-4, atol=1e-5)
