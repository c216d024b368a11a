"""Export, verify and benchmark each zoo model; write the 'zoo' section of BENCHMARKS.md.

For CNNs it also reports a compute roof: achieved GFLOP/s (FLOPs from torch's flop counter over
ORT's p50 latency) next to this machine's measured SGEMM GFLOP/s at the same thread count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from zoo_models import ZOO  # noqa: E402

from torch2ort.bench import BenchOptions, bench  # noqa: E402
from torch2ort.export import export_onnx  # noqa: E402
from torch2ort.parity.verify import verify_onnx  # noqa: E402
from torch2ort.sources import ModelRequest, load_model  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402


def sgemm_gflops(threads: int, sizes: tuple[int, ...] = (2048, 3072, 4096)) -> float:
    """The best torch.mm rate seen over a few sizes (best of 3 each): the probe of the machine's roof."""
    import torch

    torch.set_num_threads(threads)
    rates = []
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        rates.append(2 * n**3 / min(_timed(lambda a=a, b=b: torch.mm(a, b)) for _ in range(3)) / 1e9)
    return max(rates)


def _cold(c: dict) -> str:
    return f"{c['import_s']:.2f} + {c['load_s']:.2f} + {c['first_inference_s']:.3f} = {c['total_s']:.2f}"


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def flops(module, spec: InputSpec, batch: int, label: str | None) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from torch2ort._torch import to_torch_args
    from torch2ort.inputs import synthetic_feed

    args = to_torch_args(synthetic_feed(spec, {label: batch} if label else {}), spec.names)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*args)
    return float(counter.get_total_flops())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="substring of one zoo name")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from torch2ort._env import machine_info, physical_cores
    from torch2ort.bench.run import batch_label

    threads = physical_cores()
    roof = sgemm_gflops(threads)
    rows, model_rows, roof_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (factory, inputs, batches) in ZOO.items():
            if args.only and args.only not in name:
                continue
            request = ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{factory}")
            spec = InputSpec.from_cli(inputs)
            loaded = load_model(request)
            onnx_path = Path(tmp) / f"{factory}.onnx"
            exp = export_onnx(loaded, spec, onnx_path)
            ver = verify_onnx(loaded, onnx_path, spec, n=2, sweep={})
            print(f"{name}: exported with {exp.exporter}, parity {'PASS' if ver.report else 'FAIL'} "
                  f"(max abs {ver.report.max_abs():.2g})", flush=True)
            rep = bench(request, spec, onnx_path, BenchOptions(batches=batches, seconds=args.seconds,
                                                               repeats=args.repeats, threads=threads))
            by = {(r["backend"], r["batch"]): r for r in rep.rows()}
            for b in batches:
                t, o = by[("torch", b)], by[("onnxruntime", b)]
                ratio = rep.ratios["onnxruntime"][str(b)]
                rows.append(f"| {name} | {b} | {t['p50']:.2f} | {t['p99']:.2f} | {o['p50']:.2f} | {o['p99']:.2f} | "
                            f"{ratio['median']:.2f}× [{ratio['min']:.2f}–{ratio['max']:.2f}] | "
                            f"{t['throughput']:.1f} / {o['throughput']:.1f} | "
                            f"{t['peak_rss_mb']:.0f} / {o['peak_rss_mb']:.0f} |")
            c_t, c_o = rep.cold["torch"], rep.cold["onnxruntime"]
            ov = rep.overhead
            model_rows.append(
                f"| {name} | {exp.exporter} | {'pass' if ver.report else 'FAIL'} ({ver.report.max_abs():.1g}) | "
                f"{t['size_mb']:.1f} / {o['size_mb']:.1f} | "
                f"{_cold(c_t)} | {_cold(c_o)} | "
                f"{ov['overhead_ms']:.3f} ({ov['overhead_pct']:.1f}%) |")
            if factory != "MiniLM":
                b = batches[-1]
                f = flops(loaded.module, spec, b, batch_label(spec))
                o, t = by[("onnxruntime", b)], by[("torch", b)]
                roof_rows.append(f"| {name} | {b} | {f / 1e9:.2f} | {f / (t['p50'] / 1e3) / 1e9:.1f} | "
                                 f"{f / (o['p50'] / 1e3) / 1e9:.1f} | {100 * f / (o['p50'] / 1e3) / 1e9 / roof:.0f}% |")
    m = machine_info()
    import onnxruntime
    import torch

    body = "\n".join([
        f"Command: `benchmarks/run_zoo` (timed {args.seconds} s per batch size, {args.repeats} A/B repeats, "
        f"{threads} threads on both sides; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{m['physical_cores']} physical cores). Each backend runs in its own fresh processes "
        "(`torch2ort bench`); latency is the median over repeats of each process's p50.",
        "",
        "| model | batch | torch p50 ms | torch p99 ms | ORT p50 ms | ORT p99 ms | ORT speed-up median [min–max] "
        "| items/s torch / ORT | peak RSS MB torch / ORT |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
        *rows,
        "",
        "| model | exporter | parity (max abs err) | size MB torch / ORT | cold start s, torch: import + load + first "
        "= total | cold start s, ORT | ORT binding overhead ms per call |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *model_rows,
        "",
        "Speed-up = torch p50 / ORT p50 for each A/B pair. Cold start is timed inside a fresh process (median of the "
        "repeats; the interpreter's own start is not included). Torch size = its serialized state_dict; ORT size = "
        "the .onnx file. Peak RSS = VmHWM of each worker process. Binding overhead = wall time minus ORT's own "
        "`model_run` time, from a separate profiled run. Parity: 2 synthetic inputs, atol 1e-4, rtol 1e-3.",
        "",
        f"**Compute roof** (CNNs, largest batch): measured SGEMM on this machine: **{roof:.1f} GFLOP/s** "
        f"(torch.mm, best over 2048², 3072², 4096², best of 3 each, {threads} threads). FLOPs from "
        "`torch.utils.flop_counter` (2 per multiply-add). This VM shares its cores, so the roof itself moves between "
        "runs (100–170 GFLOP/s were seen in one session); a figure above 100% means the model's kernels ran "
        "closer to the FMA peak than the SGEMM probe did in that run, not that the peak was exceeded.",
        "",
        "| model | batch | GFLOP per call | torch GFLOP/s | ORT GFLOP/s | ORT % of SGEMM |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *roof_rows,
    ])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "zoo", "PyTorch vs ONNX Runtime (CPU)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
