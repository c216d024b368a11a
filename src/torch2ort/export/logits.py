"""A decoder graph's ``logits_to_keep`` input: how many of the last positions reach the LM head.

A causal LM's prefill needs the logits of the last position only, but the exported graph computes them at
every prompt position: at 512 tokens, Qwen2-0.5B's 896 × 151,936 head alone is about 140 GFLOP, more than
the rest of the prefill. transformers' ``generate`` asks its forward for ``logits_to_keep=1``.

``add_logits_to_keep`` gives the exported graph the same switch: an int64 scalar input
``logits_to_keep`` whose default (an initializer of the same name, which ONNX Runtime lets a feed
override) is 0, meaning every position, as transformers reads 0. A ``Slice`` of the hidden states
along the sequence axis, ``[-logits_to_keep:]``, goes in front of the head's MatMul. So:

- verification and the generation gates, which feed nothing new, still get logits at every position;
- the runtime's prefill feeds 1 (``runtime.generate``) and gets the last position's only. The runtime
  left-pads a batch, so the last position is every row's real last token.

Every variant built from the export (fusion, packing, weight-only quantisation) keeps the input.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.runtime.generate import LOGITS_TO_KEEP

# The logits' sequence dim after the Slice: logits_to_keep positions, or all of them when it is 0.
KEPT_DIM = "logits_sequence"
# Ops that may sit between the head's MatMul and the logits output when their other inputs are constants
# (a bias, a soft-cap's Div/Tanh/Mul, a Cast): each keeps one value per position.
PASSTHROUGH = {"Add", "Sub", "Mul", "Div", "Tanh", "Cast", "Identity"}
HEADS = {"MatMul", "FusedMatMul", "MatMulNBits"}
INT64_MAX = (1 << 63) - 1


def head_chain(graph, output: str = "logits") -> list:
    """The nodes from the LM head's MatMul (last) to ``output`` (first), through constant-operand element-wise
    ops; empty when ``output`` is not made that way."""
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                    for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    chain = []
    node = producer.get(output)
    while node is not None and node.op_type not in HEADS:
        live = [i for i in node.input if i and i not in consts]
        if node.op_type not in PASSTHROUGH or len(live) != 1:
            return []
        chain.append(node)
        node = producer.get(live[0])
    return [] if node is None else [*chain, node]


def has_logits_to_keep(graph) -> bool:
    inits = {i.name for i in graph.initializer}
    return any(i.name == LOGITS_TO_KEEP and i.name in inits for i in graph.input)


def add_logits_to_keep(model, output: str = "logits") -> str | None:
    """Give ``model`` (a ModelProto, changed in place) the ``logits_to_keep`` input; returns why not when it
    cannot (no head MatMul found, or its input is not [batch, sequence, hidden]), else None."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    if has_logits_to_keep(g):
        return None
    stale = next((i for i in g.initializer if i.name == LOGITS_TO_KEEP), None)
    if stale is not None:  # a pass moved it out of the inputs: where nodes still read it, declaring it is enough
        if any(LOGITS_TO_KEEP in n.input for n in g.node):
            g.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, []))
            return None
        g.initializer.remove(stale)
    chain = head_chain(g, output)
    if not chain:
        return f"no MatMul found making {output!r}"
    head = chain[-1]
    hidden = head.input[0]
    rank = _rank(model, hidden)
    if rank != 3 and _folded_slice(g, hidden) is None:
        return f"the LM head's input {hidden!r} has rank {rank}, not 3 (batch, sequence, hidden)"
    import numpy as np

    names = {n for node in g.node for n in (*node.input, *node.output)} | {i.name for i in g.initializer}
    prefix = "logits_to_keep_"
    while any(n.startswith(prefix) for n in names):
        prefix = "_" + prefix
    start, starts, kept = prefix + "negated", prefix + "starts", prefix + "hidden"
    consts = {prefix + "shape": np.array([1], np.int64), prefix + "ends": np.array([INT64_MAX], np.int64),
              prefix + "axes": np.array([1], np.int64)}
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    g.initializer.append(numpy_helper.from_array(np.array(0, np.int64), LOGITS_TO_KEEP))
    g.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, []))
    nodes = [helper.make_node("Neg", [LOGITS_TO_KEEP], [start], name=prefix + "neg"),
             helper.make_node("Reshape", [start, prefix + "shape"], [starts], name=prefix + "reshape"),
             helper.make_node("Slice", [hidden, starts, prefix + "ends", prefix + "axes"], [kept],
                              name=prefix + "slice")]
    folded = _folded_slice(g, hidden)
    if folded is not None:  # ours, its starts folded to 0 by a pass that dropped the input: wire it up again
        nodes, old = nodes[:2], folded.input[1]
        folded.input[1] = starts
        if not any(old in n.input for n in g.node):
            g.initializer.remove(next(i for i in g.initializer if i.name == old))
    at = list(g.node).index(folded if folded is not None else head)
    for i, node in enumerate(nodes):
        g.node.insert(at + i, node)
    if folded is None:
        head.input[0] = kept
    for out in g.output:
        if out.name == output and len(out.type.tensor_type.shape.dim) > 1:
            dim = out.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_param = KEPT_DIM
    made = {o for node in chain for o in node.output}  # their sequence dim is no longer the prompt's
    keep = [v for v in g.value_info if v.name not in made]
    del g.value_info[:]
    g.value_info.extend(keep)
    return None


def restore_logits_to_keep(src: str | Path, out: str | Path, output: str = "logits") -> bool:
    """Give ``out`` back the input ``src`` has, when a pass dropped it; returns whether it did.

    onnxscript's optimiser (the decoder fusion) moves initializers out of the graph inputs and folds them, so
    the fused graph loses ``logits_to_keep`` and keeps a Slice from 0; that Slice is wired to the input again.
    """
    import onnx

    from torch2ort.errors import PassFailedError

    had = has_logits_to_keep(onnx.load(str(src), load_external_data=False).graph)
    if not had or has_logits_to_keep(onnx.load(str(out), load_external_data=False).graph):
        return False
    why = add_logits_to_keep_file(out, output)
    if why is not None:
        raise PassFailedError(f"a pass dropped the logits_to_keep input and it cannot be added back: {why}")
    return True


def _folded_slice(graph, name: str):
    """The node making ``name`` when it is a Slice of axis 1 from 0 to the end, all constant: what our Slice
    becomes when its start was folded. None otherwise."""
    import numpy as np
    from onnx import numpy_helper

    node = next((n for n in graph.node if name in n.output), None)
    if node is None or node.op_type != "Slice" or len(node.input) < 4:
        return None
    inits = {i.name: i for i in graph.initializer}
    values = [numpy_helper.to_array(inits[i]).tolist() if i in inits else None for i in node.input[1:4]]
    starts, ends, axes = (np.ravel(v).tolist() if v is not None else None for v in values)
    return node if (starts, ends, axes) == ([0], [INT64_MAX], [1]) else None


def add_logits_to_keep_file(path: str | Path, output: str = "logits") -> str | None:
    """``add_logits_to_keep`` on a file, in place; its external weights are left where they are."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    why = add_logits_to_keep(model, output)
    if why is None:
        onnx.save(model, str(path))
    return why


def _rank(model, name: str) -> int | None:
    import onnx

    known = {v.name: v for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    if name not in known:
        inferred = onnx.shape_inference.infer_shapes(model)
        known = {v.name: v for v in inferred.graph.value_info}
    value = known.get(name)
    if value is None or not value.type.tensor_type.HasField("shape"):
        return None
    return len(value.type.tensor_type.shape.dim)
