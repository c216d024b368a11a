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

``attention``: ``packed`` (default) ends in ``Attention``, one op holding the Q/K/V projection
weights packed together; ``mha`` stops at ``MultiHeadAttention`` and leaves the Q/K/V projections as
MatMuls. In float the two are close; the point of ``mha`` is int8: ``int8-dynamic`` after it
quantises every projection, where the packed Attention keeps a quarter of the encoder's
projection FLOPs in float (ORT's QAttention has no input for the additive mask onnxscript writes).

``skip_norm``: ``fused`` (default) writes SkipLayerNormalization; ``unfused`` keeps the residual
add and LayerNormalization apart, with the add written as ``Sum`` so ORT's own SkipLayerNormFusion
(which matches ``Add``) leaves it alone at load time. On CPU with onnxruntime 1.31 the
SkipLayerNormalization kernel is the slower of the two (BENCHMARKS.md, the optimize section).
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.export.graph import op_counts
from torch2ort.optimization.passes.base import (
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
ATTENTION = ("packed", "mha")
SKIP_NORM = ("fused", "unfused")


class TransformerFusion(Pass):
    name = "transformer"

    def __init__(self, model_type: str = "bert", num_heads: int = 0, hidden_size: int = 0,
                 engine: str = "auto", attention: str = "packed", skip_norm: str = "fused") -> None:
        for option, value, allowed in (("engine", engine, ENGINES), ("attention", attention, ATTENTION),
                                       ("skip_norm", skip_norm, SKIP_NORM)):
            if value not in allowed:
                raise PassError(f"transformer {option} {value!r}: choose from {', '.join(allowed)}")
        super().__init__(model_type=None if model_type == "bert" else model_type,
                         num_heads=num_heads or None, hidden_size=hidden_size or None,
                         engine=None if engine == "auto" else engine,
                         attention=None if attention == "packed" else attention,
                         skip_norm=None if skip_norm == "fused" else skip_norm)
        self.model_type, self.num_heads, self.hidden_size, self.engine = model_type, num_heads, hidden_size, engine
        self.attention, self.skip_norm = attention, skip_norm

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        order = [self.engine] if self.engine != "auto" else (
            ["ort", "onnxscript"] if _exporter(src) == "torchscript" else ["onnxscript", "ort"])
        fuse = {"onnxscript": self._fuse_onnxscript, "ort": self._fuse_ort}
        tried = {}
        for engine in order:
            fuse[engine](src, out)
            tried[engine] = op_counts(out)
            if _attention(tried[engine]):
                break
        engine = max(tried, key=lambda e: (_attention(tried[e]), -order.index(e)))  # most attention, then first
        if engine != list(tried)[-1]:  # the last engine tried overwrote the better result
            fuse[engine](src, out)
        residual_sums = 0 if self.skip_norm == "fused" else _residual_adds_to_sum(out)
        before, after = op_counts(src), op_counts(out)
        fused = {op: after.get(op, 0) - before.get(op, 0) for op in FUSED_OPS if after.get(op, 0) > before.get(op, 0)}
        notes = []
        if looks_like_transformer(before):
            expected = ("Attention", "SkipLayerNormalization") if self.skip_norm == "fused" else ("Attention",)
            missing = [op for op in expected
                       if after.get(op, 0) + after.get("MultiHeadAttention" if op == "Attention" else op, 0) == 0]
            if missing:
                notes.append(f"{' and '.join(missing)} fusion did not happen on this BERT-like graph: the "
                             "attention subgraph the exporter wrote does not match ORT's fusion patterns, and "
                             "the fused attention op is where most of the transformer speed-up is")
        return PassResult(out, bool(fused), {"fused_ops": fused, "engine": engine, "attention": self.attention,
                                             "skip_norm": self.skip_norm, "residual_sums": residual_sums,
                                             "engines_tried": list(tried)}, notes)

    def _fuse_onnxscript(self, src: Path, out: Path) -> None:
        _fuse_onnxscript(src, out, pack_qkv=self.attention == "packed", skip_norm=self.skip_norm == "fused")

    def _fuse_ort(self, src: Path, out: Path) -> None:
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions

        fusion = FusionOptions(self.model_type)
        fusion.enable_shape_inference = False  # ORT's symbolic shape inference cannot read every dynamo graph
        fusion.use_multi_head_attention = self.attention == "mha"
        fusion.enable_skip_layer_norm = fusion.enable_bias_skip_layer_norm = self.skip_norm == "fused"
        with quiet_library():
            model = optimizer.optimize_model(str(src), model_type=self.model_type, num_heads=self.num_heads,
                                             hidden_size=self.hidden_size, opt_level=0,
                                             optimization_options=fusion, use_gpu=False)
        big = model.model.ByteSize() > EXTERNAL_DATA_BYTES
        model.save_model_to_file(str(out), use_external_data_format=big, all_tensors_to_one_file=True)


def _fuse_onnxscript(src: Path, out: Path, pack_qkv: bool = True, skip_norm: bool = True) -> None:
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    with quiet_library():
        if pack_qkv and skip_norm:
            model, _ = optimize_for_ort(ir.load(str(src)))
        else:
            model = _fuse_onnxscript_steps(ir.load(str(src)), pack_qkv, skip_norm)
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


def _fuse_onnxscript_steps(model, pack_qkv: bool, skip_norm: bool):
    """onnxscript's ORT fusions, with Q/K/V packing into Attention and SkipLayerNormalization optional.

    ``optimize_for_ort`` offers no switch for either, so this runs its fusion rules in the same
    order, leaving out ``fuse_attention`` and/or the skip-normalisation fusions, then the same ORT
    pattern rules and clean-up.
    """
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import _core, mha, mha_bias, mha_scale, sdpa

    rewrite(model, [_core._gemm_to_matmul_add.gemm_to_matmul_add_rule])
    model = _core._pre_optimize(model)
    steps = [_core.fuse_erfgelu, _core.fuse_rms_normalization]
    if skip_norm:
        steps += [_core.fuse_skip_layer_normalization, _core.fuse_skip_rms_normalization]
    for step in [*steps, _core.fuse_rotary_embedding, _core.fuse_cos_sin_cache, _core.fuse_partial_rotary_embedding]:
        step(model)
    sdpa.fuse_sdpa(model, apply_shape_inference=True)
    if mha.fuse_mha1(model) + mha.fuse_mha2(model):
        mha_scale.fuse_mha_scale(model)
        mha_bias.fuse_mha_bias(model)
        if pack_qkv:
            _core.fuse_attention(model)
    _core.fuse_gelu(model)
    _core.fuse_bias_gelu(model)
    optimize(model)
    rewrite(model, _core.ORT_PATTERN_REWRITE_RULES)
    common.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1)(model)
    common.RemoveInitializersFromInputsPass()(model)
    common.ShapeInferencePass()(model)
    return model


def _residual_adds_to_sum(path: Path) -> int:
    """Rewrite each Add that feeds a LayerNormalization as Sum (same maths), in place; returns the count.

    ORT fuses ``Add -> LayerNormalization`` into SkipLayerNormalization when it loads a model; it
    does not match ``Sum``, so the two stay apart.
    """
    from torch2ort.optimization.passes.base import load_model, save_model

    model = load_model(path)
    producer = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for node in model.graph.node:
        add = producer.get(node.input[0]) if node.op_type == "LayerNormalization" and node.input else None
        if add is not None and add.op_type == "Add" and add.domain in ("", "ai.onnx"):
            add.op_type = "Sum"
            count += 1
    if count:
        save_model(model, path)
    return count
