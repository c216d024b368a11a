"""The pass contract: ``Pass(options)(src, out, ctx) -> PassResult(model, changed, details)``.

Passes work on files, not in-memory protos, because ONNX Runtime's optimiser and quantiser read
and write files and models over 2 GB need external data. A pass never judges its own output:
the optimiser re-verifies every result against PyTorch before it can be kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch2ort._env import cpu_flags
from torch2ort.errors import PassError, PassFailedError, describe  # noqa: F401  (PassError: the passes' own)
from torch2ort.export.graph import model_bytes, op_counts

EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GiB per file


@dataclass
class PassResult:
    model: Path
    changed: bool
    details: dict = field(default_factory=dict)   # what the pass did, for the report (counts, options)
    notes: list[str] = field(default_factory=list)  # plain-language remarks a user should read


@dataclass
class PassContext:
    """What passes may need besides the model: calibration feeds, CPU facts, a scratch folder."""

    workdir: Path
    calibration: list[dict[str, np.ndarray]] = field(default_factory=list)
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    cache: dict = field(default_factory=dict)  # results passes share within one optimise run (pre-processing…)


class Pass:
    """One transformation. Subclasses set ``name`` and implement ``run``."""

    name = "pass"

    def __init__(self, **options) -> None:
        self.options = options

    @property
    def label(self) -> str:
        """The name plus any non-default options, e.g. ``int8-dynamic[per-channel]``."""
        flags = [k.replace("_", "-") if v is True else f"{k.replace('_', '-')}={_short(v)}"
                 for k, v in sorted(self.options.items()) if v not in (None, False, [], ())]
        return f"{self.name}[{','.join(flags)}]" if flags else self.name

    def __call__(self, src: str | Path, out: str | Path, ctx: PassContext) -> PassResult:
        src, out = Path(src).resolve(), Path(out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        before = op_counts(src)
        try:
            with working_directory(ctx.workdir):  # libraries that write debris into the cwd write it here
                result = self.run(src, out, ctx)
        except PassError:
            raise
        except Exception as exc:  # a library failure inside a pass: one line, attributed to the pass
            raise PassFailedError(f"{self.label} failed: {describe(exc)}") from None
        if not result.model.is_file():
            raise PassFailedError(f"{self.label} wrote no model")
        after = op_counts(result.model)
        result.details.setdefault("nodes_before", sum(before.values()))
        result.details.setdefault("nodes_after", sum(after.values()))
        result.details.setdefault("ops_added", {k: v - before.get(k, 0) for k, v in after.items()
                                                if v > before.get(k, 0)})
        result.changed = result.changed or before != after or model_bytes(src) != model_bytes(result.model)
        return result

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        raise NotImplementedError


def _short(v) -> str:
    if isinstance(v, (list, tuple)):
        return f"{len(v)} items" if len(v) > 3 else "+".join(map(str, v))
    return str(v)


def save_model(model, out: str | Path) -> Path:
    """Save a ModelProto, as one file when it fits, else with its weights in OUT.data."""
    import onnx

    out = Path(out)
    data = out.with_name(out.name + ".data")
    data.unlink(missing_ok=True)
    if model.ByteSize() > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    else:
        onnx.save_model(model, str(out))
    return out


def load_model(path: str | Path):
    import onnx

    return onnx.load(str(path))


def weighted_nodes(graph, op_types=("Conv", "ConvTranspose", "Gemm", "MatMul")) -> list[str]:
    """Names of the ``op_types`` nodes whose weight (input 1) is a constant, in graph (topological) order."""
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type in op_types and len(n.input) > 1 and n.input[1] in consts]


def probe_tensors(path: str | Path, tensors: list[str], ctx: PassContext, purpose: str):
    """Yield, per calibration feed, the named intermediate tensors of the model (made graph outputs).

    ``purpose`` names the option that needs them, for the error when there are no calibration feeds.
    """
    import onnx
    import onnxruntime as ort

    if not ctx.calibration:
        raise PassError(f"{purpose} needs calibration feeds (--samples, or synthetic ones with --n > 0)")
    model = load_model(path)
    existing = {o.name for o in model.graph.output}
    for name in dict.fromkeys(tensors):
        if name not in existing:
            model.graph.output.add().CopyFrom(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    probe = save_model(model, ctx.workdir / f"probe-{Path(path).stem}.onnx")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(probe), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        wanted = set(tensors)
        for feed in ctx.calibration:
            yield {n: np.asarray(v) for n, v in zip(names, session.run(None, feed)) if n in wanted}
    finally:
        for f in (probe, probe.with_name(probe.name + ".data")):
            f.unlink(missing_ok=True)


def has_vnni(flags: set[str] | None = None) -> bool:
    """VNNI (x86 AVX512-VNNI / AVX-VNNI) or Arm dot-product: int8 dot products without saturation."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_vnni", "avx_vnni", "avx512vnni", "asimddp"})


def pick_reduce_range(choice: str | bool | None, flags: set[str] | None = None) -> tuple[bool, str]:
    """``auto``: 7-bit weights only on CPUs without VNNI, where u8×s8 products can saturate int16."""
    if isinstance(choice, bool):
        return choice, "asked for"
    if choice in (None, "auto"):
        if has_vnni(flags):
            return False, "this CPU has VNNI, so full 8-bit weights cannot saturate"
        return True, "this CPU has no VNNI: 7-bit weights avoid int16 saturation in u8×s8 products"
    if choice in ("on", "true", "1"):
        return True, "asked for"
    if choice in ("off", "false", "0"):
        return False, "asked for"
    raise PassError(f"reduce_range {choice!r}: choose auto, on or off")


def unshare_weights(model, op_types: tuple[str, ...] = ("Gemm", "MatMul")) -> int:
    """Give each MatMul/Gemm its own copy of a weight initializer that several nodes share.

    The dynamo exporter de-duplicates equal tensors (cloned layers start with equal weights), and
    ONNX Runtime's quantiser, converting ``Gemm(transB=1)`` to MatMul, transposes a shared weight
    once per user: two users transpose it back, silently wrong. Returns the number of copies made.
    """
    import onnx

    uses: Counter = Counter(i for n in model.graph.node for i in n.input)
    inits = {i.name: i for i in model.graph.initializer}
    copies = 0
    for node in model.graph.node:
        if node.op_type in op_types and len(node.input) > 1:
            name = node.input[1]
            if name in inits and uses[name] > 1:
                clone = onnx.TensorProto()
                clone.CopyFrom(inits[name])
                clone.name = f"{name}__{node.name or copies}"
                model.graph.initializer.append(clone)
                uses[name] -= 1
                node.input[1] = clone.name
                copies += 1
    return copies


@contextlib.contextmanager
def working_directory(path: Path):
    """Run in ``path`` (made absolute first), then return to where we were.

    ORT's symbolic shape inference saves ``sym_shape_infer_temp.onnx`` and a ``<uuid>.data`` file into
    the current directory when it cannot infer every shape (a tiny BERT's dynamo graph is enough), and
    quant_pre_process calls it; a pass must never leave that in the user's folder.
    """
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    before = Path.cwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(before)


@contextlib.contextmanager
def quiet_library():
    """Silence the optimiser's and quantiser's stdout chatter and warnings for the duration."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def replace_nodes(graph, nodes: list) -> None:
    """Make ``nodes`` the graph's nodes, dropping the initializers no node reads any more."""
    used = {i for n in nodes for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)
