"""Facts about an ONNX graph: op counts, size on disk with external data, and a summary for reports."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def op_counts(path: str | Path) -> Counter:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return Counter(n.op_type for n in graph.node)


def model_bytes(path: str | Path) -> int:
    """The file plus any external-data files next to it that it references."""
    from torch2ort.runtime.onnx_refs import external_data_locations

    path = Path(path)
    total = path.stat().st_size
    for loc in external_data_locations(path.read_bytes()):
        extra = path.parent / loc
        if extra.is_file():
            total += extra.stat().st_size
    return total


def graph_summary(onnx_path: str | Path) -> dict:
    """What went into the graph: op histogram, weights, and the declared inputs and outputs."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    inits = {i.name for i in model.graph.initializer}

    def io(values) -> list[dict]:
        return [{"name": v.name, "dtype": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower(),
                 "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]}
                for v in values if v.name not in inits]

    return {"nodes": len(model.graph.node), "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "initializers": len(model.graph.initializer), "mb": model_bytes(onnx_path) / 2**20,
            "inputs": io(model.graph.input), "outputs": io(model.graph.output),
            "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
            "functions": len(model.functions)}
