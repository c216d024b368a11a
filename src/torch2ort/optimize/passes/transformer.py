"""Transformer fusion: onnxscript's ORT fusions for dynamo graphs, ORT's optimizer for TorchScript ones.

The speed of a transformer in ORT sits in the fused ``Attention`` op; ``SkipLayerNormalization``
and ``BiasGelu`` help less. The fused-op counts are reported, and a BERT-like graph that came out
without Attention (or SkipLayerNormalization) fusion is called out in a note, not passed over.

``onnxruntime.transformers.optimizer`` matches the subgraphs the TorchScript exporter writes, not
the dynamo exporter's (it fuses nothing in our MiniLM export); ``onnxscript.rewriter.ort_fusions``
matches dynamo graphs (6 Attention, 12 SkipLayerNormalization and 6 BiasGelu there). ``engine``
``auto`` picks by the exporter recorded in the model's metadata (dynamo when unrecorded) and falls
back to the other engine when the first fuses no attention. Every fused model is re-verified against
PyTorch before it is kept, so a wrong fusion cannot go unnoticed.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.export.graph import op_counts
from torch2ort.optimize.passes.base import (
    EXTERNAL_DATA_BYTES,
    Pass,
    PassContext,
    PassError,
    PassResult,
    quiet_library,
)

FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu", "LayerNormalization", "SkipSimplifiedLayerNormalization",
             "RotaryEmbedding", "GroupQueryAttention")


def looks_like_transformer(counts) -> bool:
    """Many MatMuls plus softmax and layer norm: a BERT-like encoder (or decoder) block stack."""
    norm = counts.get("LayerNormalization", 0) + counts.get("ReduceMean", 0)
    return counts.get("MatMul", 0) >= 8 and counts.get("Softmax", 0) >= 1 and norm >= 2


ENGINES = ("auto", "onnxscript", "ort")


class TransformerFusion(Pass):
    name = "transformer"

    def __init__(self, model_type: str = "bert", num_heads: int = 0, hidden_size: int = 0,
                 engine: str = "auto") -> None:
        if engine not in ENGINES:
            raise PassError(f"transformer fusion engine {engine!r}: choose from {', '.join(ENGINES)}")
        super().__init__(model_type=None if model_type == "bert" else model_type,
                         num_heads=num_heads or None, hidden_size=hidden_size or None,
                         engine=None if engine == "auto" else engine)
        self.model_type, self.num_heads, self.hidden_size, self.engine = model_type, num_heads, hidden_size, engine

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        order = [self.engine] if self.engine != "auto" else (
            ["ort", "onnxscript"] if _exporter(src) == "torchscript" else ["onnxscript", "ort"])
        fuse = {"onnxscript": _fuse_onnxscript, "ort": self._fuse_ort}
        tried = {}
        for engine in order:
            fuse[engine](src, out)
            tried[engine] = op_counts(out)
            if _attention(tried[engine]):
                break
        engine = max(tried, key=lambda e: (_attention(tried[e]), -order.index(e)))  # most attention, then first
        if engine != list(tried)[-1]:  # the last engine tried overwrote the better result
            fuse[engine](src, out)
        before, after = op_counts(src), tried[engine]
        fused = {op: after.get(op, 0) - before.get(op, 0) for op in FUSED_OPS if after.get(op, 0) > before.get(op, 0)}
        notes = []
        if looks_like_transformer(before):
            missing = [op for op in ("Attention", "SkipLayerNormalization")
                       if after.get(op, 0) + after.get("MultiHeadAttention" if op == "Attention" else op, 0) == 0]
            if missing:
                notes.append(f"{' and '.join(missing)} fusion did not happen on this BERT-like graph: the "
                             "attention subgraph the exporter wrote does not match ORT's fusion patterns, and "
                             "the fused attention op is where most of the transformer speed-up is")
        return PassResult(out, bool(fused), {"fused_ops": fused, "engine": engine,
                                             "engines_tried": list(tried)}, notes)

    def _fuse_ort(self, src: Path, out: Path) -> None:
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions

        fusion = FusionOptions(self.model_type)
        fusion.enable_shape_inference = False  # ORT's symbolic shape inference cannot read every dynamo graph
        with quiet_library():
            model = optimizer.optimize_model(str(src), model_type=self.model_type, num_heads=self.num_heads,
                                             hidden_size=self.hidden_size, opt_level=0,
                                             optimization_options=fusion, use_gpu=False)
        big = model.model.ByteSize() > EXTERNAL_DATA_BYTES
        model.save_model_to_file(str(out), use_external_data_format=big, all_tensors_to_one_file=True)


def _fuse_onnxscript(src: Path, out: Path) -> None:
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    with quiet_library():
        model, _ = optimize_for_ort(ir.load(str(src)))
    data = out.with_name(out.name + ".data")
    data.unlink(missing_ok=True)
    big = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    if big > EXTERNAL_DATA_BYTES:
        ir.save(model, str(out), external_data=data.name)
    else:
        ir.save(model, str(out))


def _exporter(path: Path) -> str | None:
    from torch2ort.export import read_metadata

    return read_metadata(path).get("torch2ort.exporter")


def _attention(counts) -> int:
    return counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0) + counts.get("GroupQueryAttention", 0)
