"""A decoder's weight-only variants behind generation gates: every variant judged and timed, the fastest that
holds ships, and a variant whose decoding is broken is refused even when teacher-forced text looks fine."""

from __future__ import annotations

import pytest

from fixtures.decoders import plant_weight_noise

pytest.importorskip("onnxruntime")


def test_variants_are_gated_and_the_fastest_that_holds_is_chosen(llama_decoder, tmp_path):
    from torch2ort.optimization.decoder import optimize_decoder, summary

    hints = llama_decoder.loaded.hints
    res = optimize_decoder(llama_decoder.onnx, hints.generation, hints.tokenizer, hints.texts[:2], chains="auto",
                           out=tmp_path / "best.onnx", repeats=1, loaded=llama_decoder.loaded)
    names = [v.name for v in res.variants]
    assert names == ["fp32", "fused", "int8-weight", "int4-weight", "fused+int8-weight", "fused+int4-weight"]
    by = {v.name: v for v in res.variants}
    for v in res.variants[1:]:
        assert set(v.gates) >= {"top1", "ppl_ratio", "greedy", "loops", "text"} and v.ms_per_token > 0
        assert v.passed == (not v.gates["failures"])
    for name in ("int8-weight", "int4-weight"):
        assert by[name].details["matmulnbits"] == 2 * 7 + 1 and by[name].details["block_size"] == 32  # 7/layer + head
    # packed: Q/K/V as one, gate/up as one, o and down: 4 per layer, plus the head
    assert by["fused+int4-weight"].details["matmulnbits"] == 2 * 4 + 1
    assert by["fused+int4-weight"].details["gather_block_quantized"] == 1  # its embedding too; int4-weight's not
    assert "gather_block_quantized" not in by["int4-weight"].details
    for name in ("fused", "fused+int8-weight", "fused+int4-weight"):  # the fusion re-verified against transformers
        assert by[name].details["fused_ops"]["GroupQueryAttention"] == 2 and by[name].parity["passed"]
        assert by[name].parity["checked"] and by[name].parity["greedy_identical"]
        assert by[name].details["packed"] == {"groups": 4, "merged": 10, "biases": 0, "matmuls_before": 15,
                                              "matmuls_after": 9}
    assert "10 MatMuls packed into 4" in summary(by["fused"])
    assert by["fused"].gates["top1"] == 1.0 and by["fused+int4-weight"].label == \
        "decoder-fusion+pack-projections+int4-weight[block=32,accuracy=4,embedding]"
    held = [v for v in res.variants if v.passed]
    assert res.chosen == min(held, key=lambda v: v.ms_per_token).name
    assert (res.output is None) == (res.chosen == "fp32")
    assert "standard library" in res.text


def test_a_fused_graph_that_fails_parity_is_refused_with_what_builds_on_it(llama_decoder, tmp_path, monkeypatch):
    from fixtures.decoders import plant_rotary_fault
    from torch2ort.optimization.decoder import optimize_decoder
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion

    real = DecoderFusion.run

    def faulty(self, src, out, ctx):
        res = real(self, src, out, ctx)
        plant_rotary_fault(res.model, res.model)
        return res

    monkeypatch.setattr(DecoderFusion, "run", faulty)
    hints = llama_decoder.loaded.hints
    res = optimize_decoder(llama_decoder.onnx, hints.generation, hints.tokenizer, hints.texts[:2],
                           chains=["fused,fused+int4-weight"], out=tmp_path / "best.onnx", repeats=1,
                           loaded=llama_decoder.loaded)
    fused, fused4 = res.variants[1:]
    for v in (fused, fused4):
        assert not v.passed and "fails parity against transformers" in v.why and not v.parity["passed"]
    assert res.chosen == "fp32" and res.output is None


def test_gates_pass_the_same_graph_and_refuse_a_degraded_one(llama_decoder, tmp_path):
    import onnxruntime as ort

    from torch2ort.parity.generation_gates import heldout_text, judge_decoder
    from torch2ort.runtime.generate import load_tokenizer

    hints = llama_decoder.loaded.hints
    text, name = heldout_text(None)
    tok = load_tokenizer(llama_decoder.folder / "tokenizer.json")
    ref = ort.InferenceSession(str(llama_decoder.onnx))

    same = judge_decoder(ref, ort.InferenceSession(str(llama_decoder.onnx)), hints.generation, tok, hints.texts,
                         text, name)
    assert same.passed and same.top1 == 1.0 and same.greedy == 1.0 and abs(same.ppl_ratio - 1) < 1e-6
    noisy = plant_weight_noise(llama_decoder.onnx, tmp_path / "noisy.onnx")
    bad = judge_decoder(ref, ort.InferenceSession(str(noisy)), hints.generation, tok, hints.texts, text, name)
    assert not bad.passed and bad.top1 < 0.9, bad.to_dict()
    assert "Python standard library sources" in bad.text and bad.positions == 8 * 128


