"""``torch2ort verify``: PyTorch vs ONNX Runtime parity; a mismatch exits 1."""

from __future__ import annotations

import argparse
import math

from torch2ort.cli.common import (
    Repeatable,
    add_force,
    add_model_args,
    add_spec_args,
    make_console,
    model_options,
    note_printer,
    spec_options,
)
from torch2ort.errors import SpecError
from torch2ort.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify",
        description="Run MODEL in PyTorch and MODEL.onnx in ONNX Runtime on the same "
                    "synthetic, real and swept inputs and compare every output. "
                    "An output passes when |ort - torch| <= atol + rtol*|torch| everywhere.")
    p.add_argument("positional", nargs="+", metavar="MODEL ONNX",
                   help="the PyTorch model and the .onnx file (MODEL may come from --config)")
    add_model_args(p)
    add_spec_args(p)
    p.add_argument("--samples", metavar="FILE.npz|DIR", help="real inputs: .npz files keyed by input name")
    p.add_argument("--n", type=int, default=3, help="number of seeded synthetic inputs (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed for synthetic inputs (default 0)")
    p.add_argument("--sweep", action=Repeatable, default=[], metavar="LABEL=v1,v2",
                   help="sizes to try for a dynamic dim (default: its example size plus two others)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL:g})")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL:g})")
    p.add_argument("--runtime", default="cpu", metavar="cpu|web|cpu,web",
                   help="where the ONNX model runs: cpu (ONNX Runtime here), web (onnxruntime-web in headless "
                        "Chromium), or both (default cpu)")
    p.add_argument("--web-threads", type=int, help="ort.env.wasm.numThreads for --runtime web (default: "
                                                   "physical cores)")
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort import api

    console = make_console()
    if len(args.positional) > 2:
        raise SpecError(f"verify takes MODEL ONNX, got {len(args.positional)} positional arguments")
    model, onnx_path = args.positional if len(args.positional) == 2 else (getattr(args, "model", None),
                                                                            args.positional[0])
    result = api.verify_onnx(model, onnx_path, n=args.n, samples=args.samples, sweep=args.sweep, atol=args.atol,
                             rtol=args.rtol, seed=args.seed, runtime=args.runtime, web_threads=args.web_threads,
                             json_path=args.json, force=args.force, log=note_printer(console),
                             **spec_options(args), **model_options(args))
    print_report(console, result)
    if args.json:
        console.print(f"report written to {args.json}")
    return 0 if result.report else 1


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def print_report(console, result) -> None:
    from rich.table import Table

    report = result.report
    kinds = {}
    for c in result.cases:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    console.print("cases: " + ", ".join(f"{v} {k}" for k, v in kinds.items())
                  + f" (tolerance: atol {report.atol:g}, rtol {report.rtol:g})")
    for name, info in result.runtimes.items():
        if name == "web":
            console.print(f"web: onnxruntime-web {info.get('version')} in Chromium, WASM threads "
                          f"{'active' if info.get('threadsActive') else 'NOT active'} ({info.get('threads')} of "
                          f"{info.get('requestedThreads')} requested; crossOriginIsolated "
                          f"{info.get('crossOriginIsolated')})")
    table = Table(title="PyTorch vs ONNX Runtime, worst case per output and runtime")
    for col in ("runtime", "output", "shape", "cases", "max abs", "max rel", "mean abs", "min cos", "top-1", "decision",
                "verdict"):
        table.add_column(col, justify="left" if col in ("runtime", "output", "shape") else "right")
    for row in report.per_output():
        verdict = "[green]pass[/green]" if row["failed"] == 0 else f"[red]FAIL ({row['failed']})[/red]"
        table.add_row(row["runner"], row["output"], str(row["shape"]), str(row["cases"]), _fmt(row["max_abs"]),
                      _fmt(row["max_rel"]), _fmt(row["mean_abs"]), _fmt(row["min_cosine"], 7),
                      _fmt(row["top1"]), _fmt(row["decision"]), verdict)
    console.print(table)
    gen = getattr(result, "generation", None)
    if gen:
        same = sum(g["identical"] for g in gen["greedy"])
        console.print(f"greedy tokens vs transformers generate(do_sample=False), {gen['new_tokens']} new tokens: "
                      f"{same}/{len(gen['greedy'])} prompt runs identical (each prompt alone and all batched); "
                      f"smallest top-1 margin {gen['min_top1_margin']:.3g}")
        if gen.get("note"):
            console.print(f"[yellow]note[/yellow]: {gen['note']}")
    if report:
        console.print(f"[bold green]PASS[/bold green]: every output within tolerance on {len(result.cases)} "
                      f"cases ({result.seconds:.1f} s)")
        return
    console.print("[bold red]FAIL[/bold red]: parity is not proven")
    for line in report.failures()[:20]:
        console.print(f"  - {line}")
    extra = len(report.failures()) - 20
    if extra > 0:
        console.print(f"  … and {extra} more")
