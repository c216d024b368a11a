"""The CNN zoo in the browser: onnxruntime-web (WASM) in headless Chromium next to Python ONNX Runtime.

For each CNN zoo model: export, verify PyTorch vs ORT and vs ORT-in-Chromium (per-runtime max abs
error, threads state), then time Python ORT (and torch) in fresh processes with ``bench`` and the
same graph in the page with ``performance.now()`` around ``session.run``, at the same thread count
and again with one thread (what a page gets without COOP/COEP). Writes the 'web' section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from zoo_models import ZOO  # noqa: E402

from torch2ort.benchmark import BenchOptions, bench  # noqa: E402
from torch2ort.benchmark.run import bench_web  # noqa: E402
from torch2ort.export import export_onnx  # noqa: E402
from torch2ort.parity.verify import verify_onnx  # noqa: E402
from torch2ort.sources import ModelRequest, load_model  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402

CNNS = list(ZOO)  # every network but MiniLM (which runs on real text in run_zoo.py)


def worst(report, runner: str) -> float:
    return max(c.max_abs for c in report.comparisons if c.runner == runner)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per batch size and side")
    parser.add_argument("--only", help="substring of one zoo name")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from torch2ort._env import physical_cores

    threads = physical_cores()
    rows, parity_rows, version = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in CNNS:
            if args.only and args.only not in name:
                continue
            factory, inputs, batches = ZOO[name].factory, ZOO[name].inputs, ZOO[name].batches
            request = ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{factory}")
            spec = InputSpec.from_cli(inputs)
            loaded = load_model(request)
            onnx_path = Path(tmp) / f"{factory}.onnx"
            exp = export_onnx(loaded, spec, onnx_path)
            ver = verify_onnx(loaded, onnx_path, spec, n=2, sweep={}, runtimes=["cpu", "web"], web_threads=threads)
            web_info = ver.runtimes["web"]
            version = web_info.get("version")
            parity_rows.append(
                f"| {name} | {exp.exporter} | {'pass' if ver.report else 'FAIL'} | "
                f"{worst(ver.report, 'onnxruntime'):.1e} | {worst(ver.report, 'web'):.1e} | "
                f"{web_info['threads']} ({'active' if web_info['threadsActive'] else 'off'}, crossOriginIsolated="
                f"{web_info['crossOriginIsolated']}) |")
            print(f"{name}: parity {'PASS' if ver.report else 'FAIL'}", flush=True)
            opts = BenchOptions(batches=batches, seconds=args.seconds, repeats=1, threads=threads, profile=False)
            rep = bench(request, spec, onnx_path, opts)
            web = bench_web(spec, onnx_path, opts, threads)
            web1 = bench_web(spec, onnx_path, opts, 1)
            by = {(r["backend"], r["batch"]): r for r in rep.rows()}
            for b in batches:
                t, o = by[("torch", b)], by[("onnxruntime", b)]
                w, w1 = web["batches"][str(b)]["stats"], web1["batches"][str(b)]["stats"]
                rows.append(f"| {name} | {b} | {t['p50']:.2f} | {o['p50']:.2f} | {o['p99']:.2f} | "
                            f"{w['p50']:.2f} | {w['p99']:.2f} | {w['p50'] / o['p50']:.2f}× | "
                            f"{w1['p50']:.2f} |")
                print(rows[-1], flush=True)
    import onnxruntime
    import torch

    from torch2ort._env import machine_info

    m = machine_info()
    body = "\n".join([
        f"Command: `benchmarks/web_zoo` (timed {args.seconds} s per batch size on each side, {threads} threads "
        f"unless marked; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, onnxruntime-web {version} "
        f"(WASM, SIMD + threads build) in Debian's Chromium, headless, {m['physical_cores']} physical cores). "
        "Python ORT and torch ran in fresh processes (`torch2ort bench`, one repeat); the browser figures are "
        "`performance.now()` around `session.run` inside the page, feeds built once, after 5 warm-up calls.",
        "",
        "| model | batch | torch p50 ms | Python ORT p50 ms | Python ORT p99 ms | browser p50 ms | browser p99 ms "
        "| browser / Python ORT (p50) | browser p50 ms, 1 thread |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "Parity on the same graphs (2 synthetic inputs, atol 1e-4, rtol 1e-3, max abs error vs PyTorch):",
        "",
        "| model | exporter | verdict | Python ORT max abs | browser max abs | browser threads |",
        "| --- | --- | --- | ---: | ---: | --- |",
        *parity_rows,
        "",
        "The 1-thread column is what a page served without COOP/COEP headers gets (no SharedArrayBuffer). "
        "`torch2ort serve` sends those headers for a bundle's page; a plain static server does not.",
    ])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "web", "Browser: onnxruntime-web in Chromium vs Python ONNX Runtime",
                       body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