def test_unknown_variant_names_list_the_valid_ones():
    from torch2ort.errors import UsageError
    from torch2ort.optimization.decoder import variant_names

    assert variant_names("auto") == ["fused", "int8-weight", "int4-weight", "fused+int8-weight", "fused+int4-weight"]
    with pytest.raises(UsageError, match="int4-weight"):
        variant_names(["int3-weight"])


def test_optimize_cli_refuses_a_degraded_int4_and_writes_the_planner_json(llama_decoder, tmp_path, monkeypatch):
    """``torch2ort optimize`` on a decoder: an int4 variant planted to degrade is refused, the fp32 export kept
    (auto), and ``--json`` has the shape optimize writes for every other model."""
    import json

    from fixtures.decoders import plant_weight_noise
    from fixtures.families import run_cli
    from torch2ort.optimization.passes.weight_only import WeightOnly

    real = WeightOnly.run

    def degraded(self, src, out, ctx):
        res = real(self, src, out, ctx)
        if self.options["bits"] == 4:  # the int4 variant, degraded: noise on every remaining 2-D weight
            plant_weight_noise(src, res.model, scale=2.0)
        return res

    monkeypatch.setattr(WeightOnly, "run", degraded)
    out, report = tmp_path / "best.onnx", tmp_path / "opt.json"
    code = run_cli("optimize", f"hf:{llama_decoder.folder}", llama_decoder.onnx, "-o", out, "--passes", "int4-weight",
                   "--repeats", "1", "--json", report)
    data = json.loads(report.read_text())
    assert code == 1 and not out.exists() and data["chosen"] is None
    int4 = next(v for v in data["variants"] if v["name"].startswith("int4-weight"))
    assert not int4["passed"] and "top-1" in int4["error"]
    assert set(data) >= {"model", "onnx", "variants", "gates", "cases", "calibration", "chosen", "output", "message",
                         "decoder"}
    assert data["decoder"]["text"].startswith("Python standard library sources")


