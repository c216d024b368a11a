"""INT8 dynamic quantisation: int8 weights, activations quantised on the fly (transformers, MLPs).

Options:
- ``per_channel`` weights;
- ``reduce_range``: 7-bit weights; ``auto`` decides from the CPU's VNNI support;
- ``exclude_last``: keep the last N quantisable nodes in float, where the error lands directly in
  the output;
- ``exclude_outliers``: keep in float the N nodes whose input activations have the highest
  peak-to-mean ratio on the calibration feeds (``outlier_scores``);
- ``smooth``: SmoothQuant's alpha (0 < alpha < 1; 0 = off): move activation outliers into the
  weights before quantising (``smooth.py``), measured on the calibration feeds.

Weights shared between nodes are copied first (see ``unshare_weights``: the quantiser corrupts
them otherwise), and recorded intermediate shapes are dropped: after a fusion they can carry the
export's example sizes, which ONNX's shape inference inside the quantiser then rejects
("Inferred shape and existing shape differ"). On a graph that went through the transformer fusion the quantiser needs
``DefaultTensorType=FLOAT`` to type tensors whose shapes inference could not follow.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.optimization.passes.base import (
    Pass,
    PassContext,
    PassError,
    PassResult,
    load_model,
    pick_reduce_range,
    probe_tensors,
    quiet_library,
    save_model,
    unshare_weights,
    weighted_nodes,
)
from torch2ort.optimization.passes.smooth import smooth

OP_TYPES = ["MatMul", "Gemm", "Attention"]


def quantisable_nodes(path: Path, op_types: list[str]) -> list[str]:
    """Names of nodes the quantiser would touch, in graph (topological) order, weights constant only."""
    return weighted_nodes(load_model_graph(path), op_types)


def load_model_graph(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


def outlier_scores(path: Path, nodes: list[str], ctx: PassContext) -> dict[str, float]:
    """Peak-to-mean ratio of each node's activation input (max|x| / mean|x|) on the calibration feeds.

    Activations with a few huge values (the FFN down-projections of BERT-like models) lose the most
    to one int8 scale per tensor; these are the nodes worth keeping in float.
    """
    import numpy as np

    by_name = {n.name: n for n in load_model(path).graph.node}
    inputs = {n: by_name[n].input[0] for n in nodes}
    peak: dict[str, float] = {}
    for values in probe_tensors(path, list(inputs.values()), ctx, "exclude_outliers"):
        for name, value in values.items():
            a = np.abs(np.asarray(value, np.float64))
            if a.size:
                peak[name] = max(peak.get(name, 0.0), float(a.max() / (a.mean() + 1e-12)))
    return {n: peak.get(i, 0.0) for n, i in inputs.items()}


class Int8Dynamic(Pass):
    name = "int8-dynamic"

    def __init__(self, per_channel: bool = False, reduce_range: str | bool = "auto", exclude_last: int = 0,
                 exclude_outliers: int = 0, nodes_to_exclude: list[str] | None = None, smooth: float = 0.0) -> None:
        if smooth and not 0.0 < float(smooth) < 1.0:
            raise PassError(f"smooth (SmoothQuant's alpha) must be between 0 and 1, got {smooth}")
        super().__init__(per_channel=per_channel, reduce_range=None if reduce_range == "auto" else reduce_range,
                         exclude_last=exclude_last or None, exclude_outliers=exclude_outliers or None,
                         nodes_to_exclude=nodes_to_exclude, smooth=float(smooth) or None)
        self.smooth = float(smooth)
        self.per_channel, self.reduce_range = per_channel, reduce_range
        self.exclude_last, self.exclude_outliers = exclude_last, exclude_outliers
        self.nodes_to_exclude = list(nodes_to_exclude or [])

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        reduce_range, why = pick_reduce_range(self.reduce_range)
        model = load_model(src)
        copies = unshare_weights(model)
        if copies or len(model.graph.value_info):
            model.graph.ClearField("value_info")
            src = save_model(model, ctx.workdir / f"{out.stem}-prepared.onnx")
        nodes = quantisable_nodes(src, OP_TYPES)
        excluded = list(self.nodes_to_exclude)
        if self.exclude_last:
            excluded += nodes[-self.exclude_last:]
        scores: dict[str, float] = {}
        if self.exclude_outliers:
            scores = outlier_scores(src, nodes, ctx)
            excluded += sorted(nodes, key=lambda n: -scores[n])[: self.exclude_outliers]
        smoothing: dict = {}
        if self.smooth:
            src, smoothing = smooth(src, ctx.workdir / f"{out.stem}-smoothed.onnx",
                                    [n for n in nodes if n not in excluded], self.smooth, ctx)
        with quiet_library():
            quantize_dynamic(str(src), str(out), per_channel=self.per_channel, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8, op_types_to_quantize=OP_TYPES,
                             nodes_to_quantize=[n for n in nodes if n not in excluded] or None,
                             nodes_to_exclude=excluded,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return PassResult(out, True, {"per_channel": self.per_channel, "reduce_range": reduce_range,
                                      "reduce_range_why": why, "quantisable": len(nodes),
                                      "quantised": len(nodes) - len(set(excluded) & set(nodes)),
                                      "excluded": excluded, "unshared_weights": copies,
                                      "outlier_scores": {n: round(scores[n], 1) for n in excluded if n in scores},
                                      **smoothing})
