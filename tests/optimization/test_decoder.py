"""A decoder's weight-only variants behind generation gates: every variant judged and timed, the fastest that
holds ships, and a variant whose decoding is broken is refused even when teacher-forced text looks fine."""

from __future__ import annotations

import pytest

from fixtures.decoders import plant_weight_noise

pytest.importorskip("onnxruntime")


def test_variants_are_gated_and_the_fastest_that_holds_is_chosen(llama_decoder, tmp_path):
    from torch2ort.optimization.decoder import optimize_decoder

    hints = llama_decoder.loaded.hints
    res = optimize_decoder(llama_decoder.onnx, hints.generation, hints.tokenizer, hints.texts, chains="auto",
                           out=tmp_path / "best.onnx", repeats=1)
    names = [v.name for v in res.variants]
    assert names == ["fp32", "int8-weight", "int4-weight"]
    for v in res.variants[1:]:
        assert v.details["matmulnbits"] == 2 * 7 + 1 and v.details["block_size"] == 32  # 7 per layer + lm_head
        assert set(v.gates) >= {"top1", "ppl_ratio", "greedy", "loops", "text"} and v.ms_per_token > 0
        assert v.passed == (not v.gates["failures"])
    held = [v for v in res.variants if v.passed]
    assert res.chosen == min(held, key=lambda v: v.ms_per_token).name
    assert (res.output is None) == (res.chosen == "fp32")
    assert "standard library" in res.text


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

    assert variant_names("auto") == ["int8-weight", "int4-weight"]
    with pytest.raises(UsageError, match="int4-weight"):
        variant_names(["int3-weight"])
