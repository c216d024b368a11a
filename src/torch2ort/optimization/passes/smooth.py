"""SmoothQuant-style activation smoothing before dynamic int8 (Xiao et al., 2023).

Dynamic int8 quantises each MatMul's activation input with one scale per call. A transformer's
activations carry a few outlier channels (BERT's layer-norm outputs reach 10-20 where most
channels stay near 1), so that one scale is coarse for everything else: on all-MiniLM-L6-v2 that
put the worst cosine against torch just under 0.99 (BENCHMARKS.md). Smoothing moves the outliers into the
weights, exactly in float: for an activation X feeding weights W,

    X @ W = (X / s) @ (diag(s) W),   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

with max|X_j| per input channel measured on the calibration feeds (real text when ``--samples``
gives it). ``X / s`` is one ``Mul`` per distinct activation tensor (Q, K and V share theirs), and
``diag(s) W`` is folded into the weights before they are quantised per channel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.optimization.passes.base import PassContext, PassError, load_model, probe_tensors, save_model

SCALE_RANGE = (1e-2, 1e2)  # keeps a dead channel (max |x| = 0) from blowing up its weights


def channel_peaks(path: Path, tensors: list[str], ctx: PassContext) -> dict[str, np.ndarray]:
    """max |x| per last-axis channel of each named tensor, over every calibration feed."""
    peaks: dict[str, np.ndarray] = {}
    for values in probe_tensors(path, tensors, ctx, "smooth"):
        for name, value in values.items():
            if value.ndim >= 2:
                a = np.abs(value.astype(np.float32)).reshape(-1, value.shape[-1]).max(axis=0)
                peaks[name] = a if name not in peaks else np.maximum(peaks[name], a)
    return peaks


def smooth(src: Path, out: Path, nodes: list[str], alpha: float, ctx: PassContext) -> tuple[Path, dict]:
    """Write ``out``: ``src`` with the activation inputs of ``nodes`` (MatMuls with constant weights) smoothed."""
    import onnx
    from onnx import numpy_helper

    if not 0.0 < alpha < 1.0:
        raise PassError(f"smooth alpha must be between 0 and 1 (exclusive), got {alpha}")
    model = load_model(src)
    inits = {i.name: i for i in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    users: dict[str, list] = {}
    for name in nodes:
        node = by_name[name]
        if node.op_type == "MatMul" and node.input[1] in inits:
            users.setdefault(node.input[0], []).append(node)
    peaks = channel_peaks(src, list(users), ctx)
    muls: dict[str, onnx.NodeProto] = {}
    for tensor, consumers in users.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in consumers]
        if tensor not in peaks or any(w.ndim != 2 or w.shape[0] != peaks[tensor].size for w in weights):
            continue  # not a [.., K] @ [K, N] product with a measured activation: leave it alone
        w_peak = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = (np.maximum(peaks[tensor], 1e-5) ** alpha / np.maximum(w_peak, 1e-5) ** (1 - alpha))
        scale = np.clip(scale, *SCALE_RANGE).astype(np.float32)
        for node, w in zip(consumers, weights):
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((w * scale[:, None]).astype(w.dtype),
                                                                  node.input[1]))
        inverse, smoothed = f"{tensor}__smooth_inv", f"{tensor}__smoothed"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        muls[tensor] = onnx.helper.make_node("Mul", [tensor, inverse], [smoothed], name=f"{tensor}__smooth")
        for node in consumers:
            node.input[0] = smoothed
    _insert_after_producers(model.graph, muls)
    model.graph.ClearField("value_info")
    save_model(model, out)
    return out, {"smooth_alpha": alpha, "smoothed_inputs": len(muls), "smoothed_nodes": sum(
        len(users[t]) for t in muls)}


def _insert_after_producers(graph, muls: dict) -> None:
    """Put each new Mul right after the node that makes its input (graph inputs first): topological order."""
    pending = dict(muls)
    ordered = [pending.pop(name) for name in [i.name for i in graph.input] if name in pending]
    for node in graph.node:
        ordered.append(node)
        ordered += [pending.pop(o) for o in node.output if o in pending]
    graph.ClearField("node")
    graph.node.extend(ordered)
