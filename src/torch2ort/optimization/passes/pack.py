"""Packed projections: MatMuls that read the same activation with constant weights become one MatMul and a Split.

A transformer layer multiplies one normalised hidden state by several weights: Q, K and V (three MatMuls),
and in a gated MLP gate and up (two more). onnxruntime-genai's model builder writes each group as one
MatMul on the weights concatenated along N, then splits the result. The arithmetic is the same
dot products, but a decode step (one token: a matrix-vector product per weight) pays each kernel call's
fixed cost once per group instead of once per weight. With int4 ``MatMulNBits`` that cost is a large
part of a small product: Qwen2 goes from 7 to 4 weight MatMuls per layer. Weight-only quantisation after
this pass quantises each column block by block along K, as before, so the packed int4 weights hold the
same values as the separate ones.

The pass is generic: any MatMuls (``MatMul`` in the default domain) sharing input A whose B is a 2-D float
initializer with the same K and dtype. Bias Adds (``Add(MatMul, b)`` with a 1-D constant ``b`` of the
member's N, the MatMul's only reader) are concatenated too when every member of the group has one;
otherwise they stay after the Split. What reads the results is not looked at, so the attention may be
plain ops, MultiHeadAttention or GroupQueryAttention. Graph inputs, outputs and other initializers
(a decoder's ``logits_to_keep``) are kept as they are.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from torch2ort.optimization.passes.base import (
    Pass,
    PassContext,
    PassResult,
    load_model,
    replace_nodes,
    save_model,
)

FLOATS = {1, 10, 11, 16}  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def packable_groups(graph) -> list[list]:
    """Groups of two or more default-domain MatMuls that share input A and have 2-D float initializer weights of
    one K and dtype, in graph order."""
    inits = {i.name: i for i in graph.initializer}
    groups: dict[tuple, list] = defaultdict(list)
    for node in graph.node:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        w = inits.get(node.input[1])
        if w is None or len(w.dims) != 2 or w.data_type not in FLOATS:
            continue
        groups[(node.input[0], w.dims[0], w.data_type)].append(node)
    return [members for members in groups.values() if len(members) > 1]


def pack_projections(model) -> tuple[object, dict]:
    """The rewritten ModelProto (changed in place) and what was packed: ``groups``, ``merged`` (MatMuls that went
    into them), ``biases`` (bias Adds folded in), ``matmuls_before`` / ``matmuls_after``."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    readers: dict[str, list] = defaultdict(list)
    for node in g.node:
        for name in node.input:
            readers[name].append(node)
    outputs = {o.name for o in g.output}
    taken = {n for node in g.node for n in (*node.input, *node.output)} | set(inits) | {i.name for i in g.input}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    def bias_of(node):
        """The bias Add after ``node`` (its only reader, a 1-D constant of N), or None."""
        out = node.output[0]
        if out in outputs or len(readers[out]) != 1:
            return None
        add = readers[out][0]
        if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.input) != 2:
            return None
        other = add.input[1] if add.input[0] == out else add.input[0]
        b, n = inits.get(other), inits[node.input[1]].dims[1]
        if b is None or list(b.dims) != [n] or b.data_type != inits[node.input[1]].data_type:
            return None
        return add

    before = sum(1 for n in g.node if n.op_type == "MatMul")
    replaced: dict[int, list] = {}   # id(first member) -> the nodes that stand for the group
    dropped: set[int] = set()        # ids of the other members and of folded bias Adds
    merged = biases = 0
    for members in packable_groups(g):
        weights = [numpy_helper.to_array(inits[m.input[1]]) for m in members]
        sizes = [w.shape[1] for w in weights]
        adds = [bias_of(m) for m in members]
        with_bias = all(a is not None for a in adds)
        stem = members[0].name or members[0].output[0]
        weight = fresh(f"{stem}.packed_weight")
        g.initializer.append(numpy_helper.from_array(np.concatenate(weights, axis=1), weight))
        packed = fresh(f"{stem}.packed")
        nodes = [helper.make_node("MatMul", [members[0].input[0], weight], [packed], name=fresh(f"{stem}_packed"))]
        if with_bias:
            bias = np.concatenate([numpy_helper.to_array(inits[a.input[1] if a.input[0] == m.output[0]
                                                               else a.input[0]]) for a, m in zip(adds, members)])
            bias_name = fresh(f"{stem}.packed_bias")
            g.initializer.append(numpy_helper.from_array(bias, bias_name))
            biased = fresh(f"{stem}.packed_biased")
            nodes.append(helper.make_node("Add", [packed, bias_name], [biased], name=fresh(f"{stem}_packed_bias")))
            packed, results = biased, [a.output[0] for a in adds]
            dropped.update(id(a) for a in adds)
            biases += len(adds)
        else:
            results = [m.output[0] for m in members]
        split = fresh(f"{stem}_split")
        if _opset(model) >= 13:
            sizes_name = fresh(f"{stem}.split_sizes")
            g.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), sizes_name))
            nodes.append(helper.make_node("Split", [packed, sizes_name], results, name=split, axis=-1))
        else:
            nodes.append(helper.make_node("Split", [packed], results, name=split, axis=-1, split=sizes))
        replaced[id(members[0])] = nodes
        dropped.update(id(m) for m in members[1:])
        merged += len(members)
    if not replaced:
        return model, {"groups": 0, "merged": 0, "biases": 0, "matmuls_before": before, "matmuls_after": before}
    out_nodes = []
    for node in g.node:
        if id(node) in replaced:
            out_nodes += replaced[id(node)]
        elif id(node) not in dropped:
            out_nodes.append(node)
    gone = {o for node in g.node if id(node) in dropped or id(node) in replaced for o in node.output}
    gone -= {o for node in out_nodes for o in node.output}
    replace_nodes(g, out_nodes)
    keep = [v for v in g.value_info if v.name not in gone]
    del g.value_info[:]
    g.value_info.extend(keep)
    after = sum(1 for n in g.node if n.op_type == "MatMul")
    return model, {"groups": len(replaced), "merged": merged, "biases": biases, "matmuls_before": before,
                   "matmuls_after": after}


class PackProjections(Pass):
    name = "pack-projections"

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        model, details = pack_projections(load_model(src))
        save_model(model, out)
        notes = ([f"{details['merged']} MatMuls sharing an input packed into {details['groups']} "
                  f"({details['matmuls_before']} -> {details['matmuls_after']} MatMuls)"]
                 if details["groups"] else [])
        return PassResult(out, details["groups"] > 0, details, notes)
