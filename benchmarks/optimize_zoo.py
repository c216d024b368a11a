"""``optimize --passes auto`` on the zoo; writes JSON + Markdown, and the 'optimize' section of BENCHMARKS.md.

CNNs: each model is exported, every variant is verified against PyTorch with its gates (the default
task gates, or the entry's --accept: lip-sync is judged with psnr>=40) and the passing ones are timed
against torch in isolated processes (torch2ort.optimization.planner). MiniLM: the sentence-embedding form
(mean pooling + L2 norm in the graph), verified and calibrated on the real text sets tokenised (short,
and long in four chunks), then ``optimize`` times its variants at the long set's
shape (32 x 196 tokens) to choose one; fp32 and the `auto` choice are then timed on the whole short and long sets
against sentence-transformers' torch ``encode`` in fresh processes; min cosine vs ``encode``. The
fp32 and auto MiniLM graphs stay in benchmarks/out/minilm/ for benchmarks/peers.py.

    benchmarks/optimize_zoo            # the full run, updates BENCHMARKS.md
    benchmarks/optimize_zoo --quick    # smoke test only (1 repeat, 0.2 s, 2 cases); never updates BENCHMARKS.md
    benchmarks/optimize_zoo --trained  # trained replicas next to random ones (run benchmarks/train_zoo.py first)

``--trained`` runs each network of zoo_models.TRAINED_ZOO twice, random weights and trained (train_zoo.py),
both on the same task samples (``--samples``: half choose and calibrate, half confirm; no synthetic cases),
and writes the 'optimize-trained' section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from _textbench import text_bench  # noqa: E402
from zoo_models import (  # noqa: E402
    MINILM_INPUTS,
    MINILM_LONG_INPUTS,
    TASK_FILES,
    TRAINED_ZOO,
    ZOO,
    Entry,
    count,
    long_texts,
    short_texts,
    task_samples,
    tokenize,
)

from torch2ort.benchmark import BenchOptions  # noqa: E402
from torch2ort.benchmark.stats import ratio_text  # noqa: E402
from torch2ort.export import export_onnx  # noqa: E402
from torch2ort.optimization.planner import optimize  # noqa: E402
from torch2ort.sources import ModelRequest, load_model  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
MINILM = "all-MiniLM-L6-v2 sentence embeddings"


def _x(r: dict | None) -> str:
    return "-" if not r else ratio_text(r)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def text_samples(folder: Path) -> Path:
    """The real texts as .npz feeds: the short set, and the long set in four chunks of eight paragraphs."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    long = long_texts()
    chunks = {"short": short_texts(), **{f"long-{i}": long[i * 8:(i + 1) * 8] for i in range(4)}}
    for name, texts in chunks.items():
        np.savez(folder / f"{name}.npz", **tokenize(texts))
    return folder


def run_one(name: str, entry: Entry, args, threads: int, onnx_path: Path, out: Path, samples: Path | None,
            n: int | None = None) -> dict:
    request = ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{entry.factory}")
    spec = InputSpec.from_cli(entry.inputs)
    loaded = load_model(request)
    export_onnx(loaded, spec, onnx_path)
    batch = (entry.quick_batches if args.quick else entry.batches)[0]
    result = optimize(loaded, request, onnx_path, spec, accept=entry.accept or None, samples=samples,
                      n=(2 if args.quick else 4) if n is None else n,
                      sweep={}, force=True, out=out, postprocess=entry.postprocess or None,
                      bench_opts=None if args.no_bench else BenchOptions(
                          batches=[batch], seconds=args.seconds, repeats=args.repeats, threads=threads,
                          warmup=1 if args.quick else 3),
                      log=lambda s: print(f"{name}: {s}", flush=True))
    params, gflops = count(entry.factory, entry.inputs)
    return {"model": name, "params": params, "gflops_per_item": gflops, "batch": batch, "accept": entry.accept,
            "result": result.to_dict(), "table": result.table()}


def rows_of(res: dict) -> tuple[list[str], list[str]]:
    r, name = res["result"], res["model"]
    rows = []
    for v in r["variants"]:
        lat = v.get("latency") or {}
        mark = " **→**" if v["name"] == r["chosen"] else ""
        if v.get("size_mb") is None:
            rows.append(f"| {name} | {v['name']} | error | {v.get('error')} | - | - | - | - |")
            continue
        rows.append(f"| {name} | {v['name']}{mark} | {'pass' if v['passed'] else 'FAIL'} | {v['summary']} | "
                    f"{_ms(lat.get('p50'))} | {_x(v.get('vs_torch'))} | {_x(v.get('vs_fp32'))} | {v['size_mb']:.2f} |")
    gates = ", ".join(g["gate"] for g in r["gates"].values())
    torch_p50 = (r.get("bench") or {}).get("torch", {}).get("p50")
    notes = [f"- **{name}** ({res['params'] / 1e6:.2f} M params, {res['gflops_per_item']:.2f} GFLOPs per item): "
             f"torch p50 {_ms(torch_p50)} ms at batch {res['batch']}; gates {gates}; {r['message']}. "
             f"Calibration: {r['calibration']}."]
    seen: set[str] = set()
    for v in r["variants"]:
        for note in v.get("notes", []):
            if note not in seen:
                seen.add(note)
                notes.append(f"  - {v['name']}: {note}")
    return rows, notes


