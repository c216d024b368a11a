"""INT8 static quantisation in QDQ format (CNNs): activations calibrated ahead of time.

Calibration feeds come from ``--samples`` when given, else from seeded synthetic inputs; the
method is MinMax, Entropy or Percentile. The model first goes through ORT's quantisation
pre-processing (shape inference plus basic optimisation), as ORT recommends. Weights are
per-channel by default; ``reduce_range`` follows the CPU's VNNI support unless set.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.optimize.passes.base import Pass, PassContext, PassError, PassResult, pick_reduce_range, quiet_library

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
OP_TYPES = ["Conv", "MatMul", "Gemm", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu",
            "Clip", "Concat", "Resize", "ConvTranspose"]


class _Reader:
    """ORT's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]) -> None:
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:  # not used by ORT's calibrators today
        pass


class Int8Static(Pass):
    name = "int8-static"

    def __init__(self, method: str = "minmax", per_channel: bool = True, reduce_range: str | bool = "auto",
                 op_types: list[str] | None = None) -> None:
        if method not in METHODS:
            raise PassError(f"calibration method {method!r}: choose from {', '.join(METHODS)}")
        super().__init__(method=None if method == "minmax" else method, per_channel=None if per_channel else "off",
                         reduce_range=None if reduce_range == "auto" else reduce_range, op_types=op_types)
        self.method, self.per_channel, self.reduce_range = method, per_channel, reduce_range
        self.op_types = op_types or OP_TYPES

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
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
            quantize_static(str(pre), str(out), _Reader(ctx.calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=self.op_types, per_channel=self.per_channel,
                            reduce_range=reduce_range, calibrate_method=getattr(CalibrationMethod,
                                                                                METHODS[self.method]))
        pre.unlink(missing_ok=True)
        return PassResult(out, True, {"method": self.method, "per_channel": self.per_channel,
                                      "reduce_range": reduce_range, "reduce_range_why": why,
                                      "calibration_feeds": len(ctx.calibration), "format": "QDQ",
                                      "op_types": self.op_types})
