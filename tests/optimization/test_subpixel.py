"""subpixel: every ConvTranspose it rewrites computes what the ConvTranspose did, as Conv + DepthToSpace."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from torch2ort.optimization.passes import PassContext, pass_class


def _model(path, k: int, s: int, pads: list[int], bias: bool, size: int = 5, cin: int = 3, cout: int = 4, **attrs):
    rng = np.random.default_rng(k * 10 + s)
    inits = [numpy_helper.from_array(rng.normal(size=(cin, cout, k, k)).astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(size=cout).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="up", strides=[s, s], pads=pads,
                            kernel_shape=[k, k], **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize(("k", "s", "pads", "bias"), [
    (4, 2, [1, 1, 1, 1], False),   # the lip-sync decoder's up-sampling
    (5, 1, [0, 0, 0, 0], False),   # its 1x1 -> 5x5 first stage
    (2, 2, [0, 0, 0, 0], True),
    (3, 2, [1, 1, 0, 0], True),    # asymmetric pads: output 2n
    (6, 3, [0, 1, 0, 2], True),    # stride 3, a different pad per side
])
def test_rewritten_convtranspose_gives_the_same_output(tmp_path, k, s, pads, bias, joint):
    src, out = tmp_path / "ct.onnx", tmp_path / "sp.onnx"
    _model(src, k, s, pads, bias)
    result = pass_class("subpixel")(joint=joint)(src, out, PassContext(tmp_path / "w"))
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert result.details["rewritten"] == 1 and "ConvTranspose" not in ops
    if s == 1:
        assert ops == ["Conv"]
    else:
        assert ops == (["Conv", "DepthToSpace"] if joint else ["Conv"] * s * s + ["Concat", "DepthToSpace"])
    x = np.random.default_rng(0).normal(size=(1, 3, 5, 5)).astype(np.float32)
    want, got = _run(src, x), _run(out, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unsupported_convtranspose_is_left_alone(tmp_path):
    src, out = tmp_path / "ct.onnx", tmp_path / "sp.onnx"
    _model(src, 4, 2, [1, 1, 1, 1], False, output_padding=[1, 1])
    result = pass_class("subpixel")()(src, out, PassContext(tmp_path / "w"))
    assert result.details == result.details | {"rewritten": 0, "kept": 1} and not result.changed
    assert "left as they are" in result.notes[0]
