"""Per-token decode latency as the context grows to 1,024 tokens, at the size users run: the
Qwen2-0.5B-shaped graphs that ``benchmarks/generate_peers.py`` built in its work dir.

``generate_latency.py`` measures the growth on the tiny stdlib-trained model (0.33 M parameters),
where attention over the cache is a large share of a step. Here the same loop (the runtime's
``stream_ids``: IOBinding, the cache never leaving ONNX Runtime) decodes one seeded 64-token prompt
to 1,024 tokens of context on ``--sides`` of our graphs (default: int4, fused+int4 with
MultiHeadAttention over a concatenated cache, and fused+int4 with GroupQueryAttention over a shared
buffer), each in a fresh process with 2 intra-op threads; ms per token is the mean over the 32 steps
ending at 128, 256, 512 and 1,024 tokens of context; min / median over ``--repeats``. Refreshes the
'generate-growth' section of BENCHMARKS.md.

    flock /tmp/t2o-bench.lock nice -n -10 .venv/bin/python benchmarks/generate_peers.py \
        --sides ours-int4,ours-fused-mha-int4,ours-fused-int4  # builds the graphs (and times them)
    flock /tmp/t2o-bench.lock nice -n -10 .venv/bin/python benchmarks/generate_growth.py [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from generate_latency import CONTEXTS, windows  # noqa: E402
from generate_peers import DEFAULT_WORKDIR, OURS, _ours, prompts  # noqa: E402

PROMPT_TOKENS = 64


def worker(side: str, workdir: Path, threads: int) -> dict[int, float]:
    info = json.loads((workdir / "ours" / "generation.json").read_text())
    step_times = _ours(side, workdir, threads)
    ids = prompts([PROMPT_TOKENS], info.get("vocab_size", 151936))[PROMPT_TOKENS]
    return windows(step_times(ids, CONTEXTS[-1] - PROMPT_TOKENS), PROMPT_TOKENS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--sides", default="ours-int4,ours-fused-mha-int4,ours-fused-int4",
                    help=f"comma-separated, of {', '.join(OURS)}")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.workdir, args.threads)))
        return 0
    sides = [s for s in args.sides.split(",") if s]
    missing = [s for s in sides if s not in OURS or not (args.workdir / "ours" / f"{s}.onnx").is_file()]
    if missing:
        print(f"no graph for {', '.join(missing)} in {args.workdir}/ours; run benchmarks/generate_peers.py first",
              file=sys.stderr)
        return 2
    results: dict[str, list[dict]] = {s: [] for s in sides}
    loads = []
    for _ in range(args.repeats):
        for side in sides:
            out = subprocess.run([sys.executable, __file__, "--worker", side, "--workdir", str(args.workdir),
                                  "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            results[side].append({int(k): v for k, v in json.loads(out.stdout.splitlines()[-1]).items()})
            loads.append(os.getloadavg()[0])
    rows = []
    for side, runs in results.items():
        cells = []
        for ctx in CONTEXTS:
            vals = [r[ctx] for r in runs]
            spread = (max(vals) - min(vals)) / min(vals)
            cells.append(f"{min(vals):.1f} / {statistics.median(vals):.1f}" + (" (unstable)" if spread > 0.5 else ""))
        first, last = (min(r[c] for r in runs) for c in (CONTEXTS[0], CONTEXTS[-1]))
        rows.append(f"| {side} | " + " | ".join(cells) + f" | {last / first:.2f}× |")
    body = "\n".join([
        "Model: the Qwen2-0.5B-shaped graphs of `benchmarks/generate_peers.py` (494 M parameters, random weights; "
        f"24 layers, 2 KV heads of 64). One seeded {PROMPT_TOKENS}-token prompt decoded greedily to {CONTEXTS[-1]} "
        f"tokens of context by the runtime's `stream_ids` (IOBinding), {args.threads} intra-op threads, each side "
        f"and repeat in a fresh process; ms per token, mean over the 32 steps ending at each context, min / median of "
        f"{args.repeats} runs. Load average after each run: {', '.join(f'{x:.1f}' for x in loads)}.",
        "",
        "| graph | " + " | ".join(f"ctx {c}" for c in CONTEXTS) + f" | ctx {CONTEXTS[-1]} / ctx {CONTEXTS[0]} |",
        "| --- | " + " | ".join("---:" for _ in CONTEXTS) + " | ---: |",
        *rows,
        "",
        "Measured by `benchmarks/generate_growth.py`."])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "generate-growth",
                       "Text generation: per-token latency as the context grows, at Qwen2-0.5B's size", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
