"""The decoder fusion on dynamo Llama and Qwen2 graphs: the fused ops are really there, the fused graph still
matches transformers step by step and token for token, and a fault planted in a fused op is caught."""

from __future__ import annotations

import pytest

from fixtures.decoders import plant_rotary_fault

pytest.importorskip("onnxscript")

NORMS = {"RotaryEmbedding": 4, "SkipSimplifiedLayerNormalization": 4,
         "SimplifiedLayerNormalization": 1}  # 2 layers: rotary on Q and K each, the norms
PROMPTS = ["def fibonacci(n):", "The quick brown fox"]  # two lengths: the batched run is left-padded


def _fuse(decoder, tmp_path, **options):
    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion

    return DecoderFusion(max_positions=256, **options)(decoder.onnx, tmp_path / "fused.onnx", PassContext(tmp_path))


@pytest.mark.parametrize(("family", "attention"), [("llama", "gqa"), ("qwen2", "gqa"), ("llama", "mha")])
def test_fused_graph_has_the_fused_ops_and_still_matches_transformers(family, attention, request, tmp_path):
    """Grouped KV heads fuse as GroupQueryAttention by default (lengths and the left padding from attention_mask),
    as MultiHeadAttention with attention="mha"; both match transformers on left-padded batches."""
    import onnx

    from torch2ort.export.graph import op_counts
    from torch2ort.parity.generation import verify_decoder

    decoder = request.getfixturevalue(f"{family}_decoder")
    res = _fuse(decoder, tmp_path, **({} if attention == "gqa" else {"attention": attention}))
    fused = {("GroupQueryAttention" if attention == "gqa" else "MultiHeadAttention"): 2, **NORMS}
    assert res.details["fused_ops"] == fused, res.details
    counts = op_counts(res.model)
    assert all(counts[op] > 0 for op in fused) and "Softmax" not in counts and "Pow" not in counts
    model = onnx.load(str(res.model))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    presents = [o.name for o in model.graph.output if o.name.startswith("present.")]
    meta = {p.key: p.value for p in model.metadata_props}.get("torch2ort.kv_cache")
    if attention == "gqa":  # GQA reads the past as it comes in and writes the present itself: nothing concatenated
        assert {producers[p] for p in presents} == {"GroupQueryAttention"}
        assert all(i.startswith("past_key_values.") for n in model.graph.node if n.op_type == "GroupQueryAttention"
                   for i in n.input[3:5])
        assert res.details["kv_cache"] == meta == "shared"
        gqa = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]  # one bias, built once for all
        assert len({n.input[10] for n in gqa}) == 1 and counts["Expand"] <= 2, counts
    else:
        assert res.details["kv_cache"] == "concat" and meta is None
    check = verify_decoder(decoder.loaded, res.model, prompts=PROMPTS)
    assert check.report, check.report.failures()
    assert check.generation["identical"] and len(check.generation["greedy"]) == 4  # 2 alone + 2 batched
    assert check.generation["min_top1_margin"] > 10 * check.report.max_abs()  # equal tokens prove something


def test_a_fault_planted_in_a_fused_op_fails_parity(llama_decoder, tmp_path):
    from torch2ort.parity.generation import verify_decoder

    bad = plant_rotary_fault(_fuse(llama_decoder, tmp_path).model, tmp_path / "bad.onnx")
    res = verify_decoder(llama_decoder.loaded, bad, prompts=PROMPTS, steps=2, new_tokens=4)
    assert not res.report
    assert any(c.case == "prefill" and not c.passed for c in res.report.comparisons)


def test_options_are_checked():
    from torch2ort.optimization.passes.base import PassError
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion

    for bad in ({"attention": "flash"}, {"max_positions": 0}, {"max_positions": 1.5}):
        with pytest.raises(PassError):
            DecoderFusion(**bad)


def test_a_graph_the_rules_break_is_the_pass_failing_in_one_line(tmp_path, monkeypatch):
    """onnxscript's rules can leave a graph ONNX Runtime refuses (a GPT-2 export's Gemm fed rank 3): a PassError."""
    import onnx
    from onnx import TensorProto, helper

    from torch2ort.optimization.passes import decoder_fusion
    from torch2ort.optimization.passes.base import PassContext, PassError

    broken = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                           [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(broken, tmp_path / "in.onnx")
    monkeypatch.setattr(decoder_fusion, "fuse_decoder", lambda model, *a: (model, {}))
    with pytest.raises(PassError, match="ONNX Runtime refuses"):
        decoder_fusion.DecoderFusion()(tmp_path / "in.onnx", tmp_path / "out.onnx", PassContext(tmp_path))
