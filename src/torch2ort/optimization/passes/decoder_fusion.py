"""Decoder fusion: onnxscript's ORT fusions on a dynamo KV-cache decoder graph, plus the rotary rule it lacks.

onnxscript's ``ort_fusions`` turn a Llama/Qwen2-style graph into ``SimplifiedLayerNormalization`` /
``SkipSimplifiedLayerNormalization`` (RMSNorm with the residual add), ``MultiHeadAttention`` (the
scaled-dot-product attention over the concatenated cache) and, through its cos/sin-cache rule,
ORT's ``RotaryEmbedding``. That last rule matches ``MatMul(inv_freq, position_ids)`` — the rotary
angles as transformers 4 traced them; the dynamo export of transformers 5 writes
``Mul(position_ids[..., None], inv_freq)`` instead, so the rule never fires and the rotary step stays
as a dozen elementwise ops per layer. ``_mul_form_rule_class`` below is the same rewrite for that form.

Attention over grouped KV heads (Llama, Qwen2: fewer KV heads than query heads) fuses as ORT's
``GroupQueryAttention`` (``attention="gqa"``, the default). onnxscript's rule matches these graphs, but its
rewrite takes each row's length from ``ReduceMax(position_ids)`` (right padding) and passes no mask, while
the runtime left-pads a batch as transformers does. ``_masked_gqa_rule_class`` below is the same match with
another rewrite: every row's ``seqlens_k`` is the padded width minus one and ``total_sequence_length`` the
width of ``attention_mask``, and an ``attention_bias`` built once from ``attention_mask`` (a large finite
negative where a key is padding: ``-inf`` would give a padded query row NaN, which later layers would read
back from the cache) masks the padding; GQA's own causal mask does the rest. The rotary step stays a separate
``RotaryEmbedding`` on Q and K (``do_rotary=0``), fed the graph's ``position_ids``, so a left-padded row's
positions count from its first real token (GQA's own rotary, given ``position_ids``, was measured inexact on a
left-padded batch, and it refuses head sizes that are not a multiple of 16). GQA reads the past K/V with
their own number of heads, so the ``Expand`` that repeated them for MultiHeadAttention goes, and when a
caller binds ``past_key_values.*`` and ``present.*`` to the same buffer (``max_len`` long on the sequence
axis), GQA writes the new K/V in place at ``seqlens_k`` and the graph concatenates nothing: the fused
graph says so in its metadata (``torch2ort.kv_cache = shared``), which ``pack`` copies into the bundle's
``generation`` section and ``runtime/generate.py`` reads. Equal heads (GPT-2) or ``attention="mha"`` fuse
as ``MultiHeadAttention``, with the cache concatenated by the graph.

The fused graph is not trusted: the optimiser re-verifies it against transformers (logits on the
prefill and cached steps, greedy tokens) before it can be kept, like every pass.
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

# The ops a decoder fusion writes, in the order the report lists them.
FUSED_OPS = ("GroupQueryAttention", "MultiHeadAttention", "RotaryEmbedding", "SkipSimplifiedLayerNormalization",
             "SimplifiedLayerNormalization", "SkipLayerNormalization", "LayerNormalization", "FastGelu",
             "BiasGelu", "Gelu")
# A constant cos/sin table is built for positions up to this; beyond it the table is computed in the graph.
MAX_TABLE_POSITIONS = 1 << 16
ATTENTION = ("gqa", "mha")
# The metadata key a graph whose every present.* comes out of GroupQueryAttention carries (runtime/generate.py).
KV_CACHE_KEY, SHARED = "torch2ort.kv_cache", "shared"


class DecoderFusion(Pass):
    name = "decoder-fusion"

    def __init__(self, attention: str = "gqa", max_positions: int | None = None) -> None:
        if attention not in ATTENTION:
            raise PassError(f"decoder-fusion attention {attention!r}: choose from {', '.join(ATTENTION)}")
        if max_positions is not None and (not isinstance(max_positions, int) or max_positions < 1):
            raise PassError(f"decoder-fusion max_positions must be a positive whole number, got {max_positions!r}")
        super().__init__(attention=None if attention == "gqa" else attention)
        self.attention, self.max_positions = attention, max_positions

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnx_ir as ir

        with quiet_library():
            model, counts = fuse_decoder(ir.load(str(src)), self.attention, self.max_positions)
            cache = mark_shared_cache(model)
        data = out.with_name(out.name + ".data")
        data.unlink(missing_ok=True)
        big = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
        ir.save(model, str(out), **({"external_data": data.name} if big > EXTERNAL_DATA_BYTES else {}))
        _loads(out)
        before, after = op_counts(src), op_counts(out)
        fused = {op: after[op] - before.get(op, 0) for op in FUSED_OPS if after.get(op, 0) > before.get(op, 0)}
        notes = []
        if not fused.get("MultiHeadAttention") and not fused.get("GroupQueryAttention"):
            notes.append("no attention fused: this decoder's attention subgraph does not match onnxscript's patterns")
        return PassResult(out, bool(fused), {"fused_ops": fused, "rules": {k: v for k, v in counts.items() if v},
                                             "kv_cache": cache}, notes)


def _loads(path: Path) -> None:
    """ONNX Runtime must accept the fused graph (onnxscript's rules can leave one it refuses: on a GPT-2 export a
    ``Gemm`` fed a rank-3 input); a graph it refuses is this pass's failure, said in one line."""
    import onnxruntime as ort

    from torch2ort.errors import describe

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PassError(f"decoder-fusion wrote a graph ONNX Runtime refuses: {describe(exc)}") from None


