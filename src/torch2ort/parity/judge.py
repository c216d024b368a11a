"""The judge: comparisons or one answer against its reference, held to a ``Gate``, into a verdict.

``judge`` holds a variant's per-case comparisons to its gates (the optimiser and verify-optimized);
``judge_answer`` holds one answer of the packed bundle to the gate ``bundle_gate`` picks (the check
stage, from raw text, files or feeds). Swapping a metric touches ``parity.metrics`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torch2ort.parity import metrics
from torch2ort.parity.compare import OutputComparison, ParityReport
from torch2ort.parity.gates import Gate, GateCheck, GateVerdict, _fmt, default_gate

# The bar for an unquantised sentence-transformers bundle against SentenceTransformer.encode.
ST_FP32_COSINE = 0.9999
# An unquantised bundle predicting from a raw file (hf image/audio, audio/signal steps) vs the torch
# pipeline on the same file (issue 17).
RAW_FP32_MAXABS = 1e-4
# An unquantised bundle predicting from a feed: the fp32 export against torch.
FP32_MAXABS = 1e-3


@dataclass
class AnswerCheck:
    """One answer of the bundle against its reference: how they agree, and the gate's verdict."""

    gate: Gate
    value: float
    passed: bool
    reference: str = ""
    reason: str = ""
    agreement: dict[str, Any] = field(default_factory=dict)  # parity.metrics.agreement: max abs, cosine, top-1...

    def to_dict(self) -> dict[str, Any]:
        """The agreement figures and the verdict, flat: the form ``evidence.OutputCheck`` stores."""
        return self.agreement | {"metric": self.gate.metric, "gate": self.gate.text(with_output=False),
                                 "value": self.value, "passed": self.passed, "reference": self.reference,
                                 "reason": self.reason}


def bundle_gate(name: str, ref: np.ndarray, shipped: Gate | None, *, optimised: bool, task: str | None,
                from_file: bool) -> Gate:
    """Near-identity for an unquantised bundle; the shipped variant's gate (or the default) otherwise."""
    if optimised:
        return shipped or default_gate(name, ref)
    if from_file:
        return Gate("maxabs", RAW_FP32_MAXABS, name, "unquantised bundle from the raw file vs the torch pipeline")
    if task == "sentence-embedding":
        return Gate("cosine", ST_FP32_COSINE, name, "unquantised bundle vs SentenceTransformer.encode")
    exact = not np.issubdtype(ref.dtype, np.floating)
    return Gate("maxabs", 0.0 if exact else FP32_MAXABS, name, "unquantised bundle vs PyTorch")


def judge_answer(key: str, got: np.ndarray | None, ref: np.ndarray, gate: Gate, reference: str = "") -> AnswerCheck:
    """How close the bundle's answer ``key`` is to ``ref``, held to ``gate``."""
    if got is None:
        return AnswerCheck(gate, math.nan, False, reference, f"the bundle returned no {key}")
    a = metrics.agreement(ref, got)
    value = metrics.value_of(gate.metric, a)
    ok = gate.holds(value)
    return AnswerCheck(gate, value if value is not None else math.nan, ok, reference,
                       "" if ok else f"{gate.metric} {value} fails {gate.text(with_output=False)}", a)


def judge(report: ParityReport, gates: dict[str, Gate], runner: str | None = None,
          cases: set[str] | None = None) -> GateVerdict:
    """Aggregate the per-case comparisons of each output and hold them against its gate.

    ``cases`` limits the gate to those verification cases (real text for text models); a case outside
    them that fails to run, or changes shape, dtype or finiteness, still fails the verdict.
    """
    verdict = GateVerdict(errors=list(report.errors))
    comps = [c for c in report.comparisons if runner is None or c.runner == runner]
    if cases is not None:
        broken = [c for c in comps if c.case not in cases and (c.shape_got != c.shape_ref or c.dtype_got != c.dtype_ref
                                                                 or c.nonfinite_got > c.nonfinite_ref)]
        verdict.errors += [f"{c.output} on {c.case}: {c.reason}" for c in broken]
        comps = [c for c in comps if c.case in cases]
    for name, gate in gates.items():
        mine = [c for c in comps if c.output == name]
        if not mine:
            verdict.checks.append(GateCheck(name, gate.text(), gate.metric, None, False, gate.why,
                                            "no comparisons (the variant failed to run)"))
            continue
        broken = [c for c in mine if c.shape_got != c.shape_ref or c.dtype_got != c.dtype_ref
                  or c.nonfinite_got > c.nonfinite_ref]
        value = aggregate(gate.metric, mine)
        n, bound, held = _confidence(gate, value, mine)
        check = GateCheck(name, gate.text(), gate.metric, value, held and not broken, gate.why, "", n, bound)
        if broken:
            check.reason = f"{broken[0].case}: {broken[0].reason or 'NaN/Inf, shape or dtype differs'}"
        elif not check.passed and bound is not None:
            check.reason = (f"{gate.metric} {_fmt(value)} over {n} {_unit(gate.metric)}: its 95% lower bound "
                            f"{_fmt(bound)} does not clear {gate.text()}" + _more(gate, value, n))
        elif not check.passed:
            check.reason = f"{gate.metric} {_fmt(value)} fails {gate.text()}"
        verdict.checks.append(check)
    return verdict


def _confidence(gate: Gate, value: float, comps: list[OutputComparison]) -> tuple[int, float | None, bool]:
    """(n judged, lower bound or None, whether the gate holds). Agreement gates hold their 95% lower bound;
    tolerance gates (cosine, maxabs, psnr) hold their worst case over ``n`` cases."""
    if gate.metric not in metrics.AGREEMENT:
        return len({c.case for c in comps}), None, gate.holds(value)
    n = sum(_rows(c) if gate.metric == "top1" else c.n_total for c in comps)
    if math.isnan(value) or n == 0:
        return n, None, False
    agree = round(value * n)
    bound = metrics.wilson_lower(agree, n)
    if gate.limit >= 1:  # no finite sample bounds a proportion at 1: exactness is what was asked
        return n, bound, agree == n
    return n, bound, gate.holds(bound)


def _unit(metric: str) -> str:
    return {"top1": "rows", "entities": "entity groups", "boxes": "detections", "pixels": "pixels"}.get(
        metric, "decisions")


def _more(gate: Gate, value: float, n: int) -> str:
    need = metrics.needed_count(gate.limit)
    if need is not None and n < need and value >= gate.limit:
        return f" (too few to tell: {need} agreeing {_unit(gate.metric)} would be needed)"
    return ""


def aggregate(metric: str, comps: list[OutputComparison]) -> float:
    if metric == "cosine":
        return min(c.cosine for c in comps)
    if metric == "maxabs":
        return max(c.max_abs for c in comps)
    if metric == "psnr":
        return min(c.psnr for c in comps)
    if metric in metrics.ANSWER:  # counts, not shares: sum what agrees over what was judged
        judged = sum(c.n_total for c in comps)
        return sum(c.agree or 0 for c in comps) / judged if judged else math.nan
    field_name = metric if metric in ("top1", "sign") else "decision"
    weights = [(getattr(c, field_name), _rows(c) if metric == "top1" else c.n_total) for c in comps]
    if any(v is None for v, _ in weights):
        return math.nan
    total = sum(w for _, w in weights)
    return sum(v * w for v, w in weights) / total if total else math.nan


def _rows(c: OutputComparison) -> int:
    return int(np.prod(c.shape_ref[:-1])) if c.shape_ref else 1
