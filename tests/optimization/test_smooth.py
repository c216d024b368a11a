"""SmoothQuant smoothing: exact in float, and it shrinks dynamic int8's error when activations have outlier channels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from torch2ort.export.graph import op_counts
from torch2ort.optimization.passes import PassContext, PassError
from torch2ort.optimization.passes.int8_dynamic import Int8Dynamic
from torch2ort.optimization.passes.smooth import smooth

K, N = 64, 48


def _outlier_feeds(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Activations like a transformer's layer-norm output: most channels near 1, two channels 60x larger."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        x = rng.standard_normal((16, K)).astype(np.float32)
        x[:, [3, 40]] *= 60.0
        feeds.append({"x": x})
    return feeds


def _two_matmuls(path) -> None:
    """x -> MatMul(W1) and x -> MatMul(W2) (two users of one activation, like Q and K), summed."""
    rng = np.random.default_rng(0)
    w1, w2 = (rng.standard_normal((K, N)).astype(np.float32) * 0.1 for _ in range(2))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
         helper.make_node("MatMul", ["x", "w2"], ["b"], name="mm2"),
         helper.make_node("Add", ["a", "b"], ["y"], name="add")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", N])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


def _run(path, feed) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_smoothing_is_exact_in_float_and_shares_one_mul_per_activation(tmp_path):
    src = tmp_path / "m.onnx"
    _two_matmuls(src)
    ctx = PassContext(tmp_path, _outlier_feeds(4, seed=1))
    out, details = smooth(src, tmp_path / "s.onnx", ["mm1", "mm2"], 0.7, ctx)
    assert details == {"smooth_alpha": 0.7, "smoothed_inputs": 1, "smoothed_nodes": 2}
    assert op_counts(out)["Mul"] == 1
    onnx.checker.check_model(str(out))
    feed = _outlier_feeds(1, seed=9)[0]
    np.testing.assert_allclose(_run(out, feed), _run(src, feed), rtol=1e-4, atol=1e-3)


def test_smoothing_cuts_int8_error_on_outlier_channels(tmp_path):
    src = tmp_path / "m.onnx"
    _two_matmuls(src)
    ctx = PassContext(tmp_path, _outlier_feeds(4, seed=1))
    plain = Int8Dynamic(per_channel=True)(src, tmp_path / "q.onnx", ctx)
    smoothed = Int8Dynamic(per_channel=True, smooth=0.7)(src, tmp_path / "sq.onnx", ctx)
    assert smoothed.details["smoothed_inputs"] == 1 and smoothed.details["quantised"] == 2
    feed = _outlier_feeds(1, seed=9)[0]
    ref = _run(src, feed)
    err = {name: float(np.abs(_run(r.model, feed) - ref).mean())
           for name, r in (("plain", plain), ("smooth", smoothed))}
    assert err["smooth"] < 0.5 * err["plain"], err


def test_smooth_needs_a_valid_alpha_and_calibration(tmp_path):
    src = tmp_path / "m.onnx"
    _two_matmuls(src)
    for alpha in (0.0001 - 1, 1.0, float("nan")):
        with pytest.raises(PassError, match="between 0 and 1"):
            Int8Dynamic(smooth=alpha)
    with pytest.raises(PassError, match="calibration"):
        Int8Dynamic(smooth=0.5)(src, tmp_path / "x.onnx", PassContext(tmp_path, []))
    assert Int8Dynamic(per_channel=True, smooth=0.7).label == "int8-dynamic[per-channel,smooth=0.7]"
