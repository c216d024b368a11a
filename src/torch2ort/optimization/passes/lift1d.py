"""1-D convolutions lifted to 2-D with a unit height, so ONNX Runtime's NCHWc layout reaches them (issue 24).

ORT's CPU provider blocks 2-D convolutions in its NCHWc layout at ``ORT_ENABLE_ALL`` and fuses a residual
Add and a ReLU into them there; its layout transformer does not take 1-D convolutions, so a 1-D ResNet (the
zoo's ECG) runs as plain Conv with Add and Relu apart. OpenVINO runs the same 1-D convs as 2-D ones, and that
is part of its lead on that model. This pass lifts every 1-D Conv and MaxPool to 2-D with a unit height: one
Unsqueeze where a 3-D tensor enters, one Squeeze where a lifted result leaves for an op that is not lifted;
element-wise ops between lifted tensors (Relu, Add of two lifted tensors…) stay lifted. The arithmetic is
the same multiply-adds, reordered, so the result equals the original up to float rounding.

Whether it is faster depends on the machine and its load (benchmarks/ort_rewrites.py, BENCHMARKS.md's peer
findings), so ``auto`` offers it as a variant, and the timing decides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.optimization.passes.base import (
    Pass,
    PassContext,
    PassError,
    PassResult,
    load_model,
    replace_nodes,
    save_model,
)

LIFTABLE_UNARY = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish"}
LIFTABLE_BINARY = {"Add", "Mul", "Sub"}


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def conv1d_count(graph) -> int:
    """How many 1-D Conv nodes the graph has (what this pass would lift)."""
    return sum(1 for n in graph.node if n.op_type == "Conv" and len(_attrs(n).get("kernel_shape", [])) == 1)


def conv1d_as_2d(model) -> tuple[object, int]:
    """Returns the rewritten ModelProto and how many 1-D Conv/MaxPool nodes became 2-D."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    axes = "conv1d_as_2d_axis2"
    g.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), axes))
    lifted: dict[str, str] = {}      # 3-D name -> its 4-D (unit height) twin
    present: set[str] = {i.name for i in g.input} | set(inits)  # 3-D tensors that exist in the new graph
    out_nodes, n = [], 0

    def named(node, suffix: str) -> str:
        return node.name + suffix if node.name else ""

    def four(name: str) -> str:
        if name not in lifted:
            lifted[name] = name + "__h1"
            out_nodes.append(helper.make_node("Unsqueeze", [name, axes], [lifted[name]]))
        return lifted[name]

    def three(name: str) -> str:
        if name not in present:
            out_nodes.append(helper.make_node("Squeeze", [lifted[name], axes], [name]))
            present.add(name)
        return name

    for node in g.node:
        a = _attrs(node)
        liftable = node.op_type in ("Conv", "MaxPool") and len(a.get("kernel_shape", [])) == 1 and (
            node.op_type == "MaxPool" or node.input[1] in inits)
        if liftable:
            new = {"kernel_shape": [1, a["kernel_shape"][0]], "strides": [1, a.get("strides", [1])[0]],
                   "dilations": [1, a.get("dilations", [1])[0]]}
            p = a.get("pads", [0, 0])
            new["pads"] = [0, p[0], 0, p[1]]
            for k in ("group", "auto_pad", "ceil_mode", "storage_order"):
                if k in a:
                    new[k] = a[k]
            ins = [four(node.input[0])]
            if node.op_type == "Conv":
                w = inits[node.input[1]]
                g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(w)[:, :, None, :], w.name + "__h1"))
                ins += [w.name + "__h1", *node.input[2:]]
            outs = [o + "__h1" if o else "" for o in node.output]
            out_nodes.append(helper.make_node(node.op_type, ins, outs, name=named(node, "__h1"), **new))
            for o in node.output:
                if o:
                    lifted[o] = o + "__h1"
            n += 1
        elif node.op_type in LIFTABLE_UNARY and node.input[0] in lifted:
            out_nodes.append(helper.make_node(node.op_type, [lifted[node.input[0]], *node.input[1:]],
                                              [node.output[0] + "__h1"], **a))
            lifted[node.output[0]] = node.output[0] + "__h1"
        elif node.op_type in LIFTABLE_BINARY and all(i in lifted for i in node.input):
            out_nodes.append(helper.make_node(node.op_type, [lifted[i] for i in node.input],
                                              [node.output[0] + "__h1"]))
            lifted[node.output[0]] = node.output[0] + "__h1"
        else:
            for i in node.input:
                if i in lifted:
                    three(i)
            out_nodes.append(node)
            present.update(node.output)
    for o in g.output:
        if o.name in lifted:
            three(o.name)
    replace_nodes(g, out_nodes)
    del g.value_info[:]  # the 3-D shapes recorded for lifted tensors no longer hold
    return model, n


class Lift1d(Pass):
    name = "lift1d"

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        model = load_model(src)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < 13:  # Unsqueeze and Squeeze take their axes as an input from opset 13
            raise PassError(f"lift1d needs opset 13 or later (this model has {opset}); re-export with --opset 17")
        model, lifted = conv1d_as_2d(model)
        save_model(model, out)
        notes = [f"{lifted} 1-D Conv/MaxPool lifted to 2-D (unit height) for ORT's NCHWc kernels"] if lifted else []
        return PassResult(out, lifted > 0, {"lifted": lifted}, notes)
