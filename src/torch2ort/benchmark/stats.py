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


# A ratio is quoted as a result only when its repeats agree: the A/B pairs' ratios within this share of
# their median, and no process whose p90 exceeds its p50 by more than JITTER_LIMIT (a noisy machine).
SPREAD_LIMIT = 0.25
JITTER_LIMIT = 1.5


@dataclass
class Ratio:
    """baseline/candidate latency ratios over repeated A/B pairs: > 1 means the candidate is faster.

    ``stable`` is False when the repeats disagree widely (``why`` says how); such a ratio is reported
    as *unstable*, never quoted as a result.
    """

    median: float
    min: float
    max: float
    values: list[float]
    stable: bool = True
    why: str = ""

    @classmethod
    def of(cls, baseline_ms: list[float], candidate_ms: list[float], jitter: float | None = None) -> Ratio:
        """``jitter``: the worst p90/p50 of the processes behind these figures, when known."""
        if len(baseline_ms) != len(candidate_ms) or not baseline_ms:
            raise ValueError("ratios need one baseline and one candidate figure per repeat")
        values = [b / c for b, c in zip(baseline_ms, candidate_ms)]
        median = float(np.median(values))
        spread = (max(values) - min(values)) / median if median else float("inf")
        why = []
        if spread > SPREAD_LIMIT:
            why.append(f"A/B repeats spread {spread:.0%} of the median (limit {SPREAD_LIMIT:.0%})")
        if jitter is not None and jitter > JITTER_LIMIT:
            why.append(f"p90/p50 up to {jitter:.2f} inside a process (limit {JITTER_LIMIT:g})")
        return cls(median, float(min(values)), float(max(values)), values, not why, "; ".join(why))

    def __str__(self) -> str:
        text = f"{self.median:.2f}× [{self.min:.2f}–{self.max:.2f}]"
        return text if self.stable else f"unstable ({text}: {self.why})"


def ratio_text(r: dict) -> str:
    """A Ratio's dict form as report text: the figure, or *unstable* with the range and the reason."""
    text = f"{r['median']:.2f}× [{r['min']:.2f}–{r['max']:.2f}]"
    return text if r.get("stable", True) else f"unstable ({text}: {r.get('why', '')})"


def jitter(stats: list[dict]) -> float:
    """The worst p90/p50 over LatencyStats dicts."""
    return max((s["p90"] / s["p50"] for s in stats if s.get("p50")), default=1.0)
