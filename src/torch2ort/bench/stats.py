"""Latency statistics and A/B ratios with their spread. Pure numpy, no timing here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class LatencyStats:
    """Milliseconds per call over the timed iterations, and items per second at this batch size."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float
    throughput: float

    @classmethod
    def from_samples(cls, ms: list[float] | np.ndarray, batch: int) -> LatencyStats:
        a = np.asarray(ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(int(a.size), float(a.mean()), float(p50), float(p90), float(p99), float(a.min()),
                   float(a.max()), float(batch * 1000.0 / a.mean()))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Ratio:
    """baseline/candidate latency ratios over repeated A/B pairs: > 1 means the candidate is faster."""

    median: float
    min: float
    max: float
    values: list[float]

    @classmethod
    def of(cls, baseline_ms: list[float], candidate_ms: list[float]) -> Ratio:
        if len(baseline_ms) != len(candidate_ms) or not baseline_ms:
            raise ValueError("ratios need one baseline and one candidate figure per repeat")
        values = [b / c for b, c in zip(baseline_ms, candidate_ms)]
        return cls(float(np.median(values)), float(min(values)), float(max(values)), values)

    def __str__(self) -> str:
        return f"{self.median:.2f}× [{self.min:.2f}–{self.max:.2f}]"