def minilm_text_rows(results: list[dict]) -> list[str]:
    rows = []
    for res in results:
        for label, r in res["rows"].items():
            ratio = res["vs_reference"].get(label)
            rows.append(f"| {res['texts']} ({r['n_texts']} texts) | {label} | {r['p50']:.1f} | {r['p99']:.1f} | "
                        f"{ratio_text(ratio) if ratio else 'reference'} | {r['min_cosine']:.5f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per process")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="substring of zoo names to run ('MiniLM' for the text model)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 0.2 s, 2 cases, short text")
    parser.add_argument("--out", type=Path, default=OUT, help="where optimize_zoo.json/.md and minilm/ go")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--trained", action="store_true", help="trained replicas next to random ones (see above)")
    parser.add_argument("--no-bench", action="store_true", help="verify only: no timing (rows show '-')")
    parser.add_argument("--weights", choices=["random", "trained", "both"], default="both",
                        help="with --trained: which weights to run (default both)")
    parser.add_argument("--lock", type=Path, help="hold this file's flock only while timing (the machine-wide "
                        "bench lock), so verification, which times nothing, runs while others measure")
    args = parser.parse_args()
    if args.lock:
        _lock_timing(args.lock)
    if args.trained:
        return trained_main(args)
    if args.quick:
        args.seconds, args.repeats = 0.2, 1
    from torch2ort._env import machine_info, physical_cores, versions

    threads = physical_cores()
    results, texts, rows, notes = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for i, (name, entry) in enumerate(ZOO.items()):
            if not args.only or args.only.lower() in name.lower():
                results.append(run_one(name, entry, args, threads, tmp_path / f"m{i}.onnx",
                                       tmp_path / f"m{i}.opt.onnx", None))
        if not args.only or args.only.lower() in MINILM.lower():
            folder = args.out / "minilm"
            folder.mkdir(parents=True, exist_ok=True)
            inputs = MINILM_INPUTS if args.quick else MINILM_LONG_INPUTS
            res = run_one(MINILM, Entry("MiniLMEmbed", inputs, [32], quick_batches=[2]), args, threads,
                          folder / "fp32.onnx", folder / "auto.onnx", text_samples(tmp_path / "texts"))
            results.append(res)
            jobs = {"sentence-transformers torch encode": {"backend": "st-torch"},
                    "torch2ort fp32": {"backend": "ort", "onnx": str(folder / "fp32.onnx")}}
            if (folder / "auto.onnx").is_file():
                jobs[f"torch2ort auto ({res['result']['chosen']})"] = {"backend": "ort",
                                                                       "onnx": str(folder / "auto.onnx")}
            for which in (["short"] if args.quick else ["short", "long"]):
                texts.append(text_bench(jobs, which, threads=threads, seconds=args.seconds, repeats=args.repeats,
                                        reference="sentence-transformers torch encode", warmup=0 if args.quick else 3))
    for res in results:
        r, n = rows_of(res)
        rows += r
        notes += n
    v = versions()
    body = "\n".join([
        f"Command: `benchmarks/optimize_zoo{' --quick' if args.quick else ''}` (`torch2ort.optimize` with "
        f"`passes=auto`: {args.seconds} s timed per process, {args.repeats} repeats in fresh processes, {threads} "
        f"threads on both sides; torch {v['torch']}, onnxruntime {v['onnxruntime']}). Every variant is verified "
        "against PyTorch with its gates (default task gates, ECG's outputs declared sigmoid logits; lip-sync "
        "`psnr>=40`; MiniLM on tokenised real text too); only passing variants are timed. Speed-ups are medians "
        "of per-repeat ratios, or *unstable* when the repeats disagree. **→** marks the variant `optimize` chose."
        + (" **A --quick smoke run: these figures are not for quoting.**" if args.quick else ""), "",
        "| model | variant | gate | metric (worst over cases) | p50 ms | vs torch | vs fp32 ONNX | MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "", *notes,
        *(["", "**MiniLM on real text**, a whole set per call (torch2ort: tokenise + `session.run`), fresh "
           "processes, vs sentence-transformers' torch `encode`:", "",
           "| texts | backend | p50 ms per set | p99 ms | speed-up vs encode | min cosine vs encode |",
           "| --- | --- | ---: | ---: | --- | ---: |", *minilm_text_rows(texts)] if texts else [])])
    print(body)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "optimize_zoo.json").write_text(json.dumps({"quick": args.quick, "machine": machine_info(),
                                                            "versions": v, "models": results, "minilm_text": texts},
                                                           indent=1, default=str))
    (args.out / "optimize_zoo.md").write_text(body + "\n")
    print(f"\nwrote {args.out / 'optimize_zoo.json'} and {args.out / 'optimize_zoo.md'}")
    if not args.no_write and not args.quick and not args.only:
        update_section(ROOT / "BENCHMARKS.md", "optimize", "Optimisation and quantisation (torch2ort optimize)", body)
    return 0


