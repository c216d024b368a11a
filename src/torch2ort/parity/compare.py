"""Run first, compare later: ``run(runners, cases) -> RunResults``, ``compare(...) -> ParityReport``.

Both are plain dataclasses that round-trip through JSON, so outputs produced on another machine
(a GPU box, a browser) can be loaded and judged by the same code. The numbers are defined once, in
``parity.metrics``; the verdict for each output comes from a factory:
``allclose(atol, rtol)`` (the verify default), ``cosine(min)``, ``top1_agreement(min)``,
``decision_agreement(min)``, ``sign_agreement(min)``, ``max_abs(max)``, ``psnr(min_db)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from torch2ort.arrays import array_from_json, array_to_json
from torch2ort.errors import RunnerError
from torch2ort.inputs import InputCase
from torch2ort.parity import metrics
from torch2ort.runners.base import Runner

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


# --- running ------------------------------------------------------------------------------

@dataclass
class RunRecord:
    """One runner on one case: its outputs, or the error it raised."""

    runner: str
    case: str
    kind: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    sizes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outputs"] = {k: array_to_json(v) for k, v in self.outputs.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        return cls(**{**d, "outputs": {k: array_from_json(v) for k, v in d.get("outputs", {}).items()}})


@dataclass
class RunResults:
    records: list[RunRecord] = field(default_factory=list)

    def runners(self) -> list[str]:
        return list(dict.fromkeys(r.runner for r in self.records))

    def get(self, runner: str, case: str) -> RunRecord | None:
        return next((r for r in self.records if r.runner == runner and r.case == case), None)

    def extend(self, other: RunResults) -> None:
        self.records += other.records

    def to_json(self) -> str:
        return json.dumps({"records": [r.to_dict() for r in self.records]})

    @classmethod
    def from_json(cls, text: str) -> RunResults:
        return cls([RunRecord.from_dict(r) for r in json.loads(text)["records"]])


def run(runners: Iterable[Runner], cases: list[InputCase]) -> RunResults:
    """Run every case on every runner; a backend error is recorded, not raised."""
    results = RunResults()
    for runner in runners:
        with runner:
            for case in cases:
                rec = RunRecord(runner.name, case.name, case.kind, sizes=dict(case.sizes))
                try:
                    rec.outputs = runner.infer(case.feed)
                    rec.seconds = runner.last_seconds
                except RunnerError as exc:
                    rec.error = str(exc)
                results.records.append(rec)
    return results


# --- comparing ------------------------------------------------------------------------------

@dataclass
class OutputComparison:
    """Everything measured for one output of one case, reference vs candidate."""

    case: str
    kind: str
    output: str
    runner: str
    shape_ref: list[int]
    shape_got: list[int] | None
    dtype_ref: str
    dtype_got: str | None
    nonfinite_ref: int = 0
    nonfinite_got: int = 0
    max_abs: float = math.nan
    max_rel: float = math.nan
    mean_abs: float = math.nan
    cosine: float = math.nan
    tol_ratio: float = math.nan  # max |got-ref| / (atol + rtol*|ref|); > 1 fails allclose
    n_bad: int = 0
    n_total: int = 0
    top1: float | None = None
    decision: float | None = None
    decision_threshold: float | None = None
    sign: float | None = None
    psnr: float | None = None
    agree: int | None = None     # answer gates (parity.answers): units that agree, of ``n_total`` judged
    passed: bool = False
    reason: str = ""


Metric = Callable[[OutputComparison], tuple[bool, str]]


def allclose(atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> Metric:
    """numpy.allclose semantics: |got-ref| <= atol + rtol*|ref|, so near-zero values cannot explode."""

    def metric(c: OutputComparison) -> tuple[bool, str]:
        if c.n_bad == 0:
            return True, ""
        return False, (f"max abs err {c.max_abs:.3g} (atol {atol:g}, rtol {rtol:g}); "
                       f"{c.n_bad}/{c.n_total} elements out of tolerance")

    metric.atol, metric.rtol = atol, rtol  # type: ignore[attr-defined]
    return metric


def _threshold(field_name: str, label: str, metric_name: str) -> Callable[[float], Metric]:
    def factory(limit: float) -> Metric:
        def metric(c: OutputComparison) -> tuple[bool, str]:
            value = getattr(c, field_name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return False, f"{label} is not defined for this output"
            ok = metrics.holds(metric_name, value, limit)
            return ok, "" if ok else f"{label} {value:.6g} not {metrics.DIRECTIONS[metric_name]} {limit:g}"

        return metric

    return factory


cosine = _threshold("cosine", "min cosine", "cosine")
top1_agreement = _threshold("top1", "top-1 agreement", "top1")
decision_agreement = _threshold("decision", "decision agreement", "decision")
sign_agreement = _threshold("sign", "sign agreement", "sign")
psnr = _threshold("psnr", "min PSNR (dB)", "psnr")
max_abs = _threshold("max_abs", "max abs err", "maxabs")


@dataclass
class ParityReport:
    """The verdict: per output and case comparisons, plus case-level and graph-level problems."""

    reference: str
    atol: float
    rtol: float
    comparisons: list[OutputComparison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    graph_issues: list[str] = field(default_factory=list)
    metric: str = "allclose"

    def __bool__(self) -> bool:
        return not self.errors and not self.graph_issues and all(c.passed for c in self.comparisons)

    @property
    def passed(self) -> bool:
        return bool(self)

    def failures(self) -> list[str]:
        lines = list(self.graph_issues) + list(self.errors)
        worst: dict[tuple[str, str], list[OutputComparison]] = {}
        for c in self.comparisons:
            if not c.passed:
                worst.setdefault((c.runner, c.output), []).append(c)
        for (runner, output), bad in worst.items():
            total = sum(1 for c in self.comparisons if c.runner == runner and c.output == output)
            w = max(bad, key=lambda c: -1 if math.isnan(c.tol_ratio) else c.tol_ratio)
            lines.append(f"output {output!r} ({runner}) failed on {len(bad)}/{total} cases; "
                         f"worst {w.case}: {w.reason}")
        return lines

    def per_output(self) -> list[dict]:
        """The worst figures for each output over all cases."""
        rows: dict[tuple[str, str], dict] = {}
        for c in self.comparisons:
            row = rows.setdefault((c.runner, c.output), {
                "runner": c.runner, "output": c.output, "cases": 0, "failed": 0, "max_abs": 0.0,
                "max_rel": 0.0, "mean_abs": 0.0, "min_cosine": 1.0, "top1": None, "decision": None, "sign": None,
                "psnr": None, "nonfinite": 0, "shape": c.shape_ref, "dtype": c.dtype_ref})
            row["cases"] += 1
            row["failed"] += 0 if c.passed else 1
            for key, value, pick in (("max_abs", c.max_abs, max), ("max_rel", c.max_rel, max),
                                     ("mean_abs", c.mean_abs, max), ("min_cosine", c.cosine, min),
                                     ("top1", c.top1, min), ("decision", c.decision, min),
                                     ("sign", c.sign, min), ("psnr", c.psnr, min)):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                row[key] = value if row[key] is None else pick(row[key], value)
            row["nonfinite"] = max(row["nonfinite"], c.nonfinite_got)
        return list(rows.values())

    def max_abs(self) -> float:
        vals = [c.max_abs for c in self.comparisons if not math.isnan(c.max_abs)]
        return max(vals) if vals else math.nan

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reference": self.reference, "atol": self.atol, "rtol": self.rtol,
                "metric": self.metric, "errors": self.errors, "graph_issues": self.graph_issues,
                "per_output": self.per_output(), "comparisons": [asdict(c) for c in self.comparisons]}

    @classmethod
    def from_dict(cls, d: dict) -> ParityReport:
        return cls(d["reference"], d["atol"], d["rtol"], [OutputComparison(**c) for c in d["comparisons"]],
                   list(d.get("errors", [])), list(d.get("graph_issues", [])), d.get("metric", "allclose"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> ParityReport:
        return cls.from_dict(json.loads(text))


def compare(results: RunResults, reference: str = "torch", atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL, metric: Metric | None = None, metric_name: str = "allclose",
            decision_thresholds: dict[str, float] | None = None) -> ParityReport:
    """Judge every non-reference runner against ``reference``, case by case and output by output.

    An ``allclose(atol, rtol)`` metric brings its own tolerances: they, not the defaults, count the
    elements out of tolerance and are what the report prints. Each output's decision threshold is
    the declared one, else read from the reference over every case (``metrics.decision_threshold``).
    """
    metric = metric or allclose(atol, rtol)
    atol, rtol = getattr(metric, "atol", atol), getattr(metric, "rtol", rtol)
    report = ParityReport(reference, atol, rtol, metric=metric_name)
    refs = [r for r in results.records if r.runner == reference]
    thresholds = dict(decision_thresholds or {})
    for out_name in {k for r in refs for k in r.outputs}:
        values = [r.outputs[out_name] for r in refs if out_name in r.outputs]
        if out_name not in thresholds and all(np.issubdtype(v.dtype, np.floating) for v in values):
            thresholds[out_name] = metrics.decision_threshold(values)
    if not refs:
        report.errors.append(f"no results from the reference runner {reference!r}")
    for ref in refs:
        if ref.error:
            report.errors.append(f"reference {reference} failed on {ref.case}: {ref.error}")
            continue
        for name in results.runners():
            if name == reference:
                continue
            got = results.get(name, ref.case)
            if got is None:
                report.errors.append(f"{name} has no result for {ref.case}")
                continue
            if got.error:
                report.errors.append(f"{name} failed on {ref.case}: {got.error}")
                continue
            missing = [o for o in ref.outputs if o not in got.outputs]
            extra = [o for o in got.outputs if o not in ref.outputs]
            if missing or extra:
                report.errors.append(f"{name} on {ref.case}: output names differ from {reference}: "
                                     f"missing {missing}, unexpected {extra}")
            for out_name, r in ref.outputs.items():
                if out_name in got.outputs:
                    report.comparisons.append(_compare_one(ref, got, out_name, r, got.outputs[out_name],
                                                           atol, rtol, metric, thresholds.get(out_name)))
    return report


def _compare_one(ref: RunRecord, got: RunRecord, name: str, r: np.ndarray, g: np.ndarray,
                 atol: float, rtol: float, metric: Metric, threshold: float | None) -> OutputComparison:
    c = OutputComparison(ref.case, ref.kind, name, got.runner, list(r.shape), list(g.shape),
                         str(r.dtype), str(g.dtype), decision_threshold=threshold)
    if r.shape != g.shape:
        c.reason = f"shape {list(g.shape)} != {list(r.shape)}"
        return c
    if r.dtype != g.dtype:
        c.reason = f"dtype {g.dtype} != {r.dtype}"
        return c
    for key, value in metrics.measure(r, g, atol, rtol, threshold).items():
        setattr(c, key, value)
    if c.nonfinite_got > c.nonfinite_ref:
        c.reason = f"{c.nonfinite_got} NaN/Inf values where the reference has {c.nonfinite_ref}"
        return c
    c.passed, c.reason = metric(c)
    return c
