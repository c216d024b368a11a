"""Text generation against its peers: transformers ``generate`` and onnxruntime-genai on one Qwen2-0.5B-shaped model.

The model is a transformers ``Qwen2Config`` with Qwen2-0.5B's sizes (24 layers, hidden 896, 14 heads,
2 KV heads, MLP 4,864, vocabulary 151,936, tied embeddings) and seeded random weights: speed does not
depend on the weights. It is saved as an HF folder in ``--workdir`` (outside the repository), with a
byte-level tokenizer, and every side reads that folder:

- ``transformers``: ``model.generate`` in eager fp32, greedy, cache on;
- ``genai-int4`` / ``genai-fp32``: onnxruntime-genai's model builder on the folder, run by its generator
  (``.venv-genai``, made by ``benchmarks/generate_peers_setup``; skipped, and said so, without it);
- ``ours-fp32``, ``ours-int8``, ``ours-int4``, ``ours-fused``, ``ours-fused-int4``: torch2ort's dynamo export
  (``fp32``), its weight-only MatMulNBits variants (block 32, accuracy level 4) and the decoder fusion
  (GroupQueryAttention over a shared KV buffer) with packed projections (``ours-fused-int4`` quantises the
  embedding too, as the optimiser's ``fused+int4-weight``), each driven by the runtime's torch-free loop
  (``runtime/generate.py``), whose prefill asks the graph for the last position's logits only
  (``logits_to_keep``); ``ours-fused-mha``, ``ours-fused-mha-int4``: the fusion with ``attention="mha"``
  (MultiHeadAttention, the KV heads repeated and the cache concatenated per step, no packing), as the fusion
  was before GroupQueryAttention.

Each side runs in a fresh process with 2 intra-op threads and measures, on seeded random prompts of
128 and 512 tokens: time to first token (the prefill plus the first chosen token), decode tokens/s
(the steps after the first, on the 128-token prompt) and the process's peak RSS. Medians of
``--repeats``. Refreshes the ``generate-peers`` section of BENCHMARKS.md.

    benchmarks/generate_peers_setup                      # once: .venv-genai
    flock /tmp/t2o-bench.lock nice -n -10 .venv/bin/python benchmarks/generate_peers.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENAI_PYTHON = ROOT / ".venv-genai" / "bin" / "python"
WORKER = ROOT / "src" / "torch2ort" / "benchmark" / "generate_worker.py"
DEFAULT_WORKDIR = Path("/tmp/t2o-generate-peers")
# Qwen2-0.5B's shape (its config.json on the hub), random weights.
QWEN2_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                 tie_word_embeddings=True, rms_norm_eps=1e-6)
QUICK = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=128, vocab_size=512, max_position_embeddings=2048, tie_word_embeddings=True)
OURS = ("ours-fp32", "ours-int8", "ours-int4", "ours-fused", "ours-fused-int4", "ours-fused-mha", "ours-fused-mha-int4")
SIDES = ("transformers", "genai-int4", "genai-fp32", *OURS)


# --- the model folder ---------------------------------------------------------------------------------------
def make_folder(folder: Path, quick: bool) -> dict:
    import torch
    import transformers

    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.decoders import EOS, byte_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    byte_tokenizer(folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "model_max_length": 32768}))
    config = transformers.Qwen2Config(bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS,
                                      **(QUICK if quick else QWEN2_05B))
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(config).eval()
    model.generation_config.pad_token_id = EOS
    model.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    facts = {"parameters": params, "matmul_parameters": linear, "gflops_per_token": 2 * linear / 1e9,
             "config": {k: getattr(config, k, v) for k, v in (QUICK if quick else QWEN2_05B).items()}}
    (folder / "facts.json").write_text(json.dumps(facts, indent=1))
    return facts


def build_ours(folder: Path, out: Path, log, sides=OURS) -> None:
    """torch2ort's export, then the weight-only variants and decoder fusion ``sides`` name, each file in ``out``.

    ``ours-fused`` is what the decoder optimiser's ``fused`` variant is: the fusion, the export's
    ``logits_to_keep`` input put back, then the packed projections."""
    from torch2ort import api
    from torch2ort.export.logits import restore_logits_to_keep
    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion
    from torch2ort.optimization.passes.pack import PackProjections
    from torch2ort.optimization.passes.weight_only import WeightOnly

    class FusedPacked:
        label = "decoder-fusion+pack-projections"

        def __call__(self, src, dst, ctx):
            unpacked = dst.with_name("ours-fused-unpacked.onnx")
            fused = DecoderFusion(max_positions=info.get("max_positions"))(src, unpacked, ctx)
            restore_logits_to_keep(src, unpacked)
            res = PackProjections()(unpacked, dst, ctx)
            for f in (unpacked, unpacked.with_name(unpacked.name + ".data")):
                f.unlink(missing_ok=True)
            res.details = {"fused_ops": fused.details["fused_ops"], "kv_cache": fused.details.get("kv_cache"),
                           "packed": res.details}
            return res

    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "ours-fp32.onnx"
    if not fp32.is_file():
        log("exporting with torch2ort (dynamo)")
        loaded = api.load(f"hf:{folder}")
        api.export_onnx(loaded, output=fp32)
        (out / "generation.json").write_text(json.dumps(loaded.hints.generation))
    info = json.loads((out / "generation.json").read_text())
    ctx = PassContext(out)
    steps = [("ours-int8", fp32, WeightOnly(bits=8)), ("ours-int4", fp32, WeightOnly(bits=4)),
             ("ours-fused", fp32, FusedPacked()),
             ("ours-fused-int4", out / "ours-fused.onnx", WeightOnly(bits=4, embedding=True)),
             ("ours-fused-mha", fp32, DecoderFusion(attention="mha", max_positions=info.get("max_positions"))),
             ("ours-fused-mha-int4", out / "ours-fused-mha.onnx", WeightOnly(bits=4))]
    needed = set(sides) | {s[:-len("-int4")] for s in sides  # a fused int4 graph is quantised from its fused one
                           if s.startswith("ours-fused") and s.endswith("-int4") and not (out / f"{s}.onnx").is_file()}
    for name, src, p in steps:
        if name in needed and not (out / f"{name}.onnx").is_file():
            log(f"{name}: {p.label}")
            res = p(src, out / f"{name}.onnx", ctx)
            (out / f"{name}.json").write_text(json.dumps(res.details, default=str))


def build_genai(folder: Path, out: Path, precision: str, log) -> str | None:
    """onnxruntime-genai's model builder on the folder; None when done, else why it could not run."""
    if not GENAI_PYTHON.is_file():
        return "no .venv-genai (run benchmarks/generate_peers_setup)"
    if (out / "genai_config.json").is_file():
        return None
    log(f"onnxruntime-genai builder, {precision}")
    cache = out.parent / f"{out.name}-cache"
    proc = subprocess.run([str(GENAI_PYTHON), "-m", "onnxruntime_genai.models.builder", "-i", str(folder), "-o",
                           str(out), "-p", precision, "-e", "cpu", "-c", str(cache)],
                          capture_output=True, text=True)
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0:
        return "the builder failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    return None


