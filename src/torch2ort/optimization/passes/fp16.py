"""FP16 weights and compute with float32 inputs and outputs (``keep_io_types``), aimed at GPUs.

Overflow check: the converted model runs on the calibration feeds next to the fp32 model. NaN/Inf
where fp32 is finite, or a relative error above ``max_rel_error``, triggers one retry that keeps in
fp32 the numerically sensitive ops (SENSITIVE_OPS) and every node whose fp32 activations leave the
fp16 range on those feeds. The details record both attempts. On CPU, ONNX Runtime runs many fp16
ops through casts, so the variant is verifiable there but rarely faster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.optimization.passes.base import Pass, PassContext, PassResult, load_model, save_model

FP16_MAX = 65504.0
SENSITIVE_OPS = ["Pow", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Exp",
                 "Log", "Softmax", "LogSoftmax", "LayerNormalization", "SkipLayerNormalization",
                 "InstanceNormalization", "Sqrt", "Reciprocal", "CumSum", "Range"]


class Fp16(Pass):
    name = "fp16"

    def __init__(self, op_block_list: list[str] | None = None, max_rel_error: float = 0.05) -> None:
        super().__init__(op_block_list=op_block_list)
        self.op_block_list, self.max_rel_error = op_block_list, max_rel_error

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

        blocked_ops = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(self.op_block_list or []))
        self._convert(src, out, blocked_ops, [])
        problem = _overflow(src, out, ctx, self.max_rel_error)
        details: dict = {"keep_io_types": True, "attempts": [{"op_block_list": self.op_block_list or [],
                                                              "problem": problem}]}
        notes = []
        if problem:
            nodes = _out_of_range_nodes(src, ctx)
            blocked_ops = sorted(set(blocked_ops) | set(SENSITIVE_OPS))
            self._convert(src, out, blocked_ops, nodes)
            retry_problem = _overflow(src, out, ctx, self.max_rel_error)
            details["attempts"].append({"op_block_list": SENSITIVE_OPS, "node_block_list": nodes,
                                        "problem": retry_problem})
            notes.append(f"fp16 {problem}; retried with {len(SENSITIVE_OPS)} sensitive op types and "
                         f"{len(nodes)} out-of-range nodes kept in fp32"
                         + (f", still: {retry_problem}" if retry_problem else ", which fixed it"))
        return PassResult(out, True, details, notes)

    @staticmethod
    def _convert(src: Path, out: Path, ops: list[str], nodes: list[str]) -> None:
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = convert_float_to_float16(load_model(src), keep_io_types=True, op_block_list=ops,
                                         node_block_list=nodes or None)
        _drop_round_trips(model)
        OnnxModel(model).topological_sort()  # the converter appends its input casts last
        save_model(model, out)


def _drop_round_trips(model) -> int:
    """Remove float32 -> float16 -> float32 Cast pairs.

    The converter puts them between neighbouring blocked nodes, which defeats the block list: a
    value that overflows fp16 still passes through fp16 on its way from one fp32 node to the next.
    """
    import onnx

    nodes = list(model.graph.node)
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in model.graph.output}

    def to(node) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    dropped, removed = 0, set()
    for down in nodes:
        if to(down) != onnx.TensorProto.FLOAT16 or down.output[0] in graph_outputs:
            continue
        ups = consumers.get(down.output[0], [])
        if not ups or any(to(u) != onnx.TensorProto.FLOAT or u.output[0] in graph_outputs for u in ups):
            continue
        source = down.input[0]
        for up in ups:
            for n in nodes:
                n.input[:] = [source if i == up.output[0] else i for i in n.input]
            removed.add(id(up))
        removed.add(id(down))
        dropped += 1
    keep = [n for n in nodes if id(n) not in removed]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return dropped


def _session(path: Path, providers: list[str]):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=providers)


def _overflow(src: Path, out: Path, ctx: PassContext, max_rel: float) -> str | None:
    """A one-line description of the fp16 model's numeric trouble on the calibration feeds, or None."""
    if not ctx.calibration:
        return None
    ref_s, got_s = _session(src, ["CPUExecutionProvider"]), _session(out, ctx.providers)
    names = [o.name for o in ref_s.get_outputs()]
    for feed in ctx.calibration:
        for name, r, g in zip(names, ref_s.run(None, feed), got_s.run(None, feed)):
            if not np.issubdtype(np.asarray(r).dtype, np.floating):
                continue
            r64, g64 = np.asarray(r, np.float64), np.asarray(g, np.float64)
            bad = int((np.isfinite(r64) & ~np.isfinite(g64)).sum())
            if bad:
                return f"overflowed: {bad} NaN/Inf values in {name!r} where fp32 is finite"
            rel = float(np.linalg.norm(g64 - r64) / max(np.linalg.norm(r64), 1e-12))
            if rel > max_rel:
                return f"drifted: relative error {rel:.3g} in {name!r} against fp32 (limit {max_rel:g})"
    return None


def _out_of_range_nodes(src: Path, ctx: PassContext) -> list[str]:
    """Nodes that produce or consume a float32 tensor beyond the fp16 range on any calibration feed.

    Consumers count too: blocking only the producer would leave a cast back to fp16 on its output.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(load_model(src))
    floats = {vi.name for vi in model.graph.value_info if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    floats |= {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    existing = {o.name for o in model.graph.output}
    touching: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in list(node.output) + list(node.input):
            if name in floats:
                touching.setdefault(name, set()).add(node.name)
    for name in sorted(touching):
        if name not in existing:
            model.graph.output.add().CopyFrom(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    probe = ctx.workdir / "fp16-probe.onnx"
    save_model(model, probe)
    session = _session(probe, ["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    hot: set[str] = set()
    for feed in ctx.calibration:
        for name, value in zip(names, session.run(None, feed)):
            if name in touching and np.abs(np.nan_to_num(np.asarray(value, np.float64))).max(initial=0) > FP16_MAX:
                hot |= touching[name]
    probe.unlink(missing_ok=True)
    return sorted(hot)
