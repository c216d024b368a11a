from __future__ import annotations

import math

import numpy as np

from torch2ort.parity.compare import (
    ParityReport,
    RunRecord,
    RunResults,
    compare,
    cosine,
    max_abs,
    top1_agreement,
)
from torch2ort.parity.metrics import measure


def _results(ref, got, name="y"):
    return RunResults([RunRecord("torch", "c0", "synthetic", {name: ref}),
                       RunRecord("onnxruntime", "c0", "synthetic", {name: got})])


def test_allclose_semantics_near_zero():
    ref = np.array([0.0, 1e-9, 1000.0], np.float32)
    got = np.array([5e-5, -5e-5, 1000.5], np.float32)  # 1000.5 is within rtol 1e-3 of 1000
    assert compare(_results(ref, got))
    assert not compare(_results(ref, got + np.float32(2e-4)))


def test_measures():
    ref = np.array([[1.0, 0.0], [0.2, 0.9]], np.float32)
    got = np.array([[0.0, 1.0], [0.2, 0.9]], np.float32)
    m = measure(ref, got, 1e-4, 1e-3)
    assert m["max_abs"] == 1.0 and m["n_bad"] == 2 and m["top1"] == 0.5 and m["decision"] == 0.5
    assert math.isclose(m["cosine"], 0.0, abs_tol=1e-7)


def test_nan_where_reference_has_nan_is_equal_but_new_nan_fails():
    ref = np.array([np.nan, 1.0], np.float32)
    assert compare(_results(ref, ref.copy()))
    report = compare(_results(np.array([0.0, 1.0], np.float32), np.array([np.nan, 1.0], np.float32)))
    assert not report and "NaN/Inf" in report.failures()[0]


def test_shape_and_dtype_and_missing_outputs():
    assert "shape" in compare(_results(np.zeros((2, 3)), np.zeros((3, 2)))).failures()[0]
    assert "dtype" in compare(_results(np.zeros(2, np.float32), np.zeros(2, np.float16))).failures()[0]
    res = RunResults([RunRecord("torch", "c0", "s", {"a": np.zeros(1)}),
                      RunRecord("onnxruntime", "c0", "s", {"b": np.zeros(1)})])
    assert "missing ['a']" in compare(res).failures()[0]
    res = RunResults([RunRecord("torch", "c0", "s", {"a": np.zeros(1)}),
                      RunRecord("onnxruntime", "c0", "s", error="boom")])
    assert not compare(res) and "boom" in compare(res).failures()[0]


def test_metric_factories():
    ref = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    got = ref + 0.01
    assert compare(_results(ref, got), metric=cosine(0.99))
    assert not compare(_results(ref, got), metric=cosine(0.999999999))
    assert compare(_results(ref, got), metric=top1_agreement(0.99))
    assert not compare(_results(ref, got), metric=max_abs(1e-3))


def test_results_and_reports_round_trip_through_json():
    ref = np.arange(6, dtype=np.float32).reshape(2, 3)
    res = RunResults([RunRecord("torch", "c0", "s", {"y": ref, "m": np.array([True, False])}),
                      RunRecord("web", "c0", "s", {"y": ref + 1, "m": np.array([True, False])})])
    again = RunResults.from_json(res.to_json())
    assert np.array_equal(again.get("web", "c0").outputs["y"], ref + 1)
    assert again.get("web", "c0").outputs["m"].dtype == np.bool_
    report = compare(again)
    back = ParityReport.from_json(report.to_json())
    assert back == report and not back
    assert back.failures() == report.failures()
