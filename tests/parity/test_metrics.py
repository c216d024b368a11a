"""Edge cases of the one metrics module: zero vectors, NaN/Inf, ties at thresholds, empty arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from torch2ort.parity import metrics
from torch2ort.parity.compare import RunRecord, RunResults, allclose, compare
from torch2ort.parity.gates import Gate

F = np.float32


def test_cosine_of_zero_vectors():
    z = np.zeros((2, 4), F)
    assert metrics.min_cosine(z, z) == 1.0                      # two zero vectors agree
    one = np.ones((2, 4), F)
    assert metrics.min_cosine(z, one) == 0.0                    # zero against non-zero does not
    assert metrics.min_cosine(one, z) == 0.0


def test_cosine_is_per_item_along_the_first_axis():
    ref = np.array([[[1, 0], [0, 1]], [[1, 1], [1, 1]]], F)     # two items of 2x2
    got = ref.copy()
    got[0, 1] = [1, 0]                                          # item 0 changes, item 1 does not
    per_item = metrics.cosine_per_item(ref, got)
    assert per_item.shape == (2,) and per_item[1] == pytest.approx(1.0)
    assert per_item[0] == pytest.approx(0.5)                    # [1,0,0,1]·[1,0,1,0] / (√2·√2)
    assert metrics.min_cosine(np.array([3, 4], F), np.array([3, 4], F)) == pytest.approx(1.0)  # 1-D: one item


def test_cosine_with_nan_and_inf():
    ref = np.array([[np.nan, 1.0], [1.0, 2.0]], F)
    assert metrics.min_cosine(ref, ref.copy()) == pytest.approx(1.0)   # NaN in the same place agrees
    got = np.array([[0.0, 1.0], [1.0, 2.0]], F)
    assert math.isnan(metrics.min_cosine(ref, got))                  # NaN in one only: undefined, fails
    assert not metrics.holds("cosine", metrics.min_cosine(ref, got), 0.0)
    inf = np.array([[np.inf, 1.0]], F)
    assert metrics.min_cosine(inf, inf.copy()) == pytest.approx(1.0)
    assert math.isnan(metrics.min_cosine(inf, -inf))
    assert metrics.min_cosine(np.zeros((0, 3), F), np.zeros((0, 3), F)) == 1.0


def test_diff_and_max_abs_nonfinite_rule():
    ref = np.array([np.nan, np.inf, 1.0], F)
    assert metrics.max_abs(ref, ref.copy()) == 0.0
    assert metrics.max_abs(ref, np.array([0.0, np.inf, 1.0], F)) == math.inf
    assert metrics.max_abs(np.zeros(0, F), np.zeros(0, F)) == 0.0


def test_decision_tie_at_the_threshold_is_positive_everywhere():
    ref = np.array([[0.5, 0.2]], F)
    assert metrics.decision(ref, np.array([[0.5, 0.2]], F)) == 1.0
    assert metrics.decision(ref, np.array([[0.4999, 0.2]], F)) == 0.5   # 0.5 is positive, 0.4999 is not
    logits = np.array([[1.5, -0.2]], F)                                    # outside [0, 1]: logits, threshold 0
    assert metrics.decision_threshold([logits]) == 0.0 and metrics.decision_threshold([ref]) == 0.5
    assert metrics.decision(logits, np.array([[0.1, -0.3]], F)) == 1.0
    assert metrics.decision(logits, np.array([[0.0, 0.0]], F)) == 0.5     # 0 itself is positive on logits
    assert metrics.decision(np.arange(3), np.arange(3)) is None            # integers: not defined


def test_top1_ties_go_to_the_lowest_index():
    ref = np.array([[1.0, 1.0, 0.0]], F)
    assert metrics.top1(ref, np.array([[1.0, 0.9, 0.0]], F)) == 1.0
    assert metrics.top1(ref, np.array([[0.9, 1.0, 0.0]], F)) == 0.0
    assert metrics.top1(np.array([1.0, 2.0], F), np.array([1.0, 2.0], F)) is None  # 1-D: not defined
    assert metrics.top1(np.zeros((2, 1), F), np.zeros((2, 1), F)) is None          # one class


def test_holds_ties_at_the_limit_and_nan():
    assert metrics.holds("cosine", 0.99, 0.99) and metrics.holds("maxabs", 1e-3, 1e-3)
    assert not metrics.holds("cosine", math.nan, 0.0) and not metrics.holds("top1", None, 0.0)
    assert Gate("decision", 0.99).holds(0.99) and not Gate("maxabs", 0.0).holds(math.nan)


def test_allclose_counts_tie_at_the_tolerance_passes():
    ref = np.array([0.0, 10.0], np.float64)
    got = ref + np.array([1e-4, 1e-4 + 1e-3 * 10.0])            # exactly atol, exactly atol + rtol*|ref|
    n_bad, n, ratio = metrics.allclose_counts(ref, got, 1e-4, 1e-3)
    assert (n_bad, n) == (0, 2) and ratio == pytest.approx(1.0)


def test_compare_judges_with_the_metrics_own_tolerance():
    """allclose(1e-2) must judge at 1e-2, and say so, not at the default 1e-4."""
    ref, got = np.zeros(3, F), np.full(3, 5e-3, F)
    results = RunResults([RunRecord("torch", "c", "s", {"y": ref}), RunRecord("onnxruntime", "c", "s", {"y": got})])
    loose = compare(results, metric=allclose(1e-2, 0.0))
    assert loose and loose.atol == 1e-2 and loose.comparisons[0].n_bad == 0
    strict = compare(results, metric=allclose(1e-3, 0.0))
    assert not strict and "atol 0.001" in strict.failures()[0] and strict.comparisons[0].n_bad == 3


def test_agreement_and_gates_read_the_same_numbers():
    rng = np.random.default_rng(0)
    ref = rng.random((6, 5)).astype(F)
    got = ref + rng.normal(0, 0.05, ref.shape).astype(F)
    a = metrics.agreement(ref, got)
    m = metrics.measure(ref, got, 1e-4, 1e-3)
    assert a["min_cosine"] == m["cosine"] and a["top1"] == m["top1"] and a["decision"] == m["decision"]
    assert a["max_abs"] == m["max_abs"]
    assert metrics.value_of("cosine", a) == a["min_cosine"]
    assert metrics.agreement(ref, got[:3])["max_abs"] is None