def fuse_decoder(model, attention: str = "gqa", max_positions: int | None = None):
    """onnxscript's ``fuse_xformers`` steps, in its order, with the mul-form cos/sin rule after its own cos/sin rule.

    Returns the model and the number of times each rule fired.
    """
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter import pattern, rewrite
    from onnxscript.rewriter.ort_fusions import _core, mha, mha_bias, mha_scale, sdpa

    rewrite(model, [_core._gemm_to_matmul_add.gemm_to_matmul_add_rule])
    model = _core._pre_optimize(model)
    table = (max_positions - 1) if max_positions and max_positions <= MAX_TABLE_POSITIONS else None
    rule = _mul_form_rule_class().rule("CosSinCache_mul_form", max_pos_id=table)
    steps = {"rms_normalization": _core.fuse_rms_normalization,
             "skip_layer_normalization": _core.fuse_skip_layer_normalization,
             "skip_rms_normalization": _core.fuse_skip_rms_normalization,
             "rotary_embedding": _core.fuse_rotary_embedding,
             "cos_sin_cache": _core.fuse_cos_sin_cache,
             "cos_sin_cache_mul_form": lambda m: pattern.RewriteRuleSet([rule]).apply_to_model(m),
             "partial_rotary_embedding": _core.fuse_partial_rotary_embedding}
    counts = {}
    for name, step in steps.items():
        counts[name] = step(model)
        if name == "cos_sin_cache_mul_form":
            common.RemoveUnusedNodesPass()(model)
            common.CommonSubexpressionEliminationPass()(model)
    counts["sdpa"] = sdpa.fuse_sdpa(model, apply_shape_inference=True)
    counts["gqa"] = 0
    if attention == "gqa":
        counts["gqa"] = pattern.RewriteRuleSet([_masked_gqa_rule_class().rule()]).apply_to_model(model)
        if counts["gqa"]:  # each layer built the same bias and lengths from attention_mask: keep one
            common.CommonSubexpressionEliminationPass()(model)
            common.RemoveUnusedNodesPass()(model)
    counts["mha"] = mha.fuse_mha1(model) + mha.fuse_mha2(model)
    if counts["mha"]:
        counts["mha_scale"] = mha_scale.fuse_mha_scale(model)
        counts["mha_bias"] = mha_bias.fuse_mha_bias(model)
    counts["gelu"] = _core.fuse_gelu(model) + _core.fuse_bias_gelu(model)
    counts["sdpa_via_mha"] = _core.replace_sdpa_by_mha(model)
    optimize(model)
    rewrite(model, _core.ORT_PATTERN_REWRITE_RULES)
    common.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1)(model)
    common.RemoveInitializersFromInputsPass()(model)
    common.ShapeInferencePass()(model)
    return model, counts


