"""The typed, versioned schema of ``evidence.json``: written by ``pipeline``, read by ``report``, importing neither.

Example::

    ev = Evidence.from_json(Path("out/evidence.json").read_text())
    ev.outcome.passed, ev.check.outputs["logits"].value
"""

from __future__ import annotations

from torch2ort.evidence.bench import BenchInfo, BenchRow, BenchRun, GenerationBenchInfo, GenerationSide, RatioInfo
from torch2ort.evidence.parity import (
    CaseInfo,
    ComparisonInfo,
    GateCheckInfo,
    GateVerdictInfo,
    OptimizeInfo,
    OutputSummary,
    ParityInfo,
    VariantRow,
    VerifyInfo,
)
from torch2ort.evidence.record import Record, plain
from torch2ort.evidence.schema import (
    FORMAT,
    Agreement,
    BundleInfo,
    CheckInfo,
    Closure,
    Evidence,
    ExportInfo,
    FootprintInfo,
    GraphInfo,
    MachineInfo,
    ModelInfo,
    Outcome,
    OutputCheck,
    PoolingInfo,
    StageRecord,
    StepDrift,
    TensorInfo,
    VerifyOptimizedInfo,
)

__all__ = [
    "FORMAT", "Agreement", "BenchInfo", "BenchRow", "BenchRun", "BundleInfo", "CaseInfo", "CheckInfo", "Closure",
    "ComparisonInfo", "Evidence", "ExportInfo", "FootprintInfo", "GateCheckInfo", "GateVerdictInfo",
    "GenerationBenchInfo", "GenerationSide", "GraphInfo",
    "MachineInfo", "ModelInfo", "OptimizeInfo", "Outcome", "OutputCheck", "OutputSummary", "ParityInfo",
    "PoolingInfo", "RatioInfo", "Record", "StageRecord", "StepDrift", "TensorInfo", "VariantRow",
    "VerifyInfo", "VerifyOptimizedInfo", "plain",
]
