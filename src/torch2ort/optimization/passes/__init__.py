"""Optimisation and quantisation passes, one per file, looked up by name in PASSES.

``parse_chain("graph,int8-dynamic")`` gives the passes of one variant, applied in order. Each pass
returns a PassResult; none is kept until the optimiser has re-verified it against PyTorch.
"""

from __future__ import annotations

from torch2ort.errors import UsageError, unknown_name
from torch2ort.optimization.passes.base import Pass, PassContext, PassError, PassResult

# name -> "module:Class", imported on use.
PASSES = {
    "graph": "torch2ort.optimization.passes.graph:GraphOptimize",
    "slim": "torch2ort.optimization.passes.slim:Slim",
    "transformer": "torch2ort.optimization.passes.transformer:TransformerFusion",
    "fp16": "torch2ort.optimization.passes.fp16:Fp16",
    "int8-dynamic": "torch2ort.optimization.passes.int8_dynamic:Int8Dynamic",
    "int8-static": "torch2ort.optimization.passes.int8_static:Int8Static",
    "subpixel": "torch2ort.optimization.passes.subpixel:SubPixel",
    "lift1d": "torch2ort.optimization.passes.lift1d:Lift1d",
    "pack-projections": "torch2ort.optimization.passes.pack:PackProjections",
}


def pass_class(name: str) -> type[Pass]:
    import importlib

    if name not in PASSES:
        raise UsageError(unknown_name("pass", name, list(PASSES) + ["auto"]))
    module, _, cls = PASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def parse_chain(text: str, options: dict[str, dict] | None = None) -> list[Pass]:
    """``"graph,int8-dynamic"`` -> [GraphOptimize(), Int8Dynamic()], with per-pass keyword options."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--passes is empty: name passes separated by commas, or auto")
    options = options or {}
    return [pass_class(n)(**options.get(n, {})) for n in names]


__all__ = ["PASSES", "Pass", "PassContext", "PassError", "PassResult", "parse_chain", "pass_class"]
