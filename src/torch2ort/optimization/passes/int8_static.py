"""INT8 static quantisation in QDQ format (CNNs): activations calibrated ahead of time.

Calibration feeds come from ``--samples`` when given, else from seeded synthetic inputs; the
method is MinMax, Entropy or Percentile. The model first goes through ORT's quantisation
pre-processing (shape inference plus basic optimisation), as ORT recommends. Weights are
per-channel by default; ``reduce_range`` follows the CPU's VNNI support unless set.

``exclude`` keeps nodes in float: ``first`` is the first Conv/Gemm/MatMul with a constant weight
(it sees the raw input), ``last`` the last one (its error lands directly in the output); any other
entry is a node name of the pre-processed graph, which must exist.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.optimization.passes.base import (
    Pass,
    PassContext,
    PassError,
    PassResult,
    pick_reduce_range,
    quiet_library,
    weighted_nodes,
)

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
OP_TYPES = ["Conv", "MatMul", "Gemm", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu",
            "Clip", "Concat", "Resize", "ConvTranspose"]
POSITIONS = ("first", "last")


class _Reader:
    """ORT's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]) -> None:
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:  # not used by ORT's calibrators today
        pass


def _exclude_list(exclude: str | list[str] | tuple[str, ...] | None) -> list[str]:
    items = exclude.split(",") if isinstance(exclude, str) else list(exclude or [])
    if not all(isinstance(i, str) for i in items):
        raise PassError(f"int8-static exclude {exclude!r}: give first, last or node names, comma-separated")
    items = [i.strip() for i in items]
    if "" in items:
        raise PassError(f"int8-static exclude {exclude!r}: an empty entry; give first, last or node names")
    return list(dict.fromkeys(items))


def resolve_excluded(graph, exclude: list[str]) -> list[str]:
    """``first``/``last`` -> node names; other entries must name a node of ``graph``."""
    weighted = weighted_nodes(graph)
    names = {n.name for n in graph.node}
    out: list[str] = []
    for item in exclude:
        if item in POSITIONS:
            if not weighted:
                raise PassError(f"int8-static exclude={item}: the graph has no Conv, Gemm or MatMul with a weight")
            out.append(weighted[0] if item == "first" else weighted[-1])
        elif item in names:
            out.append(item)
        else:
            raise PassError(f"int8-static exclude: no node named {item!r} in the graph (use first, last or a "
                            "node name)")
    return list(dict.fromkeys(out))


class Int8Static(Pass):
    name = "int8-static"

    def __init__(self, method: str = "minmax", per_channel: bool = True, reduce_range: str | bool = "auto",
                 op_types: list[str] | None = None, exclude: str | list[str] | None = None) -> None:
        if method not in METHODS:
            raise PassError(f"calibration method {method!r}: choose from {', '.join(METHODS)}")
        self.exclude = _exclude_list(exclude)
        super().__init__(method=None if method == "minmax" else method, per_channel=None if per_channel else "off",
                         reduce_range=None if reduce_range == "auto" else reduce_range, op_types=op_types,
                         exclude=self.exclude)
        self.method, self.per_channel, self.reduce_range = method, per_channel, reduce_range
        self.op_types = op_types or OP_TYPES

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if not ctx.calibration:
            raise PassError("int8-static needs calibration data (--samples, or synthetic cases with --n > 0)")
        reduce_range, why = pick_reduce_range(self.reduce_range)
        pre = ctx.workdir / f"{out.stem}-pre.onnx"
        with quiet_library():
            try:
                quant_pre_process(str(src), str(pre))
            except Exception:  # symbolic shape inference cannot read every graph; ONNX's own still runs
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        excluded = resolve_excluded(onnx.load(str(pre), load_external_data=False).graph, self.exclude)
        with quiet_library():
            quantize_static(str(pre), str(out), _Reader(ctx.calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=self.op_types, per_channel=self.per_channel,
                            reduce_range=reduce_range, nodes_to_exclude=excluded,
                            calibrate_method=getattr(CalibrationMethod, METHODS[self.method]))
        pre.unlink(missing_ok=True)
        return PassResult(out, True, {"method": self.method, "per_channel": self.per_channel,
                                      "reduce_range": reduce_range, "reduce_range_why": why,
                                      "calibration_feeds": len(ctx.calibration), "format": "QDQ",
                                      "op_types": self.op_types, "excluded": excluded})
