"""Transformer fusion through ``onnxruntime.transformers.optimizer`` (BERT-family graphs).

The speed of a transformer in ORT sits in the fused ``Attention`` op; ``SkipLayerNormalization``
and ``BiasGelu`` help less. The fused-op counts are reported, and a BERT-like graph that came out
without Attention (or SkipLayerNormalization) fusion is called out in a note, not passed over.

ORT's symbolic shape inference cannot read some dynamo exports (it has no rule for a few
opset-18+ reductions), and the fusions then give up without a word. This pass runs the fusions
without that inference; every fused model is re-verified against PyTorch before it is kept, so a
wrong fusion cannot go unnoticed.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.export.graph import op_counts
from torch2ort.optimize.passes.base import EXTERNAL_DATA_BYTES, Pass, PassContext, PassResult, quiet_library

FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu", "LayerNormalization", "SkipSimplifiedLayerNormalization",
             "RotaryEmbedding", "GroupQueryAttention")


def looks_like_transformer(counts) -> bool:
    """Many MatMuls plus softmax and layer norm: a BERT-like encoder (or decoder) block stack."""
    norm = counts.get("LayerNormalization", 0) + counts.get("ReduceMean", 0)
    return counts.get("MatMul", 0) >= 8 and counts.get("Softmax", 0) >= 1 and norm >= 2


class TransformerFusion(Pass):
    name = "transformer"

    def __init__(self, model_type: str = "bert", num_heads: int = 0, hidden_size: int = 0) -> None:
        super().__init__(model_type=None if model_type == "bert" else model_type,
                         num_heads=num_heads or None, hidden_size=hidden_size or None)
        self.model_type, self.num_heads, self.hidden_size = model_type, num_heads, hidden_size

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions

        fusion = FusionOptions(self.model_type)
        fusion.enable_shape_inference = False
        with quiet_library():
            model = optimizer.optimize_model(str(src), model_type=self.model_type, num_heads=self.num_heads,
                                             hidden_size=self.hidden_size, opt_level=0,
                                             optimization_options=fusion, use_gpu=False)
        big = model.model.ByteSize() > EXTERNAL_DATA_BYTES
        model.save_model_to_file(str(out), use_external_data_format=big, all_tensors_to_one_file=True)
        before, after = op_counts(src), op_counts(out)
        fused = {op: after.get(op, 0) - before.get(op, 0) for op in FUSED_OPS if after.get(op, 0) > before.get(op, 0)}
        notes = []
        if looks_like_transformer(before):
            missing = [op for op in ("Attention", "SkipLayerNormalization")
                       if after.get(op, 0) + after.get("MultiHeadAttention" if op == "Attention" else op, 0) == 0]
            if missing:
                notes.append(f"{' and '.join(missing)} fusion did not happen on this BERT-like graph: the "
                             "attention subgraph the exporter wrote does not match ORT's fusion patterns, and "
                             "the fused attention op is where most of the transformer speed-up is")
        return PassResult(out, bool(fused), {"fused_ops": fused}, notes)
