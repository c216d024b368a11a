"""Evidence sections for verification, gates and optimisation: the typed file form of their reports.

``VerifyInfo.from_dict(VerifyResult.to_dict())`` and ``OptimizeInfo.from_dict(...)`` take the
producers' dicts; the fields here are the ones the report reads, the rest stays in ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch2ort.evidence.record import Record
from torch2ort.parity.gates import Gate, GateCheck


@dataclass
class CaseInfo(Record):
    name: str
    kind: str                       # synthetic | sample | sweep
    shapes: dict[str, list[int]]


@dataclass
class OutputSummary(Record):
    """The worst figures of one output over all cases (``ParityReport.per_output``)."""

    output: str
    dtype: str
    cases: int
    failed: int
    max_abs: float
    max_rel: float
    min_cosine: float
    top1: float | None = None


@dataclass
class ComparisonInfo(Record):
    """One output of one case, reference vs candidate (``OutputComparison``)."""

    case: str
    kind: str
    output: str
    passed: bool
    max_abs: float = float("nan")
    cosine: float | None = None


@dataclass
class ParityInfo(Record):
    passed: bool
    atol: float
    rtol: float
    per_output: list[OutputSummary] = field(default_factory=list)
    comparisons: list[ComparisonInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    graph_issues: list[str] = field(default_factory=list)


@dataclass
class VerifyInfo(Record):
    passed: bool
    cases: list[CaseInfo]
    parity: ParityInfo
    seconds: float = 0.0
    runtimes: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] | None = None  # a decoder: greedy tokens vs transformers (parity/generation.py)


@dataclass
class GateCheckInfo(Record, GateCheck):
    """``parity.gates.GateCheck`` as it is stored: the same fields, read back typed."""


@dataclass
class GateVerdictInfo(Record):
    passed: bool
    checks: list[GateCheckInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class VariantRow(Record):
    """One row of ``OptimizeResult.table()``."""

    variant: str
    gate: str                       # pass | FAIL
    metric: str
    chosen: bool
    pareto: bool
    why: str = ""
    p50_ms: float | None = None
    p99_ms: float | None = None
    vs_torch: float | None = None
    vs_fp32: float | None = None
    size_mb: float | None = None
    stable: bool = True             # False when the timing repeats disagree: the speed-ups are not quoted
    confirmed: bool | None = None   # the chosen variant held its gates on fresh cases (None: not confirmed)


@dataclass
class OptimizeInfo(Record):
    gates: dict[str, Gate]          # output -> the gate each variant was held to (parity.gates.Gate)
    cases: int
    calibration: str
    table: list[VariantRow]
    chosen: str | None = None
    message: str = ""
    gate_cases: dict[str, Any] = field(default_factory=dict)  # the cases the gates were judged on, and why
    confirm_cases: dict[str, Any] = field(default_factory=dict)  # the fresh cases the choice was confirmed on
