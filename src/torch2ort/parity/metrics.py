"""The one definition of every number that judges an output against its reference.

Every tool that says "these outputs agree" uses these functions: ``verify`` (through
``compare.measure``), the optimisation gates, and the migrate check of the packed bundle.

Definitions (``ref`` is the reference, usually PyTorch; all arithmetic in float64):

    diff      |got - ref| elementwise; a NaN or ±Inf in the same place in both counts as 0, a
              non-finite value in one only counts as +Inf
    max_abs   max of diff (0 for empty arrays)
    allclose  diff <= atol + rtol * |ref| for every element (numpy.allclose semantics)
    cosine    per item along the first (batch) axis, every other axis flattened; a 1-D output is one
              item. Two zero vectors agree (1.0); a zero vector against a non-zero one is 0.0. An item
              whose non-finite values differ from the reference's is NaN, so the minimum is NaN and
              every gate on it fails.
    top1      share of rows (every axis but the last) whose argmax over the last axis agrees; ties go
              to the lowest index, in both. Defined for floating outputs with >= 2 classes and ndim >= 2.
    decision  share of values on the same side of the threshold, where a value equal to it counts as
              positive (>=). The threshold is 0.5 for probabilities and 0 for logits (sigmoid's 0.5);
              ``compare`` picks it per output from every case's reference values (0.5 when all lie in
              [0, 1]) unless the model declares it. Defined for floating outputs.
    sign      share of values with the same sign, a value of 0 counting as positive: ``decision`` with
              the threshold fixed at 0 whatever the values' range, for independent binary logits
              (sigmoid(0) = 0.5) such as per-segment logits. Defined for floating outputs.
    psnr      10·log10(peak² / mean squared error) in dB, peak = the reference's max - min (1 when that
              is 0); identical outputs give +Inf.

A metric's limit is held with ``holds(metric, value, limit)``: ``>=`` for cosine, top1, decision, sign and psnr,
``<=`` for maxabs; NaN or None never holds.
"""

from __future__ import annotations

import math

import numpy as np

