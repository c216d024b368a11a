"""Measured mixed precision: the layer that adds the most int8 noise is found and kept in float."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from torch2ort.optimization.passes import PassContext, PassError
from torch2ort.optimization.passes.int8_static import Int8Static
from torch2ort.optimization.passes.sensitivity import layer_noise
from torch2ort.optimization.planner import float_ladder


def _conv_chain(path, spoiled: int, layers: int = 4, ch: int = 8) -> list[str]:
    """``layers`` 3x3 convs + ReLU. Conv ``spoiled`` (>= 1) gets two outlier weights per output channel, +150
    and -150, on two input channels its predecessor makes equal: they cancel, so its output comes from the
    small weights alone, which per-channel int8 (scale set by the outliers) rounds to zero.
    Returns the conv node names in order."""
    rng = np.random.default_rng(0)
    nodes, inits, x, names = [], [], "x", []
    for i in range(layers):
        w = rng.normal(0, 0.3, (ch, 3 if i == 0 else ch, 3, 3)).astype(np.float32)
        if i == spoiled - 1:
            w[1] = w[0]  # output channels 0 and 1 equal
        if i == spoiled:
            w[:, 0, 1, 1], w[:, 1, 1, 1] = 150.0, -150.0
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        inits.append(numpy_helper.from_array(np.zeros(ch, np.float32), f"b{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        x, names = f"r{i}", names + [f"conv{i}"]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, ch, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return names


def _ctx(tmp_path) -> PassContext:
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    return PassContext(tmp_path / "work", feeds)


def _output_nsr(float_path, qdq_path, ctx) -> float:
    import onnxruntime as ort

    f = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(qdq_path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([f.run(None, feed)[0].ravel() for feed in ctx.calibration])
    got = np.concatenate([q.run(None, feed)[0].ravel() for feed in ctx.calibration])
    return float(np.sum((got - ref) ** 2) / np.sum(ref ** 2))


@pytest.mark.parametrize("spoiled", [1, 2])
def test_the_planted_noisy_layer_ranks_first_and_stays_in_float(tmp_path, spoiled):
    src = tmp_path / "chain.onnx"
    convs = _conv_chain(src, spoiled)
    ctx = _ctx(tmp_path)
    whole = Int8Static()(src, tmp_path / "whole.onnx", ctx)
    ranking = layer_noise(ctx.cache[next(k for k in ctx.cache if k[0] == "int8-static-pre")], whole.model, ctx)
    assert [r.node for r in ranking][0] == convs[spoiled]
    assert sorted(r.node for r in ranking) == sorted(convs)
    assert all(r.contribution >= 0 for r in ranking)
    mixed = Int8Static(float_layers=1)(src, tmp_path / "mixed.onnx", ctx)
    assert [d["node"] for d in mixed.details["float_layers"]] == [convs[spoiled]]
    assert convs[spoiled] in mixed.details["excluded"] and "kept in float the 1 of 4" in mixed.notes[0]
    graph = onnx.load(str(mixed.model)).graph
    conv = next(n for n in graph.node if n.name == convs[spoiled])
    assert conv.input[1] == f"w{spoiled}"  # its weight is the float initializer, not a DequantizeLinear output
    # and keeping it in float is what brings the output's noise down
    assert _output_nsr(src, mixed.model, ctx) < 0.1 * _output_nsr(src, whole.model, ctx)


def test_float_layers_is_in_the_label_and_checked():
    assert Int8Static(float_layers=4).label == "int8-static[float-layers=4]"
    assert Int8Static(float_layers="2").float_layers == 2
    for bad in (-1, "two", 1.5, True):
        with pytest.raises(PassError, match="float_layers"):
            Int8Static(float_layers=bad)


def test_the_ladder_doubles_up_to_a_quarter_of_the_weighted_layers(tmp_path):
    src = tmp_path / "chain.onnx"
    _conv_chain(src, 0, layers=17)
    assert float_ladder(src) == [1, 2, 4]
    _conv_chain(src, 0, layers=2)
    assert float_ladder(src) == [1]
