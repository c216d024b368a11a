"""``torch2ort optimize``: build optimised/quantised variants, keep only those that pass the gates."""

from __future__ import annotations

import argparse

from torch2ort.cli.common import (
    Repeatable,
    add_force,
    add_model_args,
    add_spec_args,
    make_console,
    model_options,
    spec_options,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "optimize",
        description="Build variants of the ONNX model (graph optimisation, transformer fusion, "
                    "fp16, int8 dynamic, int8 static QDQ), re-verify each against PyTorch with a "
                    "task-level gate, benchmark the passing ones in isolated processes, and write "
                    "the fastest that passes. Exit 1 when none passes. A text-generation model (hf:DIR of a "
                    "causal LM) gets decoder variants instead (fused, int8-weight, int4-weight, "
                    "fused+int8-weight, fused+int4-weight) behind generation gates, timed per decoded token. "
                    "See docs/optimize.md.")
    p.add_argument("positional", nargs="+", metavar="MODEL ONNX", help="the PyTorch model and its .onnx export")
    add_model_args(p)
    add_spec_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="where the chosen variant goes")
    p.add_argument("--passes", action="append", default=[], metavar="auto|PASS[,PASS…]",
                   help="repeatable; each value is one variant, its passes applied in order. Passes: graph, "
                        "slim, transformer, fp16, int8-dynamic, int8-static, subpixel, lift1d, pack-projections "
                        "(default: auto). For a text-generation model, variants: fused, int8-weight, int4-weight, "
                        "fused+int8-weight, fused+int4-weight")
    p.add_argument("--accept", action="append", default=[], metavar="[OUTPUT:]METRIC>=X",
                   help="accuracy gate, repeatable: cosine>=X, top1>=X, decision>=X, sign>=X, psnr>=X, "
                        "maxabs<=X (default: chosen per output kind)")
    p.add_argument("--samples", metavar="FILE.npz|DIR", help="real inputs: verified on, and used for calibration")
    p.add_argument("--n", type=int, default=8, help="seeded synthetic verification inputs (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed for synthetic inputs (default 0)")
    p.add_argument("--sweep", action=Repeatable, default=[], metavar="LABEL=v1,v2", help="dynamic sizes to verify")
    q = p.add_argument_group("pass options (explicit --passes; auto picks its own grid)")
    q.add_argument("--per-channel", action="store_true", help="per-channel int8 weights (int8-dynamic)")
    q.add_argument("--reduce-range", choices=["auto", "on", "off"], default="auto",
                   help="7-bit int8 weights; auto: on only for CPUs without VNNI")
    q.add_argument("--calibration", choices=["minmax", "entropy", "percentile"], default="minmax",
                   help="int8-static calibration method (default minmax)")
    q.add_argument("--float-layers", type=int, default=0, metavar="K",
                   help="int8-static: keep in float the K layers that add the most measured quantisation noise "
                        "(auto tries 1, 2, 4… when no all-int8 variant holds)")
    q.add_argument("--exclude-last", type=int, default=0, metavar="N",
                   help="int8-dynamic: keep the last N quantisable nodes in float")
    q.add_argument("--exclude-outliers", type=int, default=0, metavar="N",
                   help="int8-dynamic: keep in float the N nodes with the most outlying input activations")
    q.add_argument("--smooth", type=float, default=0.0, metavar="ALPHA",
                   help="int8-dynamic: SmoothQuant strength (0 < ALPHA < 1; auto tries 0.7): activation "
                        "outliers moved into the weights, measured on the calibration feeds")
    q.add_argument("--attention", choices=["packed", "mha"], default="packed",
                   help="transformer: packed Attention (default), or MultiHeadAttention with Q/K/V as MatMuls")
    q.add_argument("--skip-norm", choices=["fused", "unfused"], default="fused",
                   help="transformer: SkipLayerNormalization (default), or residual Sum + LayerNormalization")
    q.add_argument("--level", choices=["basic", "extended"], default="extended", help="graph pass level")
    q.add_argument("--fp16-block", metavar="OP,OP", help="op types to keep in fp32 in the fp16 pass")
    b = p.add_argument_group("benchmark")
    b.add_argument("--no-bench", action="store_true", help="skip benchmarking; choose the smallest passing variant")
    b.add_argument("--batch", type=int, help="batch size to time (default: the spec's example)")
    b.add_argument("--seconds", type=float, default=1.0, help="timed seconds per process (default 1)")
    b.add_argument("--repeats", type=int, default=2, help="A/B repeats in fresh processes (default 2)")
    b.add_argument("--threads", type=int, help="threads on both sides (default: physical cores)")
    p.add_argument("--providers", default="cpu", metavar="cpu|cuda",
                   help="execution provider to verify and time on (default cpu)")
    p.add_argument("--json", metavar="FILE", help="write every variant's numbers as JSON")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from torch2ort import api
    from torch2ort.errors import SpecError

    console = make_console()
    if len(args.positional) > 2:
        raise SpecError(f"optimize takes MODEL ONNX, got {len(args.positional)} positional arguments")
    model, onnx_path = args.positional if len(args.positional) == 2 else (getattr(args, "model", None),
                                                                            args.positional[0])
    result = api.optimize(
        model, onnx_path, output=args.output, passes=args.passes or "auto", accept=args.accept,
        samples=args.samples, n=args.n, seed=args.seed, sweep=args.sweep, providers=args.providers,
        bench=not args.no_bench, batch=args.batch, seconds=args.seconds, repeats=args.repeats, threads=args.threads,
        json_path=args.json, force=args.force, log=lambda line: console.print(f"[dim]•[/dim] {escape(line)}"),
        model_options=model_options(args), per_channel=args.per_channel, reduce_range=args.reduce_range,
        calibration=args.calibration, exclude_last=args.exclude_last, exclude_outliers=args.exclude_outliers,
        smooth=args.smooth, attention=args.attention, skip_norm=args.skip_norm, level=args.level,
        fp16_block=args.fp16_block, float_layers=args.float_layers, **spec_options(args))
    print_table(console, result)
    if args.json:
        console.print(f"report written to {args.json}")
    return 0 if result.output else 1


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}×"