def _lock_timing(path: Path) -> None:
    """Make optimize's benchmark step take an exclusive flock on ``path`` for its duration."""
    import contextlib
    import fcntl

    import torch2ort.benchmark.run as bench_run

    timed = bench_run.bench_variants

    def locked(*a, **kw):
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                return timed(*a, **kw)
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(f, fcntl.LOCK_UN)

    bench_run.bench_variants = locked


def trained_main(args) -> int:
    """Random and trained weights of the same networks, judged on the same task samples."""
    from torch2ort._env import physical_cores

    threads = physical_cores()
    order = [f"{name}, {label}" for name in TRAINED_ZOO for label in ("random", "trained")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for i, (name, (random_entry, trained_entry, task)) in enumerate(TRAINED_ZOO.items()):
            if args.only and args.only.lower() not in name.lower():
                continue
            samples = task_samples(task, tmp_path / task)
            for label, entry in (("random", random_entry), ("trained", trained_entry)):
                if args.weights not in ("both", label):
                    continue
                load_start = os.getloadavg()
                # the kept variant stays in OUT/<factory>/auto.onnx, where peer_runtimes.py --auto-dir finds it
                (args.out / entry.factory).mkdir(parents=True, exist_ok=True)
                res = run_one(f"{name}, {label}", entry, args, threads, tmp_path / f"t{i}{label}.onnx",
                              args.out / entry.factory / "auto.onnx", samples, n=0)
                res["load_start"], res["load"] = load_start, os.getloadavg()
                _store_and_render(args, threads, order, res)
    return 0


def _store_and_render(args, threads: int, order: list[str], res: dict) -> None:
    """Merge one model's result into optimize_trained.json (runs with --only in parallel share it), then
    rewrite optimize_trained.md and the BENCHMARKS.md section from everything stored."""
    import fcntl

    from torch2ort._env import machine_info, versions

    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "optimize_trained.json"
    with open(args.out / "optimize_trained.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = {m["model"]: m for m in (json.loads(store.read_text())["models"] if store.is_file() else [])}
        results[res["model"]] = res
        rows, notes = [], []
        for key in [k for k in order if k in results]:
            r, nn = rows_of(results[key])
            rows += r
            notes += nn + [f"  - load average (1, 5, 15 min) when this model started: "
                           f"{', '.join(f'{x:.1f}' for x in results[key].get('load_start', [])) or '-'}; "
                           f"finished: {', '.join(f'{x:.1f}' for x in results[key].get('load', []))}"]
        v = versions()
        body = "\n".join([
            "Command: `benchmarks/optimize_zoo --trained --lock /tmp/t2o-bench.lock` (models in parallel with "
            "`--only`, results merged; the lock held only while timing) after "
            "`nice -n 5 python benchmarks/train_zoo.py` (`torch2ort.optimize` with `passes=auto`, "
            f"{args.seconds} s timed per process, {args.repeats} repeats in fresh processes, {threads} threads on "
            f"both sides; torch {v['torch']}, onnxruntime {v['onnxruntime']}). Each network twice: random weights (the "
            "zoo's seeded ones) and trained (train_zoo.py), judged on the same task samples from "
            "benchmarks/zoo_tasks.py (" + ", ".join(f"{t}: {f} files of {r}" for t, (f, r) in TASK_FILES.items())
            + " rows); every other sample file chooses and calibrates, the rest confirm the choice; no synthetic "
            "cases. Gates: ECG decision>=0.99 "
            "(95% bound), AttnMIL decision>=0.95 on its probabilities and sign>=0.95 on its logits (95% bound), "
            "lip-sync psnr>=40 (worst case).", "",
            "| model | variant | gate | metric (worst over cases) | p50 ms | vs torch | vs fp32 ONNX | MB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "", *notes])
        store.write_text(json.dumps({"machine": machine_info(), "versions": v,
                                     "models": [results[k] for k in order if k in results]}, indent=1, default=str))
        (args.out / "optimize_trained.md").write_text(body + "\n")
        if not args.no_write:
            update_section(ROOT / "BENCHMARKS.md", "optimize-trained",
                           "Optimisation and quantisation: trained replicas next to random ones", body)


if __name__ == "__main__":
    sys.exit(main())