def mark_shared_cache(model) -> str:
    """``shared`` (stamped in the model's metadata) when every ``present.*`` output is written by a
    GroupQueryAttention node, so a caller may bind each past and present to one buffer; else ``concat``."""
    presents = [v for v in model.graph.outputs if v.name.startswith("present.")]
    shared = bool(presents) and all(v.producer() is not None and v.producer().op_type == "GroupQueryAttention"
                                    for v in presents)
    if shared:
        model.metadata_props[KV_CACHE_KEY] = SHARED
    else:
        model.metadata_props.pop(KV_CACHE_KEY, None)
    return SHARED if shared else "concat"


def _masked_gqa_rule_class():
    import numpy as np
    import onnx_ir as ir
    from onnxscript.rewriter import pattern as p
    from onnxscript.rewriter.ort_fusions.gqa import GroupQueryAttention

    class _MaskedGQA(GroupQueryAttention):
        """onnxscript's GQA match, rewritten to take the lengths and the padding from ``attention_mask`` and to
        keep the rotary step outside (see the module docstring)."""

        def check(self, context, query_BSD, **kw):
            result = super().check(context, query_BSD=query_BSD, **kw)
            if not result:
                return result
            mask = next((v for v in context.model.graph.inputs if v.name == "attention_mask"), None)
            if mask is None:
                return p.MatchResult().fail("the graph has no attention_mask input")
            if query_BSD.dtype != ir.DataType.FLOAT:
                return p.MatchResult().fail("the masked GQA rewrite is built for float32 graphs", query_BSD)
            self._mask = mask
            # the new tokens' count from input_ids, not from this layer's query: every layer then builds the
            # same bias, and common-subexpression elimination keeps one for the whole graph
            self._ids = next((v for v in context.model.graph.inputs if v.name == "input_ids"), None)
            return result

        def rewrite(self, op, query_BSD, key_BSDkv, value_BSDkv, past_key, past_value, position_ids, cos, sin,
                    query_BSHDh, key_BSHkvDh, query_BHSDh_rope, key_BHkvSDh_rope, query_BSHDh_normalized=None,
                    query_BHSDh_normalized=None, key_BSHkvDh_normalized=None, key_BHkvSDh_normalized=None, **_):
            # Q/K normalised before the rotary (Qwen3, Gemma): normalise in (B, S, H, Dh), as onnxscript's rewrite
            for norm, shaped, name in ((query_BHSDh_normalized or query_BSHDh_normalized, query_BSHDh, "q"),
                                       (key_BHkvSDh_normalized or key_BSHkvDh_normalized, key_BSHkvDh, "k")):
                if norm is not None:
                    node = norm.producer()
                    flat = op.Reshape(op.SimplifiedLayerNormalization(shaped, node.inputs[1], **node.attributes),
                                      op.Constant(value_ints=[0, 0, -1]))
                    query_BSD, key_BSDkv = (flat, key_BSDkv) if name == "q" else (query_BSD, flat)
            rotary = {k: v for k, v in query_BHSDh_rope.producer().attributes.items() if k != "num_heads"}
            query = op.RotaryEmbedding(query_BSD, position_ids, cos, sin, num_heads=self.num_heads, **rotary,
                                       _domain="com.microsoft")
            key = op.RotaryEmbedding(key_BSDkv, position_ids, cos, sin, num_heads=self.kv_num_heads, **rotary,
                                     _domain="com.microsoft")
            # lengths: every row is the padded width long (the bias masks each row's padding)
            width = op.Shape(self._mask, start=1, end=2)                                  # [T]
            total = op.Cast(op.Squeeze(width), to=ir.DataType.INT32)                      # T
            one = op.Constant(value=ir.tensor(1, dtype=ir.DataType.INT32))
            seqlens_k = op.Expand(op.Sub(total, one), op.Shape(self._mask, start=0, end=1))        # [B]
            keep = op.Cast(op.Unsqueeze(self._mask, op.Constant(value_ints=[1, 2])), to=ir.DataType.FLOAT)
            lowest = op.Constant(value_float=float(np.finfo(np.float32).min))
            bias = op.Mul(op.Sub(op.Constant(value_float=1.0), keep), lowest)             # (B, 1, 1, T)
            rows = op.Concat(op.Shape(self._mask, start=0, end=1), op.Constant(value_ints=[1]),
                             op.Shape(self._ids if self._ids is not None else query_BSD, start=1, end=2), width,
                             axis=0)
            bias = op.Expand(bias, rows)                                                  # (B, 1, S, T)
            return op.GroupQueryAttention(query, key, value_BSDkv, past_key, past_value, seqlens_k, total, None, None,
                                          None, bias, num_heads=self.num_heads, kv_num_heads=self.kv_num_heads,
                                          do_rotary=0, _domain="com.microsoft", _outputs=3)

    return _MaskedGQA