def test_a_transposed_or_fused_transposed_weight_is_untied_so_it_can_be_quantised(tmp_path):
    """A tied LM head reaches its MatMul as Transpose(W) (export) or FusedMatMul(transB=1) (after fusion): both
    become MatMul with a transposed initializer, the same numbers out, and MatMulNBits then takes them."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.weight_only import WeightOnly, untie_transposed_weights

    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)   # vocab 64, hidden 32
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]), helper.make_node("MatMul", ["x", "Wt"], ["a"]),
         helper.make_node("FusedMatMul", ["x", "W"], ["b"], domain="com.microsoft", transB=1)],
        "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 64]) for n in "ab"], [numpy_helper.from_array(w, "W")])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.save(model, tmp_path / "tied.onnx")
    x = np.random.default_rng(1).standard_normal((2, 32)).astype(np.float32)
    assert untie_transposed_weights(model) == 2
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul"]
    assert [i.name for i in model.graph.initializer] == ["W.transposed"]
    onnx.save(model, tmp_path / "untied.onnx")
    for out in ort.InferenceSession(str(tmp_path / "untied.onnx")).run(None, {"x": x}):
        np.testing.assert_allclose(out, x @ w.T, rtol=1e-5, atol=1e-5)
    res = WeightOnly(bits=4)(tmp_path / "tied.onnx", tmp_path / "int4.onnx", PassContext(tmp_path))
    assert res.details["matmulnbits"] == 2 and res.details["transposed_weights"] == 2


def test_a_bias_add_after_a_quantised_matmul_becomes_its_bias_input(tmp_path):
    """Qwen2's packed Q/K/V bias: ``Add(MatMulNBits(x), b)`` folds into MatMulNBits' bias (one node less per
    layer), with the same outputs as the unfolded graph; an Add another node also reads, or a 2-D addend, stays."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.weight_only import WeightOnly, fold_bias_adds

    rng = np.random.default_rng(0)
    w1, w2, w3 = (rng.standard_normal((64, 48)).astype(np.float32) for _ in range(3))
    b, b2 = rng.standard_normal(48).astype(np.float32), rng.standard_normal((2, 48)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["m1"]), helper.make_node("Add", ["m1", "b"], ["y1"]),
         helper.make_node("MatMul", ["x", "W2"], ["m2"]), helper.make_node("Add", ["b", "m2"], ["y2"]),
         helper.make_node("Neg", ["m2"], ["y3"]),                                      # m2 has a second reader
         helper.make_node("MatMul", ["x", "W3"], ["m3"]), helper.make_node("Add", ["m3", "b2"], ["y4"])],
        "biased", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2", "y3", "y4")],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "W1"), (w2, "W2"), (w3, "W3"), (b, "b"), (b2, "b2"))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "biased.onnx")
    res = WeightOnly(bits=4)(tmp_path / "biased.onnx", tmp_path / "int4.onnx", PassContext(tmp_path))
    assert res.details["matmulnbits"] == 3 and res.details["biases_folded"] == 1
    folded = onnx.load(str(res.model))
    assert [n.op_type for n in folded.graph.node].count("Add") == 2
    assert next(n for n in folded.graph.node if n.output[0] == "y1").input[5] == "b"
    x = rng.standard_normal((2, 64)).astype(np.float32)
    unfolded = onnx.load(str(res.model))
    for n in unfolded.graph.node:  # undo the fold by hand: the same int4 weights, the bias as an Add again
        if n.output[0] == "y1":
            del n.input[3:]
            n.output[0] = "m1"
    unfolded.graph.node.append(helper.make_node("Add", ["m1", "b"], ["y1"]))
    got = ort.InferenceSession(folded.SerializeToString()).run(["y1"], {"x": x})[0]
    want = ort.InferenceSession(unfolded.SerializeToString()).run(["y1"], {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert fold_bias_adds(folded) == 0  # nothing left to fold


def test_the_embedding_can_be_quantised_too_and_its_options_are_checked(llama_decoder, tmp_path):
    """``embedding=True``: the token embedding's Gather becomes GatherBlockQuantized (no other Gather is touched),
    the graph keeps its logits_to_keep input, and the quantised rows cost little next to int4 MatMuls alone (this
    random fixture's int4 misses the top-1 gate either way: its logits are near-uniform on real text)."""
    import onnxruntime as ort

    from torch2ort.export.graph import op_counts
    from torch2ort.optimization.passes.base import PassContext, PassError
    from torch2ort.optimization.passes.weight_only import WeightOnly
    from torch2ort.parity.generation_gates import heldout_text, judge_decoder
    from torch2ort.runtime.generate import load_tokenizer

    p = WeightOnly(bits=4, embedding=True)
    assert p.label == "int4-weight[block=32,accuracy=4,embedding]"
    res = p(llama_decoder.onnx, tmp_path / "int4e.onnx", PassContext(tmp_path))
    assert res.details["gather_block_quantized"] == 1 and res.details["matmulnbits"] == 2 * 7 + 1
    counts = op_counts(res.model)
    assert counts["GatherBlockQuantized"] == 1
    assert counts.get("Gather", 0) == op_counts(llama_decoder.onnx)["Gather"] - 1  # only the embedding's
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref, got = (ort.InferenceSession(str(p), opts) for p in (llama_decoder.onnx, res.model))
    assert [i.name for i in got.get_overridable_initializers()] == ["logits_to_keep"]
    hints = llama_decoder.loaded.hints
    text, name = heldout_text(None)
    plain = WeightOnly(bits=4)(llama_decoder.onnx, tmp_path / "int4.onnx", PassContext(tmp_path)).model
    tok = load_tokenizer(llama_decoder.folder / "tokenizer.json")
    with_embedding, without = (judge_decoder(ref, s, hints.generation, tok, hints.texts[:2], text, name)
                               for s in (got, ort.InferenceSession(str(plain), opts)))
    assert with_embedding.ppl_ratio <= 1.10 and with_embedding.top1 >= without.top1 - 0.1, with_embedding.to_dict()
    for bad in ({"bits": 8, "embedding": True}, {"embedding": "yes"}):
        with pytest.raises(PassError):
            WeightOnly(**bad)
