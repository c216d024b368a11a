"""`torch2ort migrate hf:DIR` on a causal LM (GPT-2): verify step by step and greedy, pack with the generation
section, the packed bundle's own generate checked in a torch-blocked process, then timed against transformers
generate; the report's decoder sections."""

from __future__ import annotations

import json

import pytest

from fixtures.decoders import decoder_dir
from fixtures.families import run_cli

pytest.importorskip("transformers")


@pytest.mark.slow
def test_migrate_a_gpt2_folder_end_to_end(tmp_path):
    folder = decoder_dir(tmp_path / "gpt2", "gpt2")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def add(a, b):\nThe quick brown fox\n")
    out = tmp_path / "out"
    assert run_cli("migrate", f"hf:{folder}", "--samples", prompts, "--prompt-tokens", "16,64", "--new-tokens", "8",
                   "--repeats", "1", "--threads", "1", "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "text-generation" and ev["export"]["exporter"] == "dynamo"
    gen = ev["verify"]["generation"]
    assert ev["verify"]["passed"] and gen["identical"] and gen["prompts"] == ["def add(a, b):", "The quick brown fox"]
    assert gen["kv_cache_bytes_per_token"] == 2 * 2 * 4 * 8 * 4  # K and V, 2 layers, 4 heads of 8, fp32
    stages = {s["name"]: s for s in ev["stages"]}
    assert [s["name"] for s in ev["stages"]][-4:] == ["pack", "check", "bench", "report"]
    assert stages["bench"]["status"] == "ok" and "tok/s" in stages["bench"]["summary"]
    timed = ev["generation_bench"]
    assert timed["prompt_tokens"] == [16, 64] and timed["threads"] == 1 and timed["bundle"] == str(out / "bundle")
    assert timed["sides"]["torch2ort"]["measured"] and timed["sides"]["transformers"]["measured"]
    assert not timed["sides"]["torch2ort"]["torch_imported"]
    assert timed["kv_cache"]["bytes_per_token"] == gen["kv_cache_bytes_per_token"]
    assert not list(out.glob("bench-generation-*"))  # the work dir is gone
    check = ev["check"]
    assert check["outputs"]["token_ids"]["passed"] and not check["torch_imported"]
    manifest = json.loads((out / "bundle" / "torch2ort.json").read_text())
    assert manifest["generation"]["layers"] == 2 and manifest["generation"]["tokenizer"] == "tokenizer.json"
    assert "tokenizers" in (out / "bundle" / "requirements.txt").read_text()
    report = (out / "report.md").read_text()
    assert "Greedy tokens vs transformers generate" in report and "bundle.generate(" in report
    assert "## Performance: generation" in report and "| torch2ort |" in report and "decode tok/s @16" in report


@pytest.mark.slow
def test_migrate_optimize_fused_shows_the_fused_ops_and_their_parity(llama_decoder, tmp_path):
    out = tmp_path / "out"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def add(a, b):\nThe quick brown fox\n")
    assert run_cli("migrate", f"hf:{llama_decoder.folder}", "--samples", prompts, "--optimize", "fused",
                   "--no-bench", "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    fused = next(v for v in ev["optimize"]["decoder"]["variants"] if v["name"] == "fused")
    ops = fused["details"]["fused_ops"]
    assert ops["GroupQueryAttention"] == 2 and ops["RotaryEmbedding"]
    assert fused["parity"]["passed"] and fused["parity"]["greedy_identical"]
    report = (out / "report.md").read_text()
    assert "Decoder fusion" in report and "2 GroupQueryAttention, 4 RotaryEmbedding" in report
    manifest = json.loads((out / "bundle" / "torch2ort.json").read_text())  # the packed graph's own cache mode
    assert manifest["generation"]["cache"] == ("shared" if ev["optimize"]["chosen"] == "fused" else "concat")
    assert "## Performance: generation\n\nNot measured in this run (not asked for (--no-bench))." in report