def print_table(console, result) -> None:
    from rich.markup import escape
    from rich.table import Table

    if result.decoder:
        lim = result.decoder["limits"]
        console.print(f"generation gates against the fp32 export: teacher-forced top-1 >= {lim['top1']} and "
                      f"perplexity ratio <= {lim['ppl_ratio']} on {result.cases} tokens of "
                      f"{escape(result.decoder['text'])}; greedy agreement >= {lim['greedy']} and no new loop on the "
                      "prompts; a fused graph is re-verified against transformers; timed in ms per decoded token")
    gates = ", ".join(f"{g.text()} ({g.why})" for g in result.gates.values())
    judged = result.gate_cases.get("cases", [])
    if not result.decoder:
        console.print(f"gates: {escape(gates)}; {result.cases} verification cases, gates judged on {len(judged)}: "
                      f"{escape(result.gate_cases.get('why', ''))}; calibration: {result.calibration}")
    if result.confirm_cases.get("cases"):
        console.print(f"the choice is confirmed on {len(result.confirm_cases['cases'])} fresh cases: "
                      f"{escape(result.confirm_cases.get('why', ''))}; agreement gates pass on their 95% lower bound")
    table = Table(title="variants (★ Pareto front among passing variants: latency, size, metric)")
    for col in ("variant", "gate", "metric", "p50 ms", "p99 ms", "vs torch", "vs fp32 ONNX", "MB", "confirmed", ""):
        table.add_column(col, justify="left" if col in ("variant", "metric") else "right")
    for row in result.table():
        mark = ("→ " if row["chosen"] else "") + ("★" if row["pareto"] else "")
        gate = "[green]pass[/green]" if row["gate"] == "pass" else "[red]FAIL[/red]"
        size = "-" if row["size_mb"] is None else f"{row['size_mb']:.2f}"
        unstable = "" if row["stable"] else " unstable"
        table.add_row(escape(row["variant"]), gate, escape(row["metric"]), _ms(row["p50_ms"]), _ms(row["p99_ms"]),
                      _x(row["vs_torch"]) + unstable, _x(row["vs_fp32"]) + unstable, size,
                      {True: "[green]yes[/green]", False: "[red]no[/red]"}.get(row["confirmed"], "-"), mark)
    console.print(table)
    for v in result.variants:
        if not v.passed:
            console.print(f"  [red]✗[/red] {escape(v.name)}: {escape(v.error or '; '.join(_fails(v.gate)))}")
        elif v.confirmed is False:
            why = "; ".join(_fails(v.confirmation))
            console.print(f"  [red]✗[/red] {escape(v.name)}: on fresh cases: {escape(why)}")
        for note in dict.fromkeys(v.notes):
            console.print(f"  [yellow]![/yellow] {escape(v.name)}: {escape(note)}")
    style = "bold green" if result.output else "bold red"
    console.print(f"[{style}]{escape(result.message)}[/{style}]" + (f" → {result.output}" if result.output else ""))


def _fails(gate: dict) -> list[str]:
    from torch2ort.optimization.planner import gate_failures

    return gate_failures(gate)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"
