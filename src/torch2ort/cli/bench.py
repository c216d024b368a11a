"""``torch2ort bench``: PyTorch vs ONNX Runtime, each in its own processes, measured honestly."""

from __future__ import annotations

import argparse

from torch2ort.cli.common import (
    add_force,
    add_model_args,
    add_spec_args,
    make_console,
    model_options,
    spec_options,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        description="Benchmark MODEL (PyTorch, eval + inference_mode) against the ONNX model "
                    "(ONNX Runtime), each backend in fresh processes with equal thread counts, "
                    "repeated as A/B pairs. Reports latency percentiles, throughput, peak RSS, "
                    "size, cold start and Python/binding overhead.")
    p.add_argument("model", metavar="MODEL")
    add_model_args(p)
    add_spec_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", metavar="FILE", help="the ONNX model")
    src.add_argument("--bundle", metavar="DIR", help="a torch2ort bundle (its model.onnx, checksums verified)")
    p.add_argument("--batch", default="1", metavar="1,8,32", help="batch sizes (default 1)")
    p.add_argument("--threads", type=int, help="threads on both sides (default: physical cores)")
    p.add_argument("--providers", default="cpu", metavar="cpu[,cuda,tensorrt]", help="ORT providers to measure")
    p.add_argument("--runtime", default="cpu", metavar="cpu|cpu,web",
                   help="add web: onnxruntime-web in headless Chromium, timed inside the page (performance.now()), "
                        "reported next to the Python ORT figures")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iters", type=int, help="timed calls per batch size")
    g.add_argument("--seconds", type=float, default=2.0, help="time per batch size (default 2)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="A/B pairs, each in fresh processes (default 3)")
    p.add_argument("--compile", action="store_true",
                   help="add a torch.compile row: the torch-compile peer of --peers (compile time reported apart)")
    p.add_argument("--peers", nargs="?", const="all", metavar="all|torch-compile,openvino",
                   help="add the runtimes you could use instead, each in its own processes on the same threads: "
                        "torch.compile (inductor) and OpenVINO reading the same ONNX (when installed: pip install "
                        "'torch2ort[peers]'); warm latency and compile time reported apart")
    p.add_argument("--no-profile", action="store_true", help="skip the ORT profiling run (binding overhead)")
    p.add_argument("--json", metavar="FILE", help="write the full report, samples included")
    p.add_argument("--plot", metavar="FILE.svg", help="latency distributions and speed-ups (matplotlib)")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort import api

    console = make_console()
    console.print(f"benchmarking {args.model} vs {args.onnx or args.bundle}: batches {args.batch}, "
                  f"{args.repeats} repeats …")
    report = api.bench(args.model, args.onnx, bundle=args.bundle, batch=args.batch, threads=args.threads,
                       providers=args.providers, runtime=args.runtime, iters=args.iters, seconds=args.seconds,
                       warmup=args.warmup, repeats=args.repeats, compile=args.compile, peers=args.peers,
                       profile=not args.no_profile,
                       json_path=args.json, plot=args.plot, force=args.force, **spec_options(args),
                       **model_options(args))
    print_report(console, report)
    for flag, path in (("report", args.json), ("plot", args.plot)):
        if path:
            console.print(f"{flag} written to {path}")
    return 0


def print_report(console, report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from torch2ort.benchmark.stats import ratio_text

    m = report.machine
    console.print(f"machine: {m['cpu']}, {m['physical_cores']} physical / {m['logical_cores']} logical cores; "
                  f"threads {report.options['threads']} on both sides; torch {report.versions['torch']}, "
                  f"onnxruntime {report.versions['onnxruntime']}")
    table = Table(title="Latency per call (ms; medians over repeats of each process's statistics)")
    for col in ("backend", "batch", "mean", "p50", "p90", "p99", "min", "max", "items/s", "peak RSS MB", "size MB"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for r in report.rows():
        stats = (f"{r[k]:.3f}" for k in ("mean", "p50", "p90", "p99", "min", "max"))
        table.add_row(r["backend"], str(r["batch"]), *stats, f"{r['throughput']:.1f}", f"{r['peak_rss_mb']:.0f}",
                      f"{r['size_mb']:.2f}")
    console.print(table)
    n = report.noise or {}
    if n:
        console.print(f"machine load: load average {n.get('loadavg_before')} → {n.get('loadavg_after')} on "
                      f"{n.get('cores')} cores, CPU steal {n.get('steal_pct')}% during the run")
    for cand, per_batch in report.ratios.items():
        parts = [f"batch {b}: {escape(ratio_text(v))}" for b, v in per_batch.items()]
        console.print(f"{cand} speed-up vs torch (p50 ratio, median \\[min–max] of {report.options['repeats']} "
                      f"A/B pairs): " + "; ".join(parts))
    cold = Table(title="Cold start in a fresh process (s, median over repeats)")
    for col in ("backend", "import", "model load", "first inference", "total", "process wall"):
        cold.add_column(col, justify="left" if col == "backend" else "right")
    for label, c in report.cold.items():
        cold.add_row(label, *(f"{c[k]:.3f}" for k in ("import_s", "load_s", "first_inference_s", "total_s",
                                                       "process_wall_s")))
    console.print(cold)
    console.print("[dim]total = import + model load + first inference, timed inside the process; process wall = "
                  "spawn to exit as seen by the parent (interpreter start and torch2ort's own imports included)[/dim]")
    if report.web:
        print_web(console, report)
    if report.peers:
        print_peers(console, report)
    elif report.compile_s is not None:
        console.print(f"torch.compile: first call (compilation) took {report.compile_s:.2f} s")
    if report.overhead:
        o = report.overhead
        console.print(f"ORT Python/binding overhead: {o['overhead_ms']:.4f} ms per call "
                      f"({o['overhead_pct']:.1f}% of {o['wall_ms']:.4f} ms wall; ORT model_run "
                      f"{o['model_run_ms']:.4f} ms, {o['calls']} calls in a separate profiled run, which is "
                      "slower than the timed runs above)")


def print_web(console, report) -> None:
    from rich.table import Table

    info = report.web["info"]
    table = Table(title=f"Browser: onnxruntime-web {info.get('version')} (WASM) in Chromium, threads "
                        f"{'active' if info.get('threadsActive') else 'NOT active'} ({info.get('threads')}); "
                        "ms per call, timed in the page")
    for col in ("batch", "web p50", "web p99", "python ORT p50", "python ORT p99", "web / python ORT"):
        table.add_column(col, justify="right")
    rows = {r["batch"]: r for r in report.rows() if r["backend"] == "onnxruntime"}
    for b, data in report.web["batches"].items():
        w = data["stats"]
        py = rows.get(int(b))
        table.add_row(b, f"{w['p50']:.3f}", f"{w['p99']:.3f}", f"{py['p50']:.3f}" if py else "-",
                      f"{py['p99']:.3f}" if py else "-", f"{w['p50'] / py['p50']:.2f}×" if py else "-")
    console.print(table)


def print_peers(console, report) -> None:
    """One line per peer runtime: measured (warm p50 against ORT's, compile time apart) or why not."""
    from rich.markup import escape

    from torch2ort.benchmark.run import PEER_LABELS
    from torch2ort.benchmark.stats import ratio_text

    for name, status in report.peers.items():
        label = PEER_LABELS[name]
        if not status["measured"]:
            console.print(f"{label}: {escape(status['note'])}")
            continue
        vs = report.ratios.get(f"onnxruntime vs {label}", {})
        parts = [f"batch {b}: {escape(ratio_text(r))}" for b, r in vs.items()]
        console.print(f"{label} ({escape(status['note'])}): compile {status.get('compile_s', float('nan')):.2f} s; "
                      f"ONNX Runtime speed-up over it (its p50 / ORT p50; < 1 means {label} is faster): "
                      + "; ".join(parts))
