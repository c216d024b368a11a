"""Tiny ONNX models built with onnx.helper (no torch export), and hand-written bundles around them."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from torch2ort.runtime.manifest import FORMAT_VERSION, MANIFEST, sha256_file


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def vector_model(path: Path) -> Path:
    """x: float32 [batch, 4] -> y = Relu(x), float32 [batch, 4]."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "vec",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def image_model(path: Path) -> Path:
    """image: float32 [1, 3, 8, 8] -> logits = mean over H, W, float32 [1, 3] (an image-classifier shape)."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    node = helper.make_node("ReduceMean", ["image", "axes"], ["logits"], keepdims=0)
    graph = helper.make_graph([node], "img", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], [axes])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), path)


def external_tensor(name: str, location: str) -> TensorProto:
    """A float tensor whose data is said to live in ``location`` (external data)."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        t.external_data.add(key=key, value=value)
    return t


def custom_attr_model(path: Path, attr: onnx.AttributeProto) -> Path:
    """A model with one custom-domain node carrying ``attr`` (onnx keeps any attribute there)."""
    node = helper.make_node("Holder", ["x"], ["y"], domain="test.domain")
    node.attribute.append(attr)
    graph = helper.make_graph([node], "holder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("test.domain", 1)],
                              ir_version=8)
    return _save(model, path)


def hand_bundle(folder: Path, model_path: Path, **changes) -> Path:
    """A bundle written by hand around ``model_path`` (for models pack would refuse to load)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model_path.read_bytes())
    manifest = {"format_version": FORMAT_VERSION, "name": "hand", "model": "model.onnx",
                "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
                "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}],
                "files": {"model.onnx": sha256_file(folder / "model.onnx")}}
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def rewrite_manifest(bundle: Path, text: str | None = None, **changes) -> None:
    path = bundle / MANIFEST
    if text is None:
        data = json.loads(path.read_text())
        data.update(changes)
        text = json.dumps(data)
    path.write_text(text)
