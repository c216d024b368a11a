"""Per-token decode latency as the context grows to 1,024 tokens: the KV cache bound as OrtValues vs copied.

A decoder folder (default: the stdlib-trained model of ``train_tiny_lm.py``) is exported and packed by
torch2ort, then one prompt is decoded for 1,024 new tokens (EOS held back with ``min_new_tokens``)
two ways, each ``--repeats`` times, with 2 intra-op threads:

- ``iobinding``: ``Bundle.stream``, the runtime's loop: each step's ``present`` OrtValues are bound as
  the next step's past, never leaving ONNX Runtime;
- ``numpy copy``: the same graph driven by ``session.run`` with the past as numpy arrays, so the whole
  cache crosses into Python and back every step (the loop we did not write).

Per-step wall time is averaged over 32-step windows ending at contexts of 128, 256, 512 and 1,024
tokens; min and median over the repeats are reported. Refreshes the ``generate`` section of BENCHMARKS.md.

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
    times, last = [], time.perf_counter()
    for _ in bundle.stream(PROMPT, max_new_tokens=new_tokens, min_new_tokens=new_tokens):
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


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
        bundle_dir = Path(tmp) / "bundle"
        api.pack(f"hf:{args.model}", bundle_dir, name="decoder")
        bundle = Bundle.load(bundle_dir, intra_op_num_threads=args.threads)
        prompt_tokens = len(bundle.generator().encode([PROMPT])[0])
        new_tokens = CONTEXTS[-1] - prompt_tokens
        ours(bundle, 16)  # warm-up
        results: dict[str, list[dict[int, float]]] = {"iobinding (Bundle.stream)": [], "numpy copy (session.run)": []}
        for _ in range(args.repeats):
            results["iobinding (Bundle.stream)"].append(windows(ours(bundle, new_tokens), prompt_tokens))
            results["numpy copy (session.run)"].append(windows(numpy_copy(bundle, new_tokens), prompt_tokens))
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
        "Attention over the cache grows with the context in any loop; what the runtime removes is the copy of the "
        "whole cache into numpy and back each step. Measured by `benchmarks/generate_latency.py`.",
    ])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "generate", "Text generation: per-token latency as the context grows",
                       body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
