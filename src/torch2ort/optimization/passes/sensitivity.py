"""Which layers add the most quantisation noise: per-layer noise contribution of a QDQ model.

For every weighted node (Conv, ConvTranspose, Gemm, MatMul with a constant weight) the float model and
its QDQ form are run on the same calibration feeds, and the node's input and output are read from
both. The noise-to-signal ratio of a tensor is ``sum ||quantised - float||² / sum ||float||²`` over the
feeds (the inverse of ORT's ``qdq_loss_debug`` SQNR, in linear power rather than dB, so that the
contributions of successive layers add up). A node's contribution is the ratio at its output minus the
ratio at its input: the noise its own weight and input quantisation add, not the noise it inherits.
``int8-static[float-layers=k]`` keeps the k largest contributors in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torch2ort.optimization.passes.base import PassContext, load_model, probe_tensors, weighted_nodes

MAX_FEEDS = 4  # calibration feeds run through both models: enough to rank layers, cheap in memory
DROPPED = ("Relu", "Clip")  # activations ORT's QDQ quantiser folds into the preceding node's output range
DQ_SUFFIX = "_DequantizeLinear_Output"  # onnxruntime.quantization.quant_utils.DEQUANT_OUTPUT_SUFFIX


@dataclass(frozen=True)
class LayerNoise:
    node: str
    input_nsr: float     # noise-to-signal power ratio of the node's input in the QDQ model
    output_nsr: float    # ... of its output
    contribution: float  # output_nsr - input_nsr, floored at 0

    def to_dict(self) -> dict:
        return {"node": self.node, "input_nsr": self.input_nsr, "output_nsr": self.output_nsr,
                "contribution": self.contribution}


def layer_noise(float_path: str | Path, qdq_path: str | Path, ctx: PassContext) -> list[LayerNoise]:
    """Every weighted node of ``float_path`` with its noise contribution in ``qdq_path``, largest first.

    The QDQ model must be ``float_path`` quantised by ORT, which keeps the names of the nodes it quantises
    and of their tensors, but drops a Relu or Clip right after a quantised node (the output's quantisation
    range clips instead): a node's output is then read after that activation. Tensors are read in the QDQ
    model as the next node sees them, after their QuantizeLinear/DequantizeLinear pair where there is one.
    """
    graph = load_model(float_path).graph
    qgraph = load_model(qdq_path).graph
    qtensors = {t for n in qgraph.node for t in n.output} | {i.name for i in qgraph.input}
    by_name = {n.name: n for n in graph.node}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    inputs = {i.name for i in graph.input}

    def output_of(node) -> str:
        t = node.output[0]
        while t not in qtensors and len(consumers.get(t, [])) == 1 and consumers[t][0].op_type in DROPPED:
            t = consumers[t][0].output[0]
        return t

    def in_qdq(t: str) -> str:
        return f"{t}{DQ_SUFFIX}" if f"{t}{DQ_SUFFIX}" in qtensors else t

    ios = {name: (by_name[name].input[0], output_of(by_name[name])) for name in weighted_nodes(graph)}
    tensors = sorted({t for pair in ios.values() for t in pair if t not in inputs and in_qdq(t) in qtensors})
    sub = PassContext(ctx.workdir, ctx.calibration[:MAX_FEEDS], ctx.providers)
    signal = dict.fromkeys(tensors, 0.0)
    noise = dict.fromkeys(tensors, 0.0)
    qnames = {t: in_qdq(t) for t in tensors}
    for ref, got in zip(probe_tensors(float_path, tensors, sub, "float-layers"),
                        probe_tensors(qdq_path, list(qnames.values()), sub, "float-layers")):
        for t in tensors:
            if t in ref and qnames[t] in got:
                f = ref[t].astype(np.float64)
                signal[t] += float(np.sum(f * f))
                noise[t] += float(np.sum((got[qnames[t]].astype(np.float64) - f) ** 2))

    def nsr(t: str) -> float:
        if t in inputs or t not in signal:
            return 0.0
        return noise[t] / signal[t] if signal[t] > 0 else (0.0 if noise[t] == 0 else float("inf"))

    rows = [LayerNoise(n, nsr(i), nsr(o), max(0.0, nsr(o) - nsr(i))) for n, (i, o) in ios.items()]
    return sorted(rows, key=lambda r: r.contribution, reverse=True)
