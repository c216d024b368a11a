"""fp32 ONNX Runtime vs eager PyTorch on the zoo; writes JSON + Markdown, and the 'zoo' section of BENCHMARKS.md.

CNNs: each is exported and verified (2 synthetic cases, atol 1e-4, rtol 1e-3), then ``torch2ort.bench``
times torch and ORT each in fresh processes, alternating over repeats, with the same thread count on
both sides. MiniLM: torch2ort's fp32 export of the sentence-embedding model (pooling + L2 norm in the
graph) against sentence-transformers' torch ``encode``, on the real text sets (benchmarks/data), a
whole set per call, in fresh processes (benchmarks/text_worker.py); min cosine vs ``encode``.
A speed-up whose repeats disagree is printed as *unstable* (torch2ort.benchmark.stats.ratio_text).

    benchmarks/run_zoo                 # the full run (minutes per model), updates BENCHMARKS.md
    benchmarks/run_zoo --quick         # smoke test only: 1 repeat, 0.2 s, batch 1; never updates BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from _textbench import text_bench  # noqa: E402
from zoo_models import MINILM_INPUTS, ZOO, count  # noqa: E402

from torch2ort.benchmark import BenchOptions, bench  # noqa: E402
from torch2ort.benchmark.stats import ratio_text  # noqa: E402
from torch2ort.export import export_onnx  # noqa: E402
from torch2ort.parity.verify import verify_onnx  # noqa: E402
from torch2ort.sources import ModelRequest, load_model  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


def _cold(c: dict) -> str:
    return f"{c['import_s']:.2f} + {c['load_s']:.2f} + {c['first_inference_s']:.3f} = {c['total_s']:.2f}"


def run_cnn(name: str, entry, args, threads: int, tmp: Path, log=print) -> dict:
    request = ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{entry.factory}")
    spec = InputSpec.from_cli(entry.inputs)
    loaded = load_model(request)
    onnx_path = tmp / f"{entry.factory}-{len(list(tmp.glob('*.onnx')))}.onnx"
    exp = export_onnx(loaded, spec, onnx_path)
    ver = verify_onnx(loaded, onnx_path, spec, n=2, sweep={})
    log(f"{name}: exported with {exp.exporter}, parity {'PASS' if ver.report else 'FAIL'} "
        f"(max abs {ver.report.max_abs():.2g})")
    batches = entry.quick_batches if args.quick else entry.batches
    rep = bench(request, spec, onnx_path, BenchOptions(batches=batches, seconds=args.seconds, repeats=args.repeats,
                                                       threads=threads, warmup=1 if args.quick else 5,
                                                       profile=not args.quick))
    params, gflops = count(entry.factory, entry.inputs)
    return {"model": name, "factory": entry.factory, "params": params, "gflops_per_item": gflops,
            "exporter": exp.exporter, "parity_pass": bool(ver.report), "parity_max_abs": ver.report.max_abs(),
            "report": rep.to_dict()}


def cnn_rows(results: list[dict]) -> tuple[list[str], list[str]]:
    rows, model_rows = [], []
    for res in results:
        rep, name = res["report"], res["model"]
        by = {(r["backend"], r["batch"]): r for r in rep["rows"]}
        for b in sorted({r["batch"] for r in rep["rows"]}):
            t, o = by[("torch", b)], by[("onnxruntime", b)]
            rows.append(f"| {name} | {b} | {t['p50']:.2f} | {t['p99']:.2f} | {o['p50']:.2f} | {o['p99']:.2f} | "
                        f"{ratio_text(rep['ratios']['onnxruntime'][str(b)])} | "
                        f"{t['throughput']:.1f} / {o['throughput']:.1f} | "
                        f"{b * res['gflops_per_item'] / (o['p50'] / 1e3):.1f} | "
                        f"{t['peak_rss_mb']:.0f} / {o['peak_rss_mb']:.0f} |")
        ov = rep.get("overhead")
        model_rows.append(
            f"| {name} | {res['params'] / 1e6:.2f} | {res['gflops_per_item']:.2f} | {res['exporter']} | "
            f"{'pass' if res['parity_pass'] else 'FAIL'} ({res['parity_max_abs']:.1g}) | "
            f"{_cold(rep['cold']['torch'])} | {_cold(rep['cold']['onnxruntime'])} | "
            + (f"{ov['overhead_ms']:.3f} ({ov['overhead_pct']:.1f}%) |" if ov else "- |"))
    return rows, model_rows


def run_minilm(args, threads: int, tmp: Path, log=print) -> list[dict]:
    request = ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:MiniLMEmbed")
    spec = InputSpec.from_cli(MINILM_INPUTS)
    loaded = load_model(request)
    onnx_path = tmp / "minilm-fp32.onnx"
    export_onnx(loaded, spec, onnx_path)
    jobs = {"sentence-transformers torch encode": {"backend": "st-torch"},
            "torch2ort fp32 ONNX": {"backend": "ort", "onnx": str(onnx_path)}}
    return [text_bench(jobs, texts, threads=threads, seconds=args.seconds, repeats=args.repeats,
                       reference="sentence-transformers torch encode", warmup=0 if args.quick else 3, log=log)
            for texts in args.texts]


def text_rows(results: list[dict]) -> list[str]:
    rows = []
    for res in results:
        for label, r in res["rows"].items():
            ratio = res["vs_reference"].get(label)
            rows.append(f"| {res['texts']} ({r['n_texts']} texts) | {label} | {r['p50']:.1f} | {r['p99']:.1f} | "
                        f"{r['texts_per_s']:.1f} | {ratio_text(ratio) if ratio else 'reference'} | "
                        f"{r['min_cosine']:.6f} | {r['peak_rss_mb']:.0f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per batch size and process")
    parser.add_argument("--repeats", type=int, default=3, help="A/B repeats, each in fresh processes")
    parser.add_argument("--only", help="substring of zoo names to run ('MiniLM' for the text model)")
    parser.add_argument("--texts", default="short,long", help="MiniLM text sets: short, long or both")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 repeat, 0.2 s, batch 1, short text; figures not for quoting")
    parser.add_argument("--out", type=Path, default=OUT, help="where run_zoo.json and run_zoo.md go")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.2, 1
        args.texts = "short" if args.texts == "short,long" else args.texts
    args.texts = [t for t in args.texts.split(",") if t]
    from torch2ort._env import machine_info, physical_cores, versions

    threads = physical_cores()
    cnns, texts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, entry in ZOO.items():
            if not args.only or args.only.lower() in name.lower():
                cnns.append(run_cnn(name, entry, args, threads, Path(tmp)))
        if not args.only or args.only.lower() in "all-minilm-l6-v2":
            texts = run_minilm(args, threads, Path(tmp))
    rows, model_rows = cnn_rows(cnns)
    v = versions()
    head = [f"Command: `benchmarks/run_zoo{' --quick' if args.quick else ''}` (timed {args.seconds} s per batch size, "
            f"{args.repeats} A/B repeats in fresh processes, {threads} threads on both sides; torch {v['torch']}, "
            f"onnxruntime {v['onnxruntime']}). Latency is the median over repeats of each process's p50; the "
            "speed-up is torch p50 / ORT p50 per A/B pair, median [min–max], or *unstable* when the repeats "
            "disagree." + (" **A --quick smoke run: these figures are not for quoting.**" if args.quick else "")]
    cnn_part = [
        "| model | batch | torch p50 ms | torch p99 ms | ORT p50 ms | ORT p99 ms | ORT speed-up | items/s torch / ORT "
        "| ORT GFLOP/s | peak RSS MB torch / ORT |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |", *rows, "",
        "| model | params (M) | GFLOPs per item | exporter | parity (max abs) | cold start s, torch: import + load + "
        "first = total | cold start s, ORT | ORT binding overhead ms per call |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- |", *model_rows, "",
        "GFLOPs from `torch.utils.flop_counter.FlopCounterMode` (2 × MACs). Items are bags for AttnMIL. Torch's "
        "load time includes building the seeded network (and measuring its BN statistics on a small batch)."]
    text_part = [
        f"**all-MiniLM-L6-v2 on real text** ({threads} threads each side, a whole text set per call; short = 10 "
        "sentences, long = 32 paragraphs of 169–196 tokens; torch2ort's side is tokenise + `session.run`):", "",
        "| texts | backend | p50 ms per set | p99 ms | texts/s | speed-up vs encode | min cosine vs encode | "
        "peak RSS MB |", "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |", *text_rows(texts)]
    body = "\n".join(head + [""] + (cnn_part + [""] if cnns else []) + (text_part if texts else []))
    print(body)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run_zoo.json").write_text(json.dumps({"quick": args.quick, "machine": machine_info(), "versions": v,
                                                       "cnn": cnns, "minilm": texts}, indent=1, default=str))
    (args.out / "run_zoo.md").write_text(body + "\n")
    print(f"\nwrote {args.out / 'run_zoo.json'} and {args.out / 'run_zoo.md'}")
    if not args.no_write and not args.quick and not args.only:
        update_section(ROOT / "BENCHMARKS.md", "zoo", "PyTorch vs ONNX Runtime (CPU)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
