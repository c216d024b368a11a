"""``torch2ort export``: torch -> ONNX with real dynamic axes and provenance."""

from __future__ import annotations

import argparse

from torch2ort.cli.common import (
    add_force,
    add_model_args,
    add_spec_args,
    make_console,
    model_options,
    note_printer,
    spec_options,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        description="Export MODEL to ONNX. MODEL is path/to/file.py:NAME, package.module:NAME "
                    "or a TorchScript archive.")
    p.add_argument("model", nargs="?", metavar="MODEL")
    add_model_args(p)
    add_spec_args(p)
    p.add_argument("-o", "--output", default="model.onnx", metavar="FILE.onnx",
                   help="where to write (default model.onnx)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's recommended one)")
    p.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                   help="auto (default) tries dynamo, then the TorchScript exporter")
    p.add_argument("--verbose", action="store_true", help="print the exporters' own output on failure")
    add_force(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort import api

    console = make_console()
    result = api.export_onnx(args.model, output=args.output, opset=args.opset, exporter=args.exporter,
                             verbose=args.verbose, force=args.force, log=note_printer(console),
                             **spec_options(args), **model_options(args))
    console.print(f"exported with [bold]{result.exporter}[/bold] (opset {result.opset}) in "
                  f"{result.seconds:.1f} s -> {result.path}")
    console.print(f"[dim]•[/dim] {result.why}")
    if result.external_data:
        console.print("[dim]•[/dim] weights written as external data next to the model (over 2 GB)")
    _print_io(console, result.path)
    return 0


def _print_io(console, path: str) -> None:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    for kind, values in (("input", [v for v in graph.input if v.name not in inits]), ("output", graph.output)):
        for v in values:
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)
            console.print(f"  {kind:6} {v.name}: {dtype} {dims}")
