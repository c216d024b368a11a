"""ONNX Runtime's own graph optimiser, run once offline and saved, so load time does not pay for it.

Levels: ``basic`` (constant folding, redundant-node removal: portable to any execution provider)
and ``extended`` (fusions such as Conv+Add+Relu, GELU, LayerNorm; they use ORT's contrib ops and
assume the CPU/CUDA providers). ``all`` (layout) is refused: its NCHWc layout transforms are chosen
for the SIMD width of the CPU that runs the optimiser (AVX2 vs AVX-512), so a file saved here could
be slower, or refuse to load, on another machine. ORT applies that level at load time anyway.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.optimization.passes.base import Pass, PassContext, PassError, PassResult

LEVELS = ("basic", "extended")


class GraphOptimize(Pass):
    name = "graph"

    def __init__(self, level: str = "extended") -> None:
        if level not in LEVELS:
            raise PassError(f"graph optimisation level {level!r}: choose from {', '.join(LEVELS)} "
                            "('all' adds machine-specific layout changes and is applied at load time)")
        super().__init__(level=None if level == "extended" else level)
        self.level = level

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if self.level == "basic"
                                         else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        opts.optimized_model_filepath = str(out)
        opts.log_severity_level = 3
        # Weights stay inline unless the model is too big for one file.
        if src.stat().st_size + sum(p.stat().st_size for p in src.parent.glob(src.name + ".data")) > 1_800_000_000:
            opts.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                          out.name + ".data")
        providers = [p for p in ctx.providers if p == "CPUExecutionProvider"] or ["CPUExecutionProvider"]
        ort.InferenceSession(str(src), opts, providers=providers)
        return PassResult(out, False, {"level": self.level})
