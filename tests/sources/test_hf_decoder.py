"""hf:DIR with a causal LM: the task is detected, one decoder graph with a KV cache is exported (dynamo),
and verify holds it step by step and token by token against transformers; a planted cache fault fails."""

from __future__ import annotations

import json

import pytest

from fixtures.decoders import decoder_dir, plant_cache_fault, plant_weight_noise

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize(("arch", "task"), [("GPT2LMHeadModel", "text-generation"),
                                            ("LlamaForCausalLM", "text-generation"),
                                            ("Qwen2ForCausalLM", "text-generation"),
                                            ("GPT2Model", "feature-extraction")])
def test_task_is_detected_from_the_architecture(tmp_path, arch, task):
    from torch2ort.sources.hf import detect_task

    (tmp_path / "config.json").write_text(json.dumps({"architectures": [arch]}))
    assert detect_task(tmp_path) == task


def test_decoder_graph_has_the_cache_inputs_and_dynamic_dims(llama_decoder):
    import onnx

    assert llama_decoder.export.exporter == "dynamo"
    graph = onnx.load(str(llama_decoder.onnx), load_external_data=False).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(graph.input) + list(graph.output)}
    assert dims["input_ids"] == ["batch", "sequence"] and dims["position_ids"] == ["batch", "sequence"]
    assert dims["attention_mask"] == ["batch", "total_sequence"]
    assert dims["past_key_values.1.value"] == ["batch", 2, "past_sequence", 8]
    assert dims["logits"][:2] == ["batch", "logits_sequence"]  # every position, or the last logits_to_keep
    assert dims["logits_to_keep"] == [] and "logits_to_keep" in {i.name for i in graph.initializer}
    assert set(dims["present.0.key"]) >= {"batch"} and isinstance(dims["present.0.key"][2], str)
    assert [o.name for o in graph.output] == ["logits"] + [f"present.{i}.{k}" for i in range(2)
                                                          for k in ("key", "value")]
    gen = llama_decoder.loaded.hints.generation
    assert (gen["layers"], gen["kv_heads"], gen["head_dim"], gen["eos_token_id"]) == (2, 2, 8, [256])


def test_verify_holds_logits_per_step_and_greedy_tokens(llama_decoder):
    from torch2ort.parity.verify import verify_onnx

    res = verify_onnx(llama_decoder.loaded, llama_decoder.onnx, llama_decoder.loaded.hints.spec)
    assert res.report, res.report.failures()
    assert [c["name"] for c in res.cases][:3] == ["prefill", "decode-1", "decode-2"] and len(res.cases) == 17
    gen = res.generation
    assert gen["identical"] and len(gen["greedy"]) == 2 * len(gen["prompts"])  # each alone, then all batched
    assert {g["how"] for g in gen["greedy"]} == {"alone", "batched"}
    # peaked weights: the top-1 margins clear the float error by far, so equal tokens mean something
    assert gen["min_top1_margin"] > 100 * gen["max_logit_error"] and "note" not in gen


def test_a_corrupted_cache_update_fails_verify(llama_decoder, tmp_path):
    from torch2ort.parity.verify import verify_onnx

    bad = plant_cache_fault(llama_decoder.onnx, tmp_path / "bad.onnx")
    res = verify_onnx(llama_decoder.loaded, bad, llama_decoder.loaded.hints.spec)
    assert not res.report
    per_case = {c.case: c.passed for c in res.report.comparisons}
    assert per_case["prefill"] and not per_case["decode-1"]  # the first step that reads the cache


def test_a_degraded_graph_reports_the_first_greedy_divergence(llama_decoder, tmp_path):
    from torch2ort.parity.generation import first_divergence
    from torch2ort.parity.verify import verify_onnx

    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == {"step": 1, "expected": 2, "got": 5}
    assert first_divergence([1, 2, 3], [1, 2]) == {"step": 2, "expected": 3, "got": None}
    bad = plant_weight_noise(llama_decoder.onnx, tmp_path / "noisy.onnx")
    res = verify_onnx(llama_decoder.loaded, bad, llama_decoder.loaded.hints.spec)
    assert not res.report and not res.generation["identical"]
    diverged = [g for g in res.generation["greedy"] if g["divergence"]]
    assert diverged and all(isinstance(g["divergence"]["step"], int) for g in diverged)
    assert any("greedy tokens differ" in e and "first at step" in e for e in res.report.errors)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2", "gemma2"])  # GPT-2: tests/pipeline/test_migrate_decoder.py
def test_other_families_export_and_verify(tmp_path, family):
    from fixtures.decoders import export_decoder
    from torch2ort.parity.verify import verify_onnx
    from torch2ort.sources import ModelRequest, load_model

    loaded = load_model(ModelRequest(f"hf:{decoder_dir(tmp_path / family, family)}"))
    assert loaded.hints.task == "text-generation"
    assert ("position_ids" in loaded.hints.generation["inputs"])
    export = export_decoder(loaded, tmp_path / "m.onnx")
    assert export.exporter == "dynamo", export.attempts
    res = verify_onnx(loaded, export.path, loaded.hints.spec)
    assert res.report and res.generation["identical"], res.report.failures()


@pytest.mark.parametrize("where", ["tokenizer_config", "jinja_file", "named_list", "none"])
def test_the_chat_template_travels_into_the_generation_section(tmp_path, where):
    """As apply_chat_template finds it: chat_template.jinja (transformers 5 saves it apart), else tokenizer_config's
    string or its 'default' named template; the special tokens the template may name go with it."""
    from torch2ort.sources.hf_decoder import chat_info

    template = "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
    cfg = {"eos_token": {"content": "</s>", "lstrip": False}, "bos_token": "<s>"}
    if where == "tokenizer_config":
        cfg["chat_template"] = template
    elif where == "named_list":
        cfg["chat_template"] = [{"name": "tool_use", "template": "x"}, {"name": "default", "template": template}]
    elif where == "jinja_file":
        (tmp_path / "chat_template.jinja").write_text(template)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    info = chat_info(tmp_path)
    if where == "none":
        assert info == {}
    else:
        assert info == {"chat_template": template, "special_tokens": {"bos_token": "<s>", "eos_token": "</s>"}}
