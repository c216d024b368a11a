"""torch -> ONNX: the dynamo exporter first, the TorchScript exporter as fallback.

Example::

    result = export_onnx(loaded, spec, "model.onnx")   # exporter="auto"
    print(result.exporter, result.why)

Dynamic dims from the spec become symbolic dims (dim_param) on inputs and on the outputs that
follow them. When both exporters fail, ExportError names the failing op and its module.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch2ort import __version__
from torch2ort import values as V
from torch2ort._torch import flatten_outputs, name_outputs, quiet, to_torch_args
from torch2ort.errors import ExportError, UsageError, unknown_name
from torch2ort.inputs import synthetic_feed
from torch2ort.spec import InputSpec

if TYPE_CHECKING:
    from torch2ort.sources import LoadedModel

EXPORTERS = ("auto", "dynamo", "torchscript")
# Past this many bytes of weights, write external data: protobuf cannot hold more than 2 GiB.
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass
class ExportResult:
    path: str
    exporter: str
    why: str
    output_names: list[str]
    opset: int
    seconds: float
    external_data: bool
    attempts: dict[str, str] = field(default_factory=dict)  # exporter -> failure summary


def export_onnx(loaded: LoadedModel, spec: InputSpec, out: str | Path, *, opset: int | None = None,
                exporter: str = "auto", verbose: bool = False) -> ExportResult:
    """Export ``loaded.module`` for ``spec`` to ``out``; raises ExportError when no exporter works."""
    import torch

    if exporter not in EXPORTERS:
        raise UsageError(unknown_name("exporter", exporter, EXPORTERS))
    opset = check_opset(opset)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = loaded.module
    feed = synthetic_feed(spec, seed=0)
    args = to_torch_args(feed, spec.names)
    with torch.inference_mode():
        try:
            flat = flatten_outputs(module(*args))
        except Exception as exc:
            raise UsageError(f"the model does not run on the example inputs {spec.to_cli()}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None
    output_names = name_outputs(flat, spec.output_names)
    big = _weight_bytes(module) > EXTERNAL_DATA_BYTES
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    attempts: dict[str, str] = {}
    start = time.perf_counter()
    for name in order:
        try:
            with quiet() as chatter:
                _EXPORTERS[name](module, args, spec, output_names, out, opset, big)
        except Exception as exc:  # any exporter failure is translated below
            attempts[name] = _summarise(exc)
            if verbose:
                print("".join(chatter))
            continue
        opset_used = _finish(out, loaded, spec, name, output_names)
        head = getattr(module, "torch2ort_logits_to_keep", None)  # a decoder: the output its LM head makes
        kept = _logits_to_keep(out, head) if head else None
        if opset is not None and opset_used != opset:  # dynamo answers below 18 with 18, silently
            attempts[name] = f"it wrote opset {opset_used}, not the {opset} asked for (--opset)"
            continue
        seconds = time.perf_counter() - start
        if name == "dynamo":
            why = "dynamo succeeded, so the TorchScript exporter was not needed"
        elif "dynamo" in attempts:
            why = f"dynamo failed ({attempts['dynamo']}); fell back to the TorchScript exporter"
        else:
            why = "the TorchScript exporter was asked for with --exporter torchscript"
        if kept:
            why += f"; {kept}"
        return ExportResult(str(out), name, why, output_names, opset_used, seconds, big, attempts)
    raise ExportError(_failure_paragraph(module, args, attempts))


def check_opset(opset: int | None) -> int | None:
    """None (the exporter's choice) or an opset some exporter here can write; anything else is a usage error."""
    if opset is None:
        return None
    from torch.onnx._constants import ONNX_MAX_OPSET, ONNX_MIN_OPSET

    return V.count("--opset", opset, ONNX_MIN_OPSET, ONNX_MAX_OPSET)


def _weight_bytes(module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _dynamo(module, args, spec: InputSpec, output_names, out: Path, opset, big: bool) -> None:
    import torch
    from torch.export import Dim

    if isinstance(module, torch.jit.ScriptModule):
        raise ExportError("torch.export cannot trace a TorchScript module")
    # A label the module declares derived (a decoder's mask spans past + new tokens) is left to torch.export
    # to relate: Dim.AUTO, renamed to the label afterwards. No Dim can spell a sum of two others.
    derived = set(getattr(module, "torch2ort_derived_dims", ()))
    dims = {label: Dim.AUTO if label in derived else Dim(label) for label in spec.dynamic_labels()}
    dynamic_shapes = tuple({i: dims[d.label] for i, d in enumerate(t.dims) if d.label} or None
                           for t in spec.inputs)
    fixed = _fixed_arguments(module)
    if fixed is not None and len(dynamic_shapes) > fixed:  # forward(self, a, b, *rest): rest is one tuple
        dynamic_shapes = (*dynamic_shapes[:fixed], tuple(dynamic_shapes[fixed:]))
    program = torch.onnx.export(module, args, None, dynamo=True, input_names=spec.names,
                                opset_version=opset, dynamic_shapes=dynamic_shapes if spec.dynamic_labels() else None)
    _rename_outputs(program.model.graph, output_names)
    if derived:
        _label_inputs(program.model.graph, spec, derived)
    program.save(str(out), external_data=big)


def _fixed_arguments(module) -> int | None:
    """How many positional parameters come before ``*args`` in ``forward``; None without ``*args``."""
    import inspect

    params = list(inspect.signature(module.forward).parameters.values())
    kinds = [p.kind for p in params]
    if inspect.Parameter.VAR_POSITIONAL not in kinds:
        return None
    return kinds.index(inspect.Parameter.VAR_POSITIONAL)


def _label_inputs(graph, spec: InputSpec, labels: set[str]) -> None:
    """Give the dims torch.export named itself (``s53``) the spec's label."""
    import onnx_ir as ir

    for value in graph.inputs:
        t = spec[value.name] if value.name in spec.names else None
        if t is None or value.shape is None:
            continue
        dims = [ir.SymbolicDim(d.label) if d.label in labels else old for d, old in zip(t.dims, value.shape)]
        value.shape = ir.Shape(dims)


def _rename_outputs(graph, output_names: list[str]) -> None:
    """Name the graph outputs, moving aside any internal value that already has the name.

    The dynamo exporter names values after their ops (``embedding``, ``linear_3``), so asking it for
    an output called ``embedding`` gives two definitions of one name and an invalid model.
    """
    values = {v.name: v for node in graph for v in node.outputs if v.name}
    values.update({v.name: v for v in graph.inputs})
    values.update(graph.initializers)
    outputs = list(graph.outputs)
    for value, name in zip(outputs, output_names):
        if value.name == name:
            continue
        clash = values.get(name)
        if clash is not None and clash is not value:
            n = 1
            while f"{name}_internal{n}" in values:
                n += 1
            clash.name = f"{name}_internal{n}"
            values[clash.name] = clash
        values.pop(value.name, None)
        value.name = name
        values[name] = value


def _torchscript(module, args, spec: InputSpec, output_names, out: Path, opset, big: bool) -> None:
    import torch

    axes: dict[str, dict[int, str]] = {}
    for t in spec.inputs:
        labelled = {i: d.label for i, d in enumerate(t.dims) if d.label}
        if labelled:
            axes[t.name] = labelled
    axes.update(_output_axes(module, spec, output_names))
    torch.onnx.export(module, args, str(out), dynamo=False, input_names=spec.names,
                      output_names=output_names, opset_version=opset, dynamic_axes=axes or None)


def _output_axes(module, spec: InputSpec, output_names: list[str]) -> dict[str, dict[int, str]]:
    """Find which output dims follow which dynamic label, by running the model at a second size.

    The TorchScript exporter needs output dynamic axes spelled out; dynamo infers them itself.
    """
    import torch

    labels = spec.dynamic_labels()
    if not labels:
        return {}
    with torch.inference_mode():
        base = [t.shape for _, t in flatten_outputs(module(*to_torch_args(synthetic_feed(spec), spec.names)))]
        axes: dict[str, dict[int, str]] = {}
        for label, size in labels.items():
            feed = synthetic_feed(spec, sizes={label: size + 1}, seed=1)
            moved = [t.shape for _, t in flatten_outputs(module(*to_torch_args(feed, spec.names)))]
            for name, before, after in zip(output_names, base, moved):
                for i, (b, a) in enumerate(zip(before, after)):
                    if a != b:
                        dim_name = label if b == size else f"{name}_dim{i}"
                        axes.setdefault(name, {}).setdefault(i, dim_name)
    return axes


_EXPORTERS = {"dynamo": _dynamo, "torchscript": _torchscript}


def _finish(out: Path, loaded: LoadedModel, spec: InputSpec, exporter: str, output_names) -> int:
    """Check the file with onnx.checker and stamp provenance into metadata_props."""
    import onnx
    import torch

    model = onnx.load(str(out), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    props = {
        "torch2ort.version": __version__,
        "torch2ort.exporter": exporter,
        "torch2ort.source": loaded.source,
        "torch2ort.input_spec": " ".join(spec.to_cli()),
        "torch2ort.input_spec_sha256": spec.sha256(),
        "torch2ort.output_names": ",".join(output_names),
        "torch.version": torch.__version__,
        "onnx.version": onnx.__version__,
        "onnx.opset": str(opset),
    }
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = model.producer_name or "torch2ort"
    onnx.save(model, str(out))
    try:
        onnx.checker.check_model(str(out))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported model fails onnx.checker: {_first_line(exc)}") from None
    return opset


def _logits_to_keep(out: Path, output: str) -> str | None:
    """A decoder's ``logits_to_keep`` input (export/logits.py); a sentence when it could not be added."""
    import onnx

    from torch2ort.export.logits import add_logits_to_keep_file

    why = add_logits_to_keep_file(out, output)
    if why is None:
        onnx.checker.check_model(str(out))
    return None if why is None else f"no logits_to_keep input ({why}): the prefill computes logits at every position"


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


# --- turning two exporters' failures into one paragraph -------------------------------------

_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='aten\.(\w+)'"),
    re.compile(r"operator '?aten::(\w+)'?"),
    re.compile(r"torch\.ops\.aten\.(\w+)"),
    re.compile(r"aten::(\w+)"),
)


def _summarise(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "## Exception summary" in text:
        tail = text.split("## Exception summary", 1)[1]
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip().startswith("<class")]
        if lines:
            text = lines[0].split(">:", 1)[-1]
    line = _first_line_of(text)
    where = re.search(r'File "([^"]+)", line (\d+), in (\w+)', str(exc))
    if where:
        line += f" (at {Path(where.group(1)).name}:{where.group(2)} in {where.group(3)})"
    return line[:400]


def _failing_op(attempts: dict[str, str]) -> str | None:
    for text in attempts.values():
        for pattern in _OP_PATTERNS:
            m = pattern.search(text)
            if m:
                return m.group(1)
    return None


def _locate_op(module, args, op: str) -> str | None:
    """Find the module (and source line) that calls ``op``, from torch.export's graph metadata."""
    import torch

    try:
        with quiet():
            program = torch.export.export(module, args, strict=False)
    except Exception:
        return None
    wanted = op.lstrip("_")
    for node in program.graph.nodes:
        if node.op != "call_function" or wanted not in str(node.target).lstrip("_").replace("aten.", ""):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        where = ""
        if stack:
            path, kind = list(stack.values())[-1]
            kind_name = kind if isinstance(kind, str) else getattr(kind, "__qualname__", str(kind))
            where = f"module '{path or '<root>'}' ({kind_name.split('.')[-1]})"
        trace = node.meta.get("stack_trace") or ""
        files = re.findall(r'File "([^"]+)", line (\d+)', trace)
        if files:
            where += f", called at {Path(files[-1][0]).name}:{files[-1][1]}"
        return where or None
    return None


def _failure_paragraph(module, args, attempts: dict[str, str]) -> str:
    op = _failing_op(attempts)
    tried = "; ".join(f"{name}: {why}" for name, why in attempts.items())
    if op is None:
        return f"export failed with every exporter tried. {tried}"
    where = _locate_op(module, args, op)
    loc = f" in {where}" if where else ""
    return (f"export failed: the op aten::{op}{loc} has no ONNX translation in the exporters tried. "
            f"{tried}. Fix: rewrite that part with supported ops, keep it outside the model, or "
            "register a custom translation (torch.onnx.export custom_translation_table).")


def _first_line(exc: BaseException) -> str:
    return _first_line_of(str(exc)) or type(exc).__name__


def _first_line_of(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""