def _mul_form_rule_class():
    from onnxscript.rewriter import _ir_utils
    from onnxscript.rewriter import pattern as p
    from onnxscript.rewriter.ort_fusions.cos_sin_cache import CosSinCacheFusion

    class _MulFormCosSinCache(CosSinCacheFusion):
        """``RotaryEmbedding(x, cos, sin)`` whose angles are ``Mul(float(position_ids[..., None]), inv_freq)``:
        rewritten as ORT's ``RotaryEmbedding(x, position_ids, cos_cache, sin_cache)``."""

        def __init__(self, name: str, max_pos_id: int | None = None) -> None:
            super().__init__(name, cast=False, const_freqs=False)
            self._max_pos_id = max_pos_id  # a constant table up to here; None: computed in the graph per call

        def pattern(self, op, x, inv_freq, position_ids, interleaved, num_heads, extra_dims):
            positions = op.Cast(op.Unsqueeze(position_ids, extra_dims), to=1)   # [B, S, 1] float
            freqs = op.Mul(positions, inv_freq)                                 # [B, S, E/2]
            emb = op.Concat(freqs, freqs, axis=-1)
            cos, sin = op.Unsqueeze(op.Cos(emb), [1]), op.Unsqueeze(op.Sin(emb), [1])
            return op.RotaryEmbedding(x, cos, sin, interleaved=interleaved, num_heads=num_heads,
                                      _domain="ai.onnxruntime._fusion")

        def check(self, context, inv_freq, position_ids, extra_dims, **_):
            result = p.MatchResult()
            if not _ir_utils.has_rank(position_ids, 2):
                return result.fail("position_ids is not 2-D", position_ids)
            if not (_ir_utils.is_singleton_value(extra_dims, -1) or _ir_utils.is_singleton_value(extra_dims, 2)):
                return result.fail("position_ids is not unsqueezed on its last axis", extra_dims)
            if inv_freq.const_value is None or inv_freq.const_value.numpy().ndim != 1:
                return result.fail("inv_freq is not a 1-D constant", inv_freq)
            return result

        def rewrite(self, op, x, inv_freq, position_ids, interleaved, num_heads, **_):
            return super().rewrite(op, x, inv_freq, position_ids, interleaved, num_heads, freqs=None,
                                   dtype=None)

    return _MulFormCosSinCache
