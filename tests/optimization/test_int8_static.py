"""int8-static's ``exclude`` option: the named or positional nodes stay in float in the written graph."""

from __future__ import annotations

import onnx
import pytest

from fixtures.families import FAMILIES
from torch2ort.inputs import synthetic_cases
from torch2ort.optimization.passes import PassContext, PassError, pass_class
from torch2ort.optimization.passes.int8_static import Int8Static, weighted_nodes


def _ctx(tmp_path) -> PassContext:
    return PassContext(tmp_path, [c.feed for c in synthetic_cases(FAMILIES["ecg_resnet1d"].spec, 4, seed=50)])


def _float_weighted(path) -> tuple[list[str], list[str]]:
    """(weighted nodes whose weight comes straight from a float initializer, all weighted nodes), in order."""
    graph = onnx.load(str(path)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    nodes = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    return [n.name for n in nodes if n.input[1] in floats], [n.name for n in nodes]


def test_exclude_first_and_last_keeps_those_nodes_in_float(exported, tmp_path):
    src = exported("ecg_resnet1d")
    plain = Int8Static()(src, tmp_path / "all.onnx", _ctx(tmp_path))
    assert _float_weighted(plain.model)[0] == []  # every weighted node in int8 by default
    kept = Int8Static(exclude="first,last")(src, tmp_path / "kept.onnx", _ctx(tmp_path))
    floats, nodes = _float_weighted(kept.model)
    assert floats == [nodes[0], nodes[-1]] == kept.details["excluded"]
    assert len(nodes) > 2
    graph = onnx.load(str(kept.model)).graph
    fed_by_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    first = next(n for n in graph.node if n.name == nodes[0])
    assert not fed_by_dq & set(first.input)  # neither its input nor its weight goes through QDQ
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) < sum(
        n.op_type == "QuantizeLinear" for n in onnx.load(str(plain.model)).graph.node)


def test_exclude_by_node_name(exported, tmp_path):
    src = exported("ecg_resnet1d")
    middle = weighted_nodes(onnx.load(str(src)).graph)[2]
    result = Int8Static(exclude=[middle])(src, tmp_path / "m.onnx", _ctx(tmp_path))
    assert _float_weighted(result.model)[0] == [middle] == result.details["excluded"]


def test_exclude_is_in_the_label():
    assert Int8Static(exclude="first,last").label == "int8-static[exclude=first+last]"
    assert pass_class("int8-static")(exclude=["last"]).label == "int8-static[exclude=last]"
    assert Int8Static().label == "int8-static"


def test_bad_exclude_values_are_pass_errors(exported, tmp_path):
    with pytest.raises(PassError, match="empty entry"):
        Int8Static(exclude="first,,last")
    with pytest.raises(PassError, match="first, last or node names"):
        Int8Static(exclude=[3])
    with pytest.raises(PassError, match="no node named 'conv99'"):
        Int8Static(exclude="first,conv99")(exported("ecg_resnet1d"), tmp_path / "x.onnx", _ctx(tmp_path))
