"""Which transformers decoder families migrate: ``torch2ort migrate hf:DIR`` on a tiny model of each.

Not a timing: a compatibility table. For each family a 2-layer, hidden-32 model is built from its
transformers config with seeded random weights and the tests' byte-level tokenizer, its final norm
scaled so that greedy tokens are decided by clear margins (as ``tests/fixtures/decoders.py`` does;
near-uniform random logits would make "identical tokens" prove nothing). Each folder then goes
through ``migrate --no-bench`` in its own process (export, verify: prefill and 16 cached steps
against transformers and greedy tokens against ``generate`` alone and batched, pack, and the
torch-blocked check), and the table records what came out of ``evidence.json``.

    nice -n 10 .venv/bin/python benchmarks/decoder_families.py [--only gemma2,phi3] [--workdir DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from _report import update_section  # noqa: E402

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=256)
# family -> (config class, model class, config kwargs)
FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=32, n_layer=2, n_head=4, n_positions=256)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(SMALL, num_key_value_heads=2)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(SMALL, num_key_value_heads=2)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(SMALL, num_key_value_heads=2, head_dim=8)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(SMALL, num_key_value_heads=2)),
    "phi": ("PhiConfig", "PhiForCausalLM", dict(SMALL)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(SMALL, num_key_value_heads=2, pad_token_id=0)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(SMALL, num_key_value_heads=1, head_dim=8)),
    "gemma2 (sliding window 8)": ("Gemma2Config", "Gemma2ForCausalLM",
                                  dict(SMALL, num_key_value_heads=2, head_dim=8, sliding_window=8)),
    "opt": ("OPTConfig", "OPTForCausalLM", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                ffn_dim=64, max_position_embeddings=256, word_embed_proj_dim=32)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(SMALL)),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=256)),
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM", dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                                                             n_positions=256)),
    "falcon": ("FalconConfig", "FalconForCausalLM", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)),
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(hidden_size=32, n_layer=2, n_head=4)),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", dict(SMALL, num_key_value_heads=2)),
    "starcoder2": ("Starcoder2Config", "Starcoder2ForCausalLM", dict(SMALL, num_key_value_heads=2)),
    "granite": ("GraniteConfig", "GraniteForCausalLM", dict(SMALL, num_key_value_heads=2)),
    "olmo": ("OlmoConfig", "OlmoForCausalLM", dict(SMALL, num_key_value_heads=2)),
}
FINAL_NORMS = ("model.norm.weight", "ln_f.weight", "transformer.ln_f.weight", "model.decoder.final_layer_norm.weight",
               "gpt_neox.final_layer_norm.weight", "model.final_layernorm.weight")


def make_folder(path: Path, family: str) -> None:
    import torch
    import transformers

    from fixtures.decoders import EOS, PEAK, byte_tokenizer

    config_cls, model_cls, kwargs = FAMILIES[family]
    path.mkdir(parents=True, exist_ok=True)
    vocab = byte_tokenizer(path / "tokenizer.json")
    config = getattr(transformers, config_cls)(vocab_size=vocab, bos_token_id=EOS, eos_token_id=EOS, **kwargs)
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(config)
    scaled = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in FINAL_NORMS:
                if config_cls.startswith("Gemma"):  # (1 + weight) RMSNorm, weight zero at init
                    p.fill_(PEAK - 1)
                else:
                    p.mul_(PEAK)
                scaled += 1
        if not scaled:  # a norm without weights (OLMo): scale the LM head instead
            model.get_output_embeddings().weight.mul_(PEAK)
    model.generation_config.pad_token_id = EOS
    model.save_pretrained(path)


def run(family: str, workdir: Path) -> dict:
    slug = family.split()[0]
    folder, out = workdir / slug, workdir / f"{slug}-out"
    make_folder(folder, family)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch2ort", "migrate", f"hf:{folder}", "-o", str(out), "--no-bench",
                           "--force"], capture_output=True, text=True, env=env)
    row = {"family": family, "seconds": time.perf_counter() - started, "exit": proc.returncode}
    evidence = out / "evidence.json"
    if not evidence.is_file():
        row["error"] = (proc.stderr.strip().splitlines() or ["no evidence.json"])[-1]
        return row
    ev = json.loads(evidence.read_text())
    gen = (ev.get("verify") or {}).get("generation") or {}
    greedy = gen.get("greedy") or []
    check = ((ev.get("check") or {}).get("outputs") or {}).get("token_ids") or {}
    row |= {"exporter": (ev.get("export") or {}).get("exporter"),
            "greedy": f"{sum(g['identical'] for g in greedy)}/{len(greedy)}" if greedy else "-",
            "tokens": gen.get("new_tokens"), "check": check.get("reason"),
            "passed": bool((ev.get("outcome") or {}).get("passed")),
            "stopped": (ev.get("outcome") or {}).get("reason")}
    return row


def table(rows: list[dict]) -> str:
    lines = ["| family | exporter | greedy runs identical (32 new tokens) | torch-blocked bundle check | migrate |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | - | - | - | exit {r['exit']}: {r['error']} |")
            continue
        lines.append(f"| {r['family']} | {r['exporter']} | {r['greedy']} | {r['check'] or '-'} | "
                     + ("pass" if r["passed"] else f"exit {r['exit']}: {r['stopped']}") + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated family names (default: all)")
    ap.add_argument("--workdir", type=Path, help="where the folders and outputs go (default: a temp dir)")
    ap.add_argument("--no-write", action="store_true", help="print the table; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    names = list(FAMILIES)
    if args.only:
        wanted = args.only.split(",")
        names = [n for n in names if n.split()[0] in wanted]
    with tempfile.TemporaryDirectory(prefix="t2o-decoder-families-") as tmp:
        workdir = args.workdir or Path(tmp)
        rows = []
        for name in names:
            rows.append(run(name, workdir))
            print(json.dumps(rows[-1]), flush=True)
    import transformers
    body = (f"Command: `nice -n 10 .venv/bin/python benchmarks/decoder_families.py` (transformers "
            f"{transformers.__version__}). Each family is a 2-layer, hidden-32 model from its transformers config, "
            "seeded random weights with the final norm scaled so greedy tokens have clear margins, saved with a "
            "byte-level tokenizer, then `torch2ort migrate hf:DIR --no-bench`: export, verify (prefill logits and "
            "16 cached steps against transformers; greedy tokens against `generate(do_sample=False)` for 32 new "
            "tokens on 4 prompts, alone and as a left-padded batch), pack, and the bundle's check in a "
            "torch-blocked process.\n\n"
            f"{sum(r.get('passed', False) for r in rows)} of {len(rows)} families migrate.\n\n" + table(rows) + "\n")
    print(body)
    if not args.no_write and not args.only:
        update_section(ROOT / "BENCHMARKS.md", "decoder-families", "Decoder families that migrate", body)
    return 0 if all(r.get("passed") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