# --- the workers: one side each, in a fresh process -----------------------------------------------------------
def prompts(lengths: list[int], vocab: int) -> dict[int, list[int]]:
    import numpy as np

    rng = np.random.default_rng(0)
    return {n: rng.integers(0, min(vocab, 256), n).tolist() for n in lengths}  # bytes: every id decodes


def worker(side: str, workdir: Path, lengths: list[int], new_tokens: int, repeats: int, threads: int) -> dict:
    facts = json.loads((workdir / "model" / "facts.json").read_text())
    ids = prompts(lengths, facts["config"]["vocab_size"])
    run = {"transformers": _transformers, "genai-int4": _genai, "genai-fp32": _genai}.get(side, _ours)
    step_times = run(side, workdir, threads)
    step_times(ids[lengths[0]], 4)  # warm-up
    ttft, decode = {}, []
    for _ in range(repeats):
        for n in lengths:
            want = new_tokens if n == lengths[0] else 2
            times = step_times(ids[n], want)
            if len(times) != want:  # every side must produce exactly the tokens asked for, EOS held back
                raise SystemExit(f"{side} produced {len(times)} tokens, not {want}")
            ttft.setdefault(n, []).append(times[0] * 1000)
            if n == lengths[0]:
                decode.append((len(times) - 1) / sum(times[1:]))
    peak = _worker_sides().peak_rss_mb()
    return {"side": side, "ttft_ms": {str(n): statistics.median(v) for n, v in ttft.items()},
            "decode_tok_s": statistics.median(decode), "decode_runs": decode, "peak_rss_mb": peak,
            "new_tokens": new_tokens}


def _worker_sides():
    """The package's generation sides (``torch2ort/benchmark/generate_worker.py``), read by path: under
    .venv-genai torch2ort's package does not import."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _transformers(side, workdir, threads):
    return _worker_sides().transformers_side({"model_dir": str(workdir / "model"), "threads": threads})


def _genai(side, workdir, threads):
    return _worker_sides().genai_side({"genai_dir": str(workdir / side), "threads": threads})


def _ours(side, workdir, threads):
    """A bare graph (the variants are not packed) driven by the runtime's loop, as the bundle drives its own."""
    import onnxruntime as ort

    from torch2ort.runtime.generate import Generator

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(workdir / "ours" / f"{side}.onnx"), opts, providers=["CPUExecutionProvider"])
    info = json.loads((workdir / "ours" / "generation.json").read_text())
    return _worker_sides().ours_step_times(Generator(session, None, info))