DECISION_THRESHOLD = 0.5      # on probabilities
LOGIT_DECISION_THRESHOLD = 0.0  # the same decision on logits: sigmoid(0) = 0.5
# metric name -> the direction its limit is held in
DIRECTIONS = {"cosine": ">=", "top1": ">=", "decision": ">=", "sign": ">=", "maxabs": "<=", "psnr": ">=",
              "entities": ">=", "boxes": ">=", "pixels": ">="}  # the last three judge answers: parity.answers


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def diff(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """|got - ref| with the non-finite rule above."""
    r, g = _f64(ref), _f64(got)
    same_nonfinite = (np.isnan(r) & np.isnan(g)) | (np.isinf(r) & (r == g))
    with np.errstate(invalid="ignore"):
        d = np.abs(g - r)
    d = np.where(same_nonfinite, 0.0, d)
    return np.where(np.isnan(d), np.inf, d)


def max_abs(ref: np.ndarray, got: np.ndarray) -> float:
    d = diff(ref, got)
    return float(d.max()) if d.size else 0.0


def allclose_counts(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> tuple[int, int, float]:
    """(elements out of tolerance, elements, worst diff / allowed) under numpy.allclose semantics."""
    r = _f64(ref)
    d = diff(ref, got)
    allowed = atol + rtol * np.abs(np.where(np.isfinite(r), r, 0.0))
    if not d.size:
        return 0, 0, 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d == 0, 0.0, d / allowed)
    return int((d > allowed).sum()), int(d.size), float(ratio.max())


def cosine_per_item(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Cosine similarity of each item (first axis), the other axes flattened."""
    r, g = _f64(ref), _f64(got)
    if r.ndim < 2:
        r, g = r.reshape(1, -1), g.reshape(1, -1)
    r, g = r.reshape(r.shape[0], -1), g.reshape(g.shape[0], -1)
    if r.shape[1] == 0:
        return np.ones(r.shape[0])
    finite_r, finite_g = np.isfinite(r), np.isfinite(g)
    pattern_differs = (finite_r != finite_g).any(1) | (~finite_r & (r != g) & ~(np.isnan(r) & np.isnan(g))).any(1)
    r, g = np.where(finite_r, r, 0.0), np.where(finite_g, g, 0.0)
    nr, ng = np.linalg.norm(r, axis=1), np.linalg.norm(g, axis=1)
    both_zero, one_zero = (nr == 0) & (ng == 0), (nr == 0) ^ (ng == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.clip((r * g).sum(1) / (nr * ng), -1.0, 1.0)
    cos = np.where(both_zero, 1.0, np.where(one_zero, 0.0, cos))
    return np.where(pattern_differs, np.nan, cos)


def min_cosine(ref: np.ndarray, got: np.ndarray) -> float:
    if np.asarray(ref).size == 0:
        return 1.0
    return float(cosine_per_item(ref, got).min())  # NaN propagates: a differing non-finite item fails


def top1(ref: np.ndarray, got: np.ndarray) -> float | None:
    """Share of rows whose argmax agrees, or None where top-1 is not defined for this output."""
    if np.asarray(ref).ndim < 2 or ref.shape[-1] < 2 or not np.issubdtype(ref.dtype, np.floating):
        return None
    r = _f64(ref).reshape(-1, ref.shape[-1])
    g = _f64(got).reshape(-1, ref.shape[-1])
    return float((r.argmax(-1) == g.argmax(-1)).mean()) if r.shape[0] else None


def decision_threshold(refs: list[np.ndarray]) -> float:
    """0.5 when every reference value (over all cases) is a probability, else 0 (logits)."""
    probabilities = all(np.all((_f64(r) >= 0) & (_f64(r) <= 1)) for r in refs)
    return DECISION_THRESHOLD if probabilities else LOGIT_DECISION_THRESHOLD


def decision(ref: np.ndarray, got: np.ndarray, threshold: float | None = None) -> float | None:
    """Share of values on the same side of ``threshold`` (default: read from ``ref``), or None when not floating."""
    if not np.issubdtype(np.asarray(ref).dtype, np.floating) or not np.asarray(ref).size:
        return None
    threshold = decision_threshold([ref]) if threshold is None else threshold
    r, g = _f64(ref), _f64(got)
    return float(((r >= threshold) == (g >= threshold)).mean())


def sign(ref: np.ndarray, got: np.ndarray) -> float | None:
    """Share of values whose sign agrees (0 counts as positive), or None when not floating: a logit's decision."""
    return decision(ref, got, LOGIT_DECISION_THRESHOLD)


def psnr(ref: np.ndarray, got: np.ndarray) -> float | None:
    """Peak signal-to-noise ratio in dB with the reference's own range as the peak; None when not floating."""
    if not np.issubdtype(np.asarray(ref).dtype, np.floating) or not np.asarray(ref).size:
        return None
    r, g = _f64(ref), _f64(got)
    if not (np.isfinite(r).all() and np.isfinite(g).all()):
        return math.nan
    mse = float(np.mean((g - r) ** 2))
    peak = float(r.max() - r.min()) or 1.0
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


# Agreement metrics are proportions of rows or decisions that agree: a point estimate over a few dozen
# of them cannot resolve a limit like 0.99 (one flip moves it by more than the margin, issue 24), so a
# gate on them holds its one-sided 95% lower bound, not the estimate.
AGREEMENT = ("top1", "decision", "sign", "entities", "boxes", "pixels")
ANSWER = ("entities", "boxes", "pixels")  # agreement of post-processed answers, counted in parity.answers
Z_95 = 1.6448536269514722  # one-sided 95%: the normal quantile at 0.95


def wilson_lower(agree: int, n: int, z: float = Z_95) -> float:
    """One-sided lower confidence bound of a proportion ``agree / n`` (Wilson score interval).

    >>> round(wilson_lower(90, 90), 4), round(wilson_lower(270, 270), 4)
    (0.9708, 0.9901)
    """
    if n <= 0:
        return math.nan
    p = agree / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def needed_count(limit: float, z: float = Z_95) -> int | None:
    """How many agreeing rows/decisions, with no disagreement, lift the lower bound to ``limit``; None when
    no count can (a limit of 1: then the estimate itself must be 1)."""
    if limit >= 1:
        return None
    if limit <= 0:
        return 1
    # wilson_lower(n, n) = n / (n + z²) >= limit  <=>  n >= limit z² / (1 - limit)
    return max(1, math.ceil(limit * z * z / (1 - limit) - 1e-9))


def holds(metric: str, value: float | None, limit: float) -> bool:
    """Whether ``value`` meets ``limit`` in the metric's direction; NaN and None never do."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value >= limit if DIRECTIONS[metric] == ">=" else value <= limit


def measure(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float,
            threshold: float | None = None) -> dict:
    """Every per-output number ``compare`` records, by the definitions above."""
    r, g = _f64(ref), _f64(got)
    d = diff(ref, got)
    n_bad, n_total, ratio = allclose_counts(ref, got, atol, rtol)
    significant = np.abs(np.where(np.isfinite(r), r, 0.0)) > atol
    out = {
        "nonfinite_ref": int((~np.isfinite(r)).sum()),
        "nonfinite_got": int((~np.isfinite(g)).sum()),
        "max_abs": float(d.max()) if d.size else 0.0,
        "mean_abs": float(d.mean()) if d.size else 0.0,
        "max_rel": float((d[significant] / np.abs(r[significant])).max()) if significant.any() else 0.0,
        "tol_ratio": ratio,
        "n_bad": n_bad,
        "n_total": n_total,
        "cosine": min_cosine(ref, got),
    }
    for name, value in (("top1", top1(ref, got)), ("decision", decision(ref, got, threshold)),
                        ("sign", sign(ref, got)), ("psnr", psnr(ref, got))):
        if value is not None:
            out[name] = value
    return out


def agreement(ref: np.ndarray, got: np.ndarray, threshold: float | None = None) -> dict:
    """The summary the migrate check and the pooling choice record: max abs, cosine, top-1, decision."""
    if np.shape(ref) != np.shape(got):
        return {"shape_ref": list(np.shape(ref)), "shape_got": list(np.shape(got)), "max_abs": None,
                "min_cosine": None, "top1": None, "decision": None, "sign": None}
    cos = cosine_per_item(ref, got)
    return {"shape": list(np.shape(ref)), "max_abs": max_abs(ref, got), "min_cosine": min_cosine(ref, got),
            "mean_cosine": float(np.mean(cos)) if cos.size else 1.0, "top1": top1(ref, got),
            "decision": decision(ref, got, threshold), "sign": sign(ref, got), "psnr": psnr(ref, got)}


def value_of(metric: str, summary: dict) -> float | None:
    """The number a gate on ``metric`` reads from an ``agreement`` summary."""
    key = {"cosine": "min_cosine", "maxabs": "max_abs", "top1": "top1", "decision": "decision", "sign": "sign",
           "psnr": "psnr"}[metric]
    return summary.get(key)
