"""Run `optimize --passes auto` on each zoo model; write the 'optimize' section of BENCHMARKS.md.

Each model is exported, then every variant is verified against PyTorch with its default task gate
and the passing ones are benchmarked in isolated processes (torch2ort.optimize.planner). MiniLM is the
sentence-embedding form (mean pooling + L2 norm inside the graph) and is verified on tokenised real
text as well as synthetic ids.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from zoo_models import ZOO, minilm_samples  # noqa: E402

from torch2ort.bench import BenchOptions  # noqa: E402
from torch2ort.export import export_onnx  # noqa: E402
from torch2ort.optimize.planner import optimize  # noqa: E402
from torch2ort.sources import ModelRequest, load_model  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402

MODELS = {name: spec for name, spec in ZOO.items() if spec[0] != "MiniLM"}
MODELS["all-MiniLM-L6-v2 sentence embeddings (10 × 16 tokens)"] = (
    "MiniLMEmbed", ["input_ids:batch=10,seq=16:int64:1000..2000", "attention_mask:batch=10,seq=16:int64:1..1"], [10])


def _x(r: dict | None) -> str:
    return "-" if not r else f"{r['median']:.2f}×"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per process")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", help="substring of one zoo name")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from torch2ort._env import physical_cores

    threads = physical_cores()
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (factory, inputs, batches) in MODELS.items():
            if args.only and args.only not in name:
                continue
            request = ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{factory}")
            spec = InputSpec.from_cli(inputs)
            loaded = load_model(request)
            onnx_path = Path(tmp) / f"{factory}.onnx"
            export_onnx(loaded, spec, onnx_path)
            samples = None
            if factory == "MiniLMEmbed":
                samples = Path(tmp) / "minilm-samples"
                samples.mkdir()
                minilm_samples(samples)
            result = optimize(loaded, request, onnx_path, spec, samples=samples, n=4, sweep={},
                              bench_opts=BenchOptions(batches=[batches[0]], seconds=args.seconds,
                                                      repeats=args.repeats, threads=threads, warmup=3),
                              out=Path(tmp) / f"{factory}.opt.onnx",
                              log=lambda s, n=name: print(f"{n}: {s}", flush=True))
            torch_p50 = result.bench["torch"]["p50"] if result.bench else None
            for v in result.variants:
                lat = v.latency or {}
                mark = " **→**" if v.name == result.chosen else ""
                rows.append(f"| {name} | {v.name}{mark} | {'pass' if v.passed else 'FAIL'} | {v.summary} | "
                            f"{_ms(lat.get('p50'))} | {_x(v.vs_torch)} | {_x(v.vs_fp32)} | "
                            f"{v.size_mb:.2f} |" if v.size_mb is not None else
                            f"| {name} | {v.name} | error | {v.error} | - | - | - | - |")
            gates = ", ".join(g["gate"] for g in result.gates.values())
            notes.append(f"- **{name}**: torch p50 {torch_p50:.2f} ms at batch {batches[0]}; gates {gates}; "
                         f"{result.message}. Calibration: {result.calibration}.")
            seen: set[str] = set()
            for v in result.variants:  # a note shared by variants built on the same pass is shown once
                for note in v.notes:
                    if note not in seen:
                        seen.add(note)
                        notes.append(f"  - {v.name}: {note}")
    import onnxruntime
    import torch

    body = "\n".join([
        f"Command: `benchmarks/optimize_zoo` (`torch2ort.optimize` with `passes=auto`: {args.seconds} s timed per "
        f"process, {args.repeats} repeats in fresh processes, {threads} threads on both sides; torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}). Every variant is verified against "
        "PyTorch on 4 synthetic cases (plus tokenised real text for MiniLM: the ten shell-command descriptions "
        "and four paragraphs) with the default gate for its output kind; only passing variants are timed. "
        "Latency is the median over repeats of each process's p50; speed-ups are medians of per-repeat ratios. "
        "**→** marks the variant `optimize` chose.",
        "",
        "| model | variant | gate | metric (worst over cases) | p50 ms | vs torch | vs fp32 ONNX | MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows, "", *notes])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "optimize", "Optimisation and quantisation (torch2ort optimize)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
