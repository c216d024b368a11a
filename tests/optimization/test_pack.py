"""Packed projections: MatMuls sharing an input become one MatMul and a Split. Fewer MatMuls (the counts), the same
outputs, the same greedy tokens as transformers on the decoder families, whatever attention reads the results."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from torch2ort.export.graph import op_counts
from torch2ort.optimization.passes.base import PassContext
from torch2ort.optimization.passes.pack import PackProjections, pack_projections

PROMPTS = ["def fibonacci(n):", "The quick brown fox"]  # two lengths: the batched run is left-padded


def _session(path_or_model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _verify(loaded, path):
    from torch2ort.parity.generation import verify_decoder

    res = verify_decoder(loaded, path, prompts=PROMPTS, steps=4, new_tokens=16)
    assert res.report, res.report.failures()
    assert res.generation["identical"] and len(res.generation["greedy"]) == 4  # 2 alone + 2 batched
    assert res.generation["min_top1_margin"] > 10 * res.report.max_abs()  # equal tokens prove something


def test_a_llama_export_packs_qkv_and_gate_up_and_keeps_transformers_tokens(llama_decoder, tmp_path):
    res = PackProjections()(llama_decoder.onnx, tmp_path / "packed.onnx", PassContext(tmp_path))
    # per layer: q/k/v (3 -> 1) and gate/up (2 -> 1); 2 layers; no biases in Llama
    assert {k: res.details[k] for k in ("groups", "merged", "biases")} == {"groups": 4, "merged": 10, "biases": 0}
    before, after = op_counts(llama_decoder.onnx), op_counts(res.model)
    assert before["MatMul"] - after["MatMul"] == 6 and after["Split"] - before.get("Split", 0) == 4
    assert res.changed and res.notes == ["10 MatMuls sharing an input packed into 4 (19 -> 13 MatMuls)"]
    _verify(llama_decoder.loaded, res.model)


def test_a_fused_qwen2_packs_its_biases_too_and_keeps_transformers_tokens(qwen2_decoder, tmp_path):
    """Qwen2 has q/k/v biases; after the fusion its attention is GroupQueryAttention over a shared cache."""
    pytest.importorskip("onnxscript")
    from torch2ort.export.logits import restore_logits_to_keep
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion

    ctx = PassContext(tmp_path)
    fused = DecoderFusion(max_positions=256)(qwen2_decoder.onnx, tmp_path / "fused.onnx", ctx).model
    restore_logits_to_keep(qwen2_decoder.onnx, fused)
    res = PackProjections()(fused, tmp_path / "packed.onnx", ctx)
    assert {k: res.details[k] for k in ("groups", "merged", "biases")} == {"groups": 4, "merged": 10, "biases": 6}
    counts = op_counts(res.model)
    assert counts["GroupQueryAttention"] == 2 and counts["MatMul"] == op_counts(fused)["MatMul"] - 6
    assert "logits_to_keep" in {i.name for i in _session(res.model).get_overridable_initializers()}
    _verify(qwen2_decoder.loaded, res.model)


@pytest.mark.slow  # its own GPT-2 export
def test_gpt2_already_packs_its_qkv_so_nothing_changes(tmp_path):
    from fixtures.decoders import decoder_dir, export_decoder
    from torch2ort.sources import ModelRequest, load_model

    loaded = load_model(ModelRequest(f"hf:{decoder_dir(tmp_path / 'gpt2', 'gpt2')}"))
    path = export_decoder(loaded, tmp_path / "gpt2.onnx").path
    res = PackProjections()(path, tmp_path / "packed.onnx", PassContext(tmp_path))
    assert res.details["groups"] == 0 and not res.changed and res.notes == []  # c_attn is one Conv1D already
    assert op_counts(res.model) == op_counts(path)
    _verify(loaded, res.model)


# --- synthetic graphs: what reads the packed results, biases on some members only ---------------------------------
K, HEADS, KV_HEADS, HEAD = 32, 2, 1, 16


def _w(rng, *shape) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def _attention_graph(kind: str) -> onnx.ModelProto:
    """x [1, S, K] -> q/k/v MatMuls (+ biases) -> GroupQueryAttention or MultiHeadAttention -> y; q also an output."""
    rng = np.random.default_rng(0)
    q_n, kv_n = HEADS * HEAD, (KV_HEADS if kind == "gqa" else HEADS) * HEAD
    inits = [numpy_helper.from_array(_w(rng, K, q_n), "wq"), numpy_helper.from_array(_w(rng, K, kv_n), "wk"),
             numpy_helper.from_array(_w(rng, K, kv_n), "wv"),
             numpy_helper.from_array(rng.standard_normal(q_n).astype(np.float32), "bq"),
             numpy_helper.from_array(rng.standard_normal(kv_n).astype(np.float32), "bk"),
             numpy_helper.from_array(rng.standard_normal(kv_n).astype(np.float32), "bv")]
    nodes = [helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}0"]) for p in "qkv"]
    nodes += [helper.make_node("Add", [f"{p}0", f"b{p}"], [p]) for p in "qkv"]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "S", K])]
    if kind == "gqa":
        inputs += [helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
                   helper.make_tensor_value_info("total", TensorProto.INT32, [])]
        nodes.append(helper.make_node("GroupQueryAttention", ["q", "k", "v", "", "", "seqlens_k", "total"],
                                      ["y", "present_k", "present_v"], domain="com.microsoft", num_heads=HEADS,
                                      kv_num_heads=KV_HEADS))
    else:
        nodes.append(helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft",
                                      num_heads=HEADS))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("q", TensorProto.FLOAT, None)]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits),
                             opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("kind", ["gqa", "mha"])
def test_the_attention_op_reading_the_results_does_not_matter(kind):
    model = _attention_graph(kind)
    x = np.random.default_rng(1).standard_normal((1, 5, K)).astype(np.float32)
    feed = {"x": x} | ({"seqlens_k": np.array([4], np.int32), "total": np.array(5, np.int32)} if kind == "gqa"
                       else {})
    want = _session(model).run(["y", "q"], feed)
    packed, details = pack_projections(model)
    assert (details["groups"], details["merged"], details["biases"]) == (1, 3, 3)
    ops = [n.op_type for n in packed.graph.node]
    assert ops.count("MatMul") == 1 and ops.count("Add") == 1 and ops.count("Split") == 1
    got = _session(packed).run(["y", "q"], feed)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_biases_on_some_members_stay_after_the_split_and_other_k_are_not_grouped():
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(_w(rng, K, 8), "wa"), numpy_helper.from_array(_w(rng, K, 4), "wb"),
             numpy_helper.from_array(_w(rng, K, 6), "wc"), numpy_helper.from_array(_w(rng, 8, 4), "wd"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "ba")]
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["a0"]), helper.make_node("Add", ["a0", "ba"], ["a"]),
             helper.make_node("MatMul", ["x", "wb"], ["b"]), helper.make_node("MatMul", ["x", "wc"], ["c"]),
             helper.make_node("MatMul", ["a", "wd"], ["d"])]  # another input: not in the group
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abcd"]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, K])], outs, inits),
        opset_imports=[helper.make_opsetid("", 18)])
    x = rng.standard_normal((3, K)).astype(np.float32)
    want = _session(model).run(None, {"x": x})
    packed, details = pack_projections(model)
    assert (details["groups"], details["merged"], details["biases"]) == (1, 3, 0)
    assert (details["matmuls_before"], details["matmuls_after"]) == (4, 2)
    assert [n.op_type for n in packed.graph.node] == ["MatMul", "Split", "Add", "MatMul"]
    assert not {"wa", "wb", "wc"} & {i.name for i in packed.graph.initializer}  # the separate weights are gone
    for w, g in zip(want, _session(packed).run(None, {"x": x})):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
