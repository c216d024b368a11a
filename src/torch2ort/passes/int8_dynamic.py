"""INT8 dynamic quantisation: int8 weights, activations quantised on the fly (transformers, MLPs).

Options: ``per_channel`` weights, ``reduce_range`` (7-bit weights; ``auto`` decides from the CPU's
VNNI support), and ``exclude_last``: keep the last N quantisable nodes in float, where the error
lands directly in the output. Weights shared between nodes are copied first (see
``unshare_weights``: the quantiser corrupts them otherwise). On a graph that went through the
transformer fusion the quantiser needs ``DefaultTensorType=FLOAT`` to type tensors whose shapes
inference could not follow.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.passes.base import (
    Pass,
    PassContext,
    PassResult,
    load_model,
    pick_reduce_range,
    quiet_library,
    save_model,
    unshare_weights,
)

OP_TYPES = ["MatMul", "Gemm", "Attention"]


def quantisable_nodes(path: Path, op_types: list[str]) -> list[str]:
    """Names of nodes the quantiser would touch, in graph (topological) order, weights constant only."""
    graph = load_model_graph(path)
    inits = {i.name for i in graph.initializer}
    consts = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node
            if n.op_type in op_types and len(n.input) > 1 and (n.input[1] in inits or n.input[1] in consts)]


def load_model_graph(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


class Int8Dynamic(Pass):
    name = "int8-dynamic"

    def __init__(self, per_channel: bool = False, reduce_range: str | bool = "auto", exclude_last: int = 0,
                 nodes_to_exclude: list[str] | None = None) -> None:
        super().__init__(per_channel=per_channel, reduce_range=None if reduce_range == "auto" else reduce_range,
                         exclude_last=exclude_last or None, nodes_to_exclude=nodes_to_exclude)
        self.per_channel, self.reduce_range = per_channel, reduce_range
        self.exclude_last, self.nodes_to_exclude = exclude_last, list(nodes_to_exclude or [])

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        reduce_range, why = pick_reduce_range(self.reduce_range)
        model = load_model(src)
        copies = unshare_weights(model)
        if copies:
            src = save_model(model, ctx.workdir / f"{out.stem}-unshared.onnx")
        nodes = quantisable_nodes(src, OP_TYPES)
        excluded = list(self.nodes_to_exclude)
        if self.exclude_last:
            excluded += nodes[-self.exclude_last:]
        with quiet_library():
            quantize_dynamic(str(src), str(out), per_channel=self.per_channel, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8, op_types_to_quantize=OP_TYPES,
                             nodes_to_quantize=[n for n in nodes if n not in excluded] or None,
                             nodes_to_exclude=excluded,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return PassResult(out, True, {"per_channel": self.per_channel, "reduce_range": reduce_range,
                                      "reduce_range_why": why, "quantisable": len(nodes),
                                      "quantised": len(nodes) - len(set(excluded) & set(nodes)),
                                      "excluded": excluded, "unshared_weights": copies})
