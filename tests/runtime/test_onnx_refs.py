from __future__ import annotations

import onnx
import pytest
from onnx import helper
from onnx.external_data_helper import _get_all_tensors, uses_external_data

from runtime.tiny_models import custom_attr_model, external_tensor, hand_bundle, rewrite_manifest, vector_model
from torch2ort.bundle.writer import pack
from torch2ort.errors import BundleError, WireError
from torch2ort.runtime import Bundle
from torch2ort.runtime.manifest import sha256_file
from torch2ort.runtime.onnx_refs import external_data_locations


def test_matches_onnx_own_listing(exported, tmp_path):
    model = onnx.load(str(exported("encoder")))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=256)
    reloaded = onnx.load(str(path), load_external_data=False)
    want = list(dict.fromkeys(next(e.value for e in t.external_data if e.key == "location")
                              for t in _get_all_tensors(reloaded) if uses_external_data(t)))
    assert want and external_data_locations(path.read_bytes()) == want


def test_no_external_data_and_garbage(exported):
    assert external_data_locations(exported("mobilenet").read_bytes()) == []
    with pytest.raises(WireError):
        external_data_locations(b"\x0a\xff\xff\xff")


def test_field_numbers_are_onnx_own():
    from torch2ort.runtime import onnx_refs as r

    attr = {f.name: f.number for f in onnx.AttributeProto.DESCRIPTOR.fields}
    assert (r._ATTR_T, r._ATTR_G, r._ATTR_TENSORS, r._ATTR_GRAPHS, r._ATTR_SPARSE, r._ATTR_SPARSES) == (
        attr["t"], attr["g"], attr["tensors"], attr["graphs"], attr["sparse_tensor"], attr["sparse_tensors"])
    graph = {f.name: f.number for f in onnx.GraphProto.DESCRIPTOR.fields}
    assert (r._GRAPH_NODE, r._GRAPH_INIT, r._GRAPH_SPARSE) == (graph["node"], graph["initializer"],
                                                               graph["sparse_initializer"])
    func = {f.name: f.number for f in onnx.FunctionProto.DESCRIPTOR.fields}
    assert (r._FUNC_NODE, r._FUNC_ATTR_PROTO) == (func["node"], func["attribute_proto"])
    model = {f.name: f.number for f in onnx.ModelProto.DESCRIPTOR.fields}
    assert (r._MODEL_GRAPH, r._MODEL_FUNCTIONS) == (model["graph"], model["functions"])
    assert r._NODE_ATTR == {f.name: f.number for f in onnx.NodeProto.DESCRIPTOR.fields}["attribute"]
    assert r._TENSOR_EXTERNAL == {f.name: f.number for f in onnx.TensorProto.DESCRIPTOR.fields}["external_data"]


def _subgraph_with(location: str) -> onnx.GraphProto:
    return helper.make_graph([helper.make_node("Identity", ["w"], ["o"])], "sub", [],
                             [helper.make_tensor_value_info("o", onnx.TensorProto.FLOAT, [4])],
                             [external_tensor("w", location)])


@pytest.mark.parametrize("kind, type_name", [("tensors", "TENSORS"), ("graphs", "GRAPHS"), ("t", "TENSOR"),
                                             ("g", "GRAPH")])
def test_every_attribute_kind_is_scanned(tmp_path, kind, type_name):
    """Our listing equals onnx's own, for a model onnx's checker accepts; onnx's checker and ours see an escape."""
    for loc in (f"in-{kind}.bin", f"../outside-{kind}.bin"):
        value = {"tensors": [external_tensor("a", "first.bin"), external_tensor("b", loc)],
                 "graphs": [_subgraph_with("first.bin"), _subgraph_with(loc)],
                 "t": external_tensor("a", loc), "g": _subgraph_with(loc)}[kind]
        attr = helper.make_attribute("payload", value)
        assert onnx.AttributeProto.AttributeType.Name(attr.type) == type_name
        path = custom_attr_model(tmp_path / "m" / "m.onnx", attr)
        for name in ("first.bin", loc):
            (path.parent / name).write_bytes(b"\0" * 16)
        model = onnx.load(str(path), load_external_data=False)
        want = list(dict.fromkeys(next(e.value for e in t.external_data if e.key == "location")
                                  for t in _get_all_tensors(model) if uses_external_data(t)))
        assert loc in want and external_data_locations(path.read_bytes()) == want
        if loc.startswith(".."):
            with pytest.raises(onnx.checker.ValidationError, match="points outside the directory"):
                onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(str(path))


@pytest.mark.parametrize("kind", ["tensors", "graphs"])
def test_bundle_load_refuses_an_escape_through_tensors_and_graphs(tmp_path, kind):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    value = [external_tensor("a", "../secret.bin")] if kind == "tensors" else [_subgraph_with("../secret.bin")]
    model = custom_attr_model(tmp_path / "src" / "m.onnx", helper.make_attribute("payload", value))
    bundle = hand_bundle(tmp_path / "b", model)
    with pytest.raises(BundleError, match="refers to external data '../secret.bin' outside the bundle"):
        Bundle.load(bundle)
    with pytest.raises(BundleError, match="resolves outside the bundle"):
        pack(model, tmp_path / "packed")
    assert not (tmp_path / "packed").exists()


def _key(number: int) -> bytes:
    return bytes([number << 3 | 2])


def _delimited(number: int, payload: bytes) -> bytes:
    n, size = len(payload), b""
    while True:
        size += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return _key(number) + size + payload


def _nested_model(levels: int) -> bytes:
    """ModelProto bytes: a graph whose one node has a graph attribute whose one node has one... ``levels`` deep."""
    graph = b""
    for _ in range(levels):
        attr = _delimited(1, b"g") + _delimited(6, graph)      # AttributeProto{name, g}
        node = _delimited(5, attr)                              # NodeProto{attribute}
        graph = _delimited(1, node)                             # GraphProto{node}
    return _delimited(7, graph)                                 # ModelProto{graph}


def test_deeply_nested_subgraphs_are_a_wire_error(tmp_path):
    assert external_data_locations(_nested_model(10)) == []
    raw = _nested_model(3000)
    with pytest.raises(WireError, match="nested more than 64 levels"):
        external_data_locations(raw)
    bundle = hand_bundle(tmp_path / "b", vector_model(tmp_path / "v.onnx"))
    (bundle / "model.onnx").write_bytes(raw)
    rewrite_manifest(bundle, files={"model.onnx": sha256_file(bundle / "model.onnx")})
    with pytest.raises(BundleError, match="not a valid ONNX protobuf .subgraphs nested more than"):
        Bundle.load(bundle)
