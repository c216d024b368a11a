"""INT8 static quantisation in QDQ format (CNNs): activations calibrated ahead of time.

Calibration feeds come from ``--samples`` when given, else from seeded synthetic inputs; the
method is MinMax, Entropy or Percentile. The model first goes through ORT's quantisation
pre-processing (shape inference plus basic optimisation), as ORT recommends. Weights are
per-channel by default; ``reduce_range`` follows the CPU's VNNI support unless set.

``exclude`` keeps nodes in float: ``first`` is the first Conv/Gemm/MatMul with a constant weight
(it sees the raw input), ``last`` the last one (its error lands directly in the output); any other
entry is a node name of the pre-processed graph, which must exist.

``float_layers=k`` is mixed precision guided by measurement: the model is quantised whole once, each
weighted node's own contribution to the quantisation noise is measured on calibration feeds
(passes/sensitivity.py), and the k largest contributors stay in float in the model this pass writes.
The whole-model quantisation and the ranking are shared by every ``k`` the optimiser tries.
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
                 op_types: list[str] | None = None, exclude: str | list[str] | None = None,
                 float_layers: int = 0) -> None:
        if method not in METHODS:
            raise PassError(f"calibration method {method!r}: choose from {', '.join(METHODS)}")
        if isinstance(float_layers, str) and float_layers.strip().isdigit():
            float_layers = int(float_layers)
        if isinstance(float_layers, bool) or not isinstance(float_layers, int) or float_layers < 0:
            raise PassError(f"int8-static float_layers {float_layers!r}: give a whole number >= 0 (the count of "
                            "most noise-adding layers to keep in float)")
        self.exclude = _exclude_list(exclude)
        super().__init__(method=None if method == "minmax" else method, per_channel=None if per_channel else "off",
                         reduce_range=None if reduce_range == "auto" else reduce_range, op_types=op_types,
                         exclude=self.exclude, float_layers=float_layers or None)
        self.method, self.per_channel, self.reduce_range = method, per_channel, reduce_range
        self.op_types = op_types or OP_TYPES
        self.float_layers = float_layers

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if not ctx.calibration:
            raise PassError("int8-static needs calibration data (--samples, or synthetic cases with --n > 0)")
        reduce_range, why = pick_reduce_range(self.reduce_range)
        key = (str(src), src.stat().st_mtime_ns)
        pre = ctx.cache.get(("int8-static-pre", key))
        if pre is None or not pre.is_file():
            pre = ctx.workdir / f"pre-{len(ctx.cache)}.onnx"
            with quiet_library():
                try:
                    quant_pre_process(str(src), str(pre))
                except Exception:  # symbolic shape inference cannot read every graph; ONNX's own still runs
                    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            ctx.cache[("int8-static-pre", key)] = pre
        excluded = resolve_excluded(onnx.load(str(pre), load_external_data=False).graph, self.exclude)

        def quantise(target: Path, nodes: list[str]) -> None:
            with quiet_library():
                quantize_static(str(pre), str(target), _Reader(ctx.calibration), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                op_types_to_quantize=self.op_types, per_channel=self.per_channel,
                                reduce_range=reduce_range, nodes_to_exclude=nodes,
                                calibrate_method=getattr(CalibrationMethod, METHODS[self.method]))

        details: dict = {}
        notes: list[str] = []
        if self.float_layers:
            ranking = self._ranking(key, pre, excluded, quantise, ctx)
            chosen = [r for r in ranking if r.node not in excluded][: self.float_layers]
            excluded = excluded + [r.node for r in chosen]
            total = sum(r.contribution for r in ranking) or 1.0
            share = sum(r.contribution for r in chosen) / total
            details["float_layers"] = [r.to_dict() for r in chosen]
            details["float_layers_noise_share"] = share
            notes.append(f"kept in float the {len(chosen)} of {len(ranking)} weighted layers that add the most "
                         f"quantisation noise ({share:.0%} of the measured total): "
                         + ", ".join(r.node for r in chosen))
        quantise(out, excluded)
        return PassResult(out, True, {"method": self.method, "per_channel": self.per_channel,
                                      "reduce_range": reduce_range, "reduce_range_why": why,
                                      "calibration_feeds": len(ctx.calibration), "format": "QDQ",
                                      "op_types": self.op_types, "excluded": excluded, **details}, notes)

    def _ranking(self, key, pre: Path, excluded: list[str], quantise, ctx: PassContext):
        """Layers by noise contribution in the whole-model quantisation (made once per option set)."""
        from torch2ort.optimization.passes.sensitivity import layer_noise

        rkey = ("int8-static-ranking", key, self.method, self.per_channel, self.reduce_range,
                tuple(self.op_types), tuple(excluded))
        if rkey not in ctx.cache:
            whole = ctx.workdir / f"whole-{len(ctx.cache)}.onnx"
            quantise(whole, excluded)
            ctx.cache[rkey] = layer_noise(pre, whole, ctx)
            whole.unlink(missing_ok=True)
        return ctx.cache[rkey]