# --- the driver -----------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="model folder and graphs (not the repo)")
    ap.add_argument("--quick", action="store_true", help="a tiny Qwen2 and short runs: a smoke test of the script")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    ap.add_argument("--prompts", default="128,512", help="prompt lengths in tokens (decode is timed on the first)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lengths = [int(x) for x in args.prompts.split(",")]
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.workdir, lengths, args.new_tokens, args.repeats,
                                            args.threads)))
        return 0
    log = lambda line: print(f"• {line}", file=sys.stderr, flush=True)  # noqa: E731
    if args.build == "model":
        make_folder(args.workdir / "model", args.quick)
        return 0
    if args.build == "ours":
        build_ours(args.workdir / "model", args.workdir / "ours", log, args.sides.split(","))
        return 0
    if args.quick and args.workdir == DEFAULT_WORKDIR:
        args.workdir = DEFAULT_WORKDIR.with_name(DEFAULT_WORKDIR.name + "-quick")
    if args.quick:
        args.new_tokens, args.repeats, lengths = min(args.new_tokens, 8), 1, [16, 32]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    bad = [s for s in sides if s not in SIDES]
    if bad:
        print(f"unknown sides {bad}; choose from {', '.join(SIDES)}", file=sys.stderr)
        return 2
    me = [sys.executable, __file__, "--workdir", str(args.workdir)]
    if not (args.workdir / "model" / "facts.json").is_file():
        log("making the model folder")
        subprocess.run(me + ["--build", "model"] + (["--quick"] if args.quick else []), check=True)
    if any(s in OURS for s in sides):
        subprocess.run(me + ["--build", "ours", "--sides", ",".join(sides)], check=True)
    skipped = {}
    for s in [s for s in sides if s.startswith("genai-")]:
        why = build_genai(args.workdir / "model", args.workdir / s, s.split("-")[1], log)
        if why:
            skipped[s] = why
    results = []
    for side in sides:
        if side in skipped:
            continue
        python = str(GENAI_PYTHON) if side.startswith("genai-") else sys.executable
        cmd = [python, __file__, "--worker", side, "--workdir", str(args.workdir), "--prompts",
               ",".join(map(str, lengths)), "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats),
               "--threads", str(args.threads)]
        log(f"timing {side}")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            skipped[side] = "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
            continue
        results.append(json.loads(line[7:]) | {"load": os.getloadavg()[0]})
    body = render(args, lengths, results, skipped)
    print(body)
    (args.workdir / "results.json").write_text(json.dumps({"results": results, "skipped": skipped}, indent=1))
    if not args.no_write and not args.quick:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _report import update_section

        update_section(ROOT / "BENCHMARKS.md", "generate-peers",
                       "Text generation: torch2ort vs transformers and onnxruntime-genai (Qwen2-0.5B shape)", body)
    return 0


def render(args, lengths: list[int], results: list[dict], skipped: dict) -> str:
    facts = json.loads((args.workdir / "model" / "facts.json").read_text())
    versions = _versions()
    base = next((r for r in results if r["side"] == "transformers"), None)
    rows = []
    for r in results:
        vs = f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}×" if base else "-"
        rows.append(f"| {r['side']} | " + " | ".join(f"{r['ttft_ms'][str(n)]:.0f}" for n in lengths)
                    + f" | {r['decode_tok_s']:.1f} | {vs} | {r['peak_rss_mb']:.0f} | {r['load']:.1f} |")
    model = (f"Model: a `Qwen2Config` with Qwen2-0.5B's shape, random weights ({facts['parameters'] / 1e6:.0f} M "
             f"parameters, {facts['gflops_per_token']:.2f} GFLOPs per token in its matmuls: 2 × their "
             f"{facts['matmul_parameters'] / 1e6:.0f} M weights, the tied LM head included)." if not args.quick else
             f"Model: a tiny Qwen2 (`--quick`, {facts['parameters'] / 1e3:.0f} k parameters).")
    lines = [
        model,
        f"{_cpu()}; {args.threads} intra-op threads on every side, each side in its own process. "
        f"Versions: {versions}.",
        f"Prompts of {', '.join(map(str, lengths))} seeded random tokens; TTFT is the prefill plus the first chosen "
        f"token; decode is the {args.new_tokens - 1} steps after it on the {lengths[0]}-token prompt; medians of "
        f"{args.repeats} runs after a warm-up; peak RSS of the side's whole process. Load is the 1-minute average "
        "after each side (above 3 marks a figure indicative).",
        "",
        "| side | " + " | ".join(f"TTFT {n} (ms)" for n in lengths) + " | decode tok/s | vs transformers | "
        "peak RSS MB | load |",
        "| --- | " + " | ".join("---:" for _ in lengths) + " | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    for side, why in skipped.items():
        lines.append(f"\n{side}: not measured — {why}")
    lines.append("\nMeasured by `benchmarks/generate_peers.py`.")
    return "\n".join(lines)


def _versions() -> str:
    out = []
    for py, names in ((sys.executable, ("onnxruntime", "torch", "transformers")),
                      (str(GENAI_PYTHON), ("onnxruntime-genai", "onnxruntime"))):
        if not Path(py).is_file():
            continue
        code = ("import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n"
                "    print(n + ' ' + m.version(n))")
        proc = subprocess.run([py, "-c", code, *names], capture_output=True, text=True)
        tag = " (.venv-genai)" if py == str(GENAI_PYTHON) else ""
        out += [ln + tag for ln in proc.stdout.splitlines()]
    return ", ".join(out)


def _cpu() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "unknown CPU")
    return f"CPU: {model}, {os.cpu_count()} logical cores"


if __name__ == "__main__":
    raise SystemExit(main())
