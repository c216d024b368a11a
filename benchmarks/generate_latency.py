"""Per-token decode latency as the context grows to 1,024 tokens, and where the growth comes from.

A decoder folder (default: the stdlib-trained model of ``train_tiny_lm.py``) is exported and packed by
torch2ort, then one prompt is decoded for 1,024 new tokens (EOS held back with ``min_new_tokens``)
several ways, each ``--repeats`` times, with 2 intra-op threads:

- ``Bundle.stream``: the runtime's loop with text (incremental detokenisation): each step's ``present``
  OrtValues are bound as the next step's past, never leaving ONNX Runtime;
- ``stream_ids``: the same loop without text, so the difference is the detokeniser's;
- ``fused``: ``stream_ids`` on the decoder-fusion graph (MultiHeadAttention, RotaryEmbedding, …);
- ``numpy copy``: the export driven by ``session.run`` with the past as numpy arrays, so the whole
  cache crosses into Python and back every step (the loop we did not write).

Per-step wall time is averaged over 32-step windows ending at contexts of 128, 256, 512 and 1,024
tokens; min and median over the repeats are reported. Then ONNX Runtime's profiler splits one decode
step at a context of 128 and of 1,024 by op type (kernel time, the cache held fixed), and the
whole-row decode the runtime used to do each step is timed at 100 and 1,000 tokens. Refreshes the
``generate`` section of BENCHMARKS.md.

    nice -n 5 flock /tmp/t2o-bench.lock .venv/bin/python benchmarks/generate_latency.py [--model DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402

DEFAULT_MODEL = Path.home() / ".cache" / "torch2ort" / "stdlib-lm"
CONTEXTS = (128, 256, 512, 1024)
WINDOW = 32
PROMPT = "def __init__(self"


def ours(bundle, new_tokens: int) -> list[float]:
    return _stamps(bundle.stream(PROMPT, max_new_tokens=new_tokens, min_new_tokens=new_tokens))


def ids_only(gen, new_tokens: int) -> list[float]:
    return _stamps(gen.stream_ids([gen.encode([PROMPT])[0]], new_tokens, min_new_tokens=new_tokens))


def _stamps(steps) -> list[float]:
    times, last = [], time.perf_counter()
    for _ in steps:
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def profile(path: Path, info: dict, threads: int, contexts=(128, 1024), steps: int = 60) -> dict[int, dict]:
    """ONNX Runtime's profiler on one decode step at each context (the past held fixed): ms per step by op type."""
    import collections

    import onnxruntime as ort

    names = [f"past_key_values.{i}.{k}" for i in range(info["layers"]) for k in ("key", "value")]
    out = {}
    for ctx in contexts:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.enable_profiling, opts.log_severity_level = threads, True, 3
        opts.profile_file_prefix = str(path.parent / "profile")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        shape = (1, info["kv_heads"], ctx - 1, info["head_dim"])
        past = {n: ort.OrtValue.ortvalue_from_numpy(rng.standard_normal(shape).astype(np.float32)) for n in names}
        feed = {"input_ids": np.array([[5]]), "attention_mask": np.ones((1, ctx), np.int64),
                "position_ids": np.array([[ctx - 1]])}
        binding = session.io_binding()
        for k in info["inputs"]:
            binding.bind_cpu_input(k, feed[k])
        for n, v in past.items():
            binding.bind_ortvalue_input(n, v)
        for o in session.get_outputs():
            binding.bind_output(o.name, "cpu")
        for _ in range(steps):
            session.run_with_iobinding(binding)
        trace = Path(session.end_profiling())
        by, total = collections.Counter(), 0.0
        for e in json.loads(trace.read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                by[e["args"]["op_name"]] += e["dur"] / 1000 / steps
                total += e["dur"] / 1000 / steps
        trace.unlink()
        out[ctx] = {"total": total, "ops": dict(by.most_common())}
    return out


def detokenise_cost(tokenizer) -> dict[int, float]:
    """ms to decode a whole row of n tokens: what the runtime did each step before it decoded incrementally."""
    ids = np.random.default_rng(0).integers(0, 256, 1100).tolist()
    out = {}
    for n in (100, 1000):
        start = time.perf_counter()
        for k in range(n, n + 32):
            tokenizer.decode(ids[:k], skip_special_tokens=True)
        out[n] = (time.perf_counter() - start) * 1000 / 32
    return out


def numpy_copy(bundle, new_tokens: int) -> list[float]:
    """The same greedy loop with the past as numpy arrays through session.run."""
    gen = bundle.generator()
    info, session = gen.info, bundle.session
    ids = np.array([gen.encode([PROMPT])[0]], dtype=np.int64)
    mask = np.ones_like(ids)
    positions = np.arange(ids.shape[1], dtype=np.int64)[None]
    past = {n: np.zeros((1, info["kv_heads"], 0, info["head_dim"]), np.float32) for n in gen.past_names}
    times, last = [], time.perf_counter()
    for _ in range(new_tokens):
        feed = {k: v for k, v in {"input_ids": ids, "attention_mask": mask, "position_ids": positions}.items()
                if k in gen.inputs}
        outs = session.run(None, {**feed, **past})
        past = dict(zip(gen.past_names, outs[1:]))
        logits = outs[0][:, -1]
        logits[:, gen.eos] = -np.inf
        ids = logits.argmax(-1)[:, None].astype(np.int64)
        mask = np.concatenate([mask, np.ones_like(ids)], axis=1)
        positions = positions[:, -1:] + 1
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def windows(times: list[float], prompt_tokens: int) -> dict[int, float]:
    """Mean step time (ms) over the WINDOW steps that end at each context length."""
    out = {}
    for ctx in CONTEXTS:
        end = ctx - prompt_tokens
        if end <= len(times) and end - WINDOW >= 1:  # step 0 is the prefill
            out[ctx] = 1000 * float(np.mean(times[end - WINDOW:end]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not (args.model / "config.json").is_file():
        print(f"{args.model}: no model; run benchmarks/train_tiny_lm.py first", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from torch2ort import api
    from torch2ort.runtime import Bundle

    with tempfile.TemporaryDirectory(prefix="t2o-genbench-") as tmp:
        import onnxruntime as ort

        from torch2ort.optimization.passes.base import PassContext
        from torch2ort.optimization.passes.decoder_fusion import DecoderFusion
        from torch2ort.runtime.generate import Generator

        bundle_dir = Path(tmp) / "bundle"
        api.pack(f"hf:{args.model}", bundle_dir, name="decoder")
        bundle = Bundle.load(bundle_dir, intra_op_num_threads=args.threads)
        gen = bundle.generator()
        model = next(bundle_dir.glob("*.onnx"))
        fused_path = DecoderFusion(max_positions=gen.info.get("max_positions"))(
            model, Path(tmp) / "fused.onnx", PassContext(Path(tmp))).model
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        fused = Generator(ort.InferenceSession(str(fused_path), opts, providers=["CPUExecutionProvider"]),
                          gen.tokenizer, gen.info)
        prompt_tokens = len(gen.encode([PROMPT])[0])
        new_tokens = CONTEXTS[-1] - prompt_tokens
        loops = {"Bundle.stream (text, incremental)": lambda: ours(bundle, new_tokens),
                 "stream_ids (tokens only)": lambda: ids_only(gen, new_tokens),
                 "fused graph, stream_ids": lambda: ids_only(fused, new_tokens),
                 "numpy copy (session.run)": lambda: numpy_copy(bundle, new_tokens)}
        for run in loops.values():  # warm-up
            run()
        results: dict[str, list[dict[int, float]]] = {name: [] for name in loops}
        for _ in range(args.repeats):
            for name, run in loops.items():
                results[name].append(windows(run(), prompt_tokens))
        profiles = {"export": profile(model, gen.info, args.threads),
                    "fused": profile(fused_path, gen.info, args.threads)}
        decode_ms = detokenise_cost(gen.tokenizer)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    for name, runs in results.items():
        cells = []
        for ctx in CONTEXTS:
            vals = [r[ctx] for r in runs if ctx in r]
            spread = (max(vals) - min(vals)) / min(vals) if vals else 0
            cells.append(f"{min(vals):.2f} / {statistics.median(vals):.2f}" + (" (unstable)" if spread > 0.5 else ""))
        first, last = (min(r[c] for r in runs) for c in (CONTEXTS[0], CONTEXTS[-1]))
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {last / first:.2f}× |")
    prof_rows = []
    for graph, by_ctx in profiles.items():
        small, big = by_ctx[CONTEXTS[0]], by_ctx[CONTEXTS[-1]]
        grown = sorted(big["ops"], key=lambda op: big["ops"][op] - small["ops"].get(op, 0.0), reverse=True)[:4]
        prof_rows.append(f"| {graph} | {small['total']:.3f} | {big['total']:.3f} | " + ", ".join(
            f"{op} {small['ops'].get(op, 0.0):.3f} → {big['ops'][op]:.3f}" for op in grown) + " |")
    info = (args.model / "training.json").read_text() if (args.model / "training.json").is_file() else "{}"
    cfg = json.loads(info).get("config", {})
    body = "\n".join([
        f"Model: `{args.model.name}` ({cfg.get('num_hidden_layers', '?')} layers, "
        f"hidden {cfg.get('hidden_size', '?')}, "
        f"{cfg.get('num_key_value_heads', '?')} KV heads; `benchmarks/train_tiny_lm.py`), exported and packed by "
        f"torch2ort, fp32, {args.threads} intra-op threads. One prompt ({prompt_tokens} tokens) decoded greedily to "
        f"{CONTEXTS[-1]} tokens of context; ms per token, mean over the {WINDOW} steps ending at each context, "
        f"min / median of {args.repeats} runs. Load while measuring: `{load}`.",
        "",
        "| loop | " + " | ".join(f"ctx {c}" for c in CONTEXTS) + f" | ctx {CONTEXTS[-1]} / ctx {CONTEXTS[0]} |",
        "| --- | " + " | ".join("---:" for _ in CONTEXTS) + " | ---: |",
        *rows,
        "",
        f"Where a step's time goes (ONNX Runtime's profiler, one decode step with the cache held at {CONTEXTS[0]} "
        f"and at {CONTEXTS[-1]} tokens; kernel ms per step, and the four op types that grew most):",
        "",
        f"| graph | kernels at ctx {CONTEXTS[0]} (ms) | at ctx {CONTEXTS[-1]} (ms) | grew most (ms/step) |",
        "| --- | ---: | ---: | --- |",
        *prof_rows,
        "",
        f"Decoding a whole row, as the runtime did each step before it detokenised incrementally: "
        f"{decode_ms[100]:.3f} ms at 100 tokens, {decode_ms[1000]:.3f} ms at 1,000. "
        "Measured by `benchmarks/generate_latency.py`.",
    ])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "generate", "Text generation: per-token latency as the context grows",
                       body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
