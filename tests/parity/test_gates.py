from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import UsageError
from torch2ort.parity.compare import RunRecord, RunResults, compare
from torch2ort.parity.gates import Gate, default_gate, parse_gate, resolve_gates
from torch2ort.parity.judge import judge


def test_parse_gates():
    g = parse_gate("logits:top1>=0.99")
    assert (g.output, g.metric, g.limit, g.op) == ("logits", "top1", 0.99, ">=")
    assert parse_gate("maxabs <= 1e-3").limit == 1e-3
    for bad in ("cosine>0.9", "cosine<=0.99", "accuracy>=0.9", "top1>=x"):
        with pytest.raises(UsageError):
            parse_gate(bad)


@pytest.mark.parametrize("name, ref, metric", [
    ("sentence_embedding", np.random.default_rng(0).normal(size=(4, 16)), "cosine"),
    ("output_0", np.eye(4, 8) / 1.0 + 0.0, "cosine"),  # unit-norm rows read as embeddings
    ("logits", np.random.default_rng(1).normal(size=(4, 7)), "top1"),
    ("probs", np.full((4, 5), 0.2), "top1"),  # softmax rows
    ("output_0", np.random.default_rng(2).uniform(size=(4, 12)), "decision"),  # multi-label sigmoid
    ("last_hidden_state", np.random.default_rng(3).normal(size=(2, 5, 8)), "cosine"),
    ("image", np.random.default_rng(4).normal(size=(1, 3, 8, 8)), "maxabs"),
    ("value", np.random.default_rng(5).normal(size=(4,)), "maxabs"),
    ("bag_logit", np.random.default_rng(6).uniform(size=(4,)), "decision"),  # named a logit: decision at 0
    ("ids", np.arange(6).reshape(2, 3), "maxabs"),
])
def test_default_gate_by_output_kind(name, ref, metric):
    assert default_gate(name, ref.astype(np.float32) if ref.dtype == np.float64 else ref).metric == metric


def _report(ref: np.ndarray, got: np.ndarray):
    results = RunResults([RunRecord("torch", "c0", "synthetic", {"y": ref}),
                          RunRecord("v", "c0", "synthetic", {"y": got})])
    return compare(results, "torch")


def test_judge_aggregates_and_refuses():
    ref = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    got = ref.copy()
    got[0] = got[0][::-1] * 3  # one row in ten flips its argmax (probably): top-1 agreement 0.9
    gates = resolve_gates([], {"y": ref})
    verdict = judge(_report(ref, got), gates, "v")
    assert gates["y"].metric == "top1"
    expected = float((ref.argmax(1) == got.argmax(1)).mean())
    assert verdict.checks[0].value == pytest.approx(expected)
    assert bool(verdict) is (expected >= 0.99)
    assert judge(_report(ref, ref), resolve_gates(["y:maxabs<=0"] and [parse_gate("y:maxabs<=0")], {"y": ref}), "v")
    exact = resolve_gates([parse_gate("maxabs<=0")], {"y": ref})
    assert not judge(_report(ref, got), exact, "v")


def test_nan_fails_any_gate():
    ref = np.ones((2, 4), np.float32)
    got = ref.copy()
    got[1, 1] = np.nan
    verdict = judge(_report(ref, got), resolve_gates([parse_gate("cosine>=0.5")], {"y": ref}), "v")
    assert not verdict and "NaN" in verdict.failures()[0]


def test_gate_names_must_exist():
    with pytest.raises(UsageError, match="no output named 'z'"):
        resolve_gates([parse_gate("z:cosine>=0.9")], {"y": np.ones((1, 2))})


def test_default_gates_are_read_from_every_case():
    """A seed-001-shaped AttnMIL: the segments axis changes size between cases, so it is not a class axis."""
    rng = np.random.default_rng(0)
    seg_logits = [rng.normal(size=(2, s)).astype(np.float32) for s in (8, 1, 3)]
    bag_logit = [rng.normal(size=(2, 1)).astype(np.float32) for _ in range(3)]
    bag_prob = [rng.uniform(size=(2, 1)).astype(np.float32) for _ in range(3)]
    gates = resolve_gates([], {"output_0": bag_prob, "output_2": seg_logits, "output_3": bag_logit},
                          roles={"output_3": "sigmoid"})
    assert gates["output_0"].metric == "decision" and "probabilities" in gates["output_0"].why
    assert gates["output_2"].metric == "maxabs"  # unbounded, no role: regression-like, never top1
    assert gates["output_3"].metric == "decision" and "sigmoid postprocess" in gates["output_3"].why
    # one case outside [0, 1] makes the output logits, not probabilities
    mixed = [rng.uniform(size=(2, 1)).astype(np.float32), np.array([[2.5], [-1.0]], np.float32)]
    assert default_gate("output_0", mixed).metric == "maxabs"


def test_a_gate_that_cannot_apply_is_a_usage_error():
    refs = {"score": [np.zeros((4,), np.float32)], "ids": [np.arange(4)]}
    with pytest.raises(UsageError, match="top1 needs class scores"):
        resolve_gates([parse_gate("score:top1>=0.99")], refs)
    with pytest.raises(UsageError, match="needs floating-point outputs"):
        resolve_gates([parse_gate("ids:decision>=0.99")], refs)


def test_decision_on_logits_uses_threshold_zero():
    ref = np.array([[-2.0, 0.5, 3.0]], np.float32)
    got = np.array([[-1.0, 0.2, 2.0]], np.float32)  # same signs: every decision agrees at 0
    report = _report(ref, got)
    assert report.comparisons[0].decision_threshold == 0.0 and report.comparisons[0].decision == 1.0
    verdict = judge(report, {"y": parse_gate("y:decision>=0.5")})  # 3 decisions bound it at 0.526
    assert verdict and verdict.checks[0].value == 1.0 and verdict.checks[0].n == 3
    few = judge(report, {"y": parse_gate("y:decision>=0.99")}).checks[0]  # ... but cannot show 0.99
    assert not few.passed and "268 agreeing decisions would be needed" in few.reason


def test_psnr_gate_for_image_outputs():
    rng = np.random.default_rng(1)
    ref = rng.uniform(size=(1, 3, 16, 16)).astype(np.float32)
    got = (ref + rng.normal(0, 1e-3, ref.shape)).astype(np.float32)   # about 60 dB
    verdict = judge(_report(ref, got), {"y": parse_gate("y:psnr>=40")})
    assert verdict and 55 < verdict.checks[0].value < 65
    noisy = (ref + rng.normal(0, 0.05, ref.shape)).astype(np.float32)  # about 26 dB
    assert not judge(_report(ref, noisy), {"y": parse_gate("psnr>=40")})
    assert judge(_report(ref, ref.copy()), {"y": parse_gate("psnr>=40")}).checks[0].value == float("inf")


@pytest.mark.parametrize("text", ["maxabs<=1e999", "maxabs<=-1", "cosine>=1.5", "top1>=2", "decision>=-0.1",
                                  "psnr>=1e400", "logits:top1>=1e-999999"])
def test_a_gate_that_nan_or_inf_could_satisfy_is_refused(text):
    # maxabs<=1e999 is maxabs<=inf: every variant would pass it (issue 27)
    if text.endswith("1e-999999"):  # underflows to 0.0: a real, if useless, limit
        assert parse_gate(text).limit == 0.0
        return
    with pytest.raises(UsageError, match="limit must be a finite number"):
        parse_gate(text)


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), "0.9", None])
def test_gates_built_in_python_are_checked_too(limit):
    with pytest.raises(UsageError):
        Gate("cosine", limit)


def test_zero_shot_logits_get_top1_over_the_candidate_labels():
    """A zero_shot postprocess declares its logits: top-1 zero-shot agreement, though the label axis changes
    length between cases and the name says logits (which alone would give a decision gate)."""
    from torch2ort.parity.gates import roles_from_postprocess

    refs = [np.random.default_rng(i).normal(size=(2, n)).astype(np.float32) * 5 for i, n in enumerate((2, 3, 8))]
    roles = roles_from_postprocess([{"op": "zero_shot", "output": "logits_per_image", "name": "zero_shot"}])
    assert roles == {"logits_per_image": "zero_shot"}
    assert default_gate("logits_per_image", refs).metric == "decision"
    gate = resolve_gates([], {"logits_per_image": refs}, roles)["logits_per_image"]
    assert (gate.metric, gate.limit) == ("top1", 0.99) and "zero-shot" in gate.why
    with pytest.raises(UsageError, match="top1 needs class scores"):  # one candidate label: no top-1 to agree on
        resolve_gates([], {"logits_per_image": [*refs, refs[0][:, :1]]}, roles)


def test_sign_judges_logits_at_zero_whatever_their_range():
    """Logits that all happen to lie in [0, 1] read as probabilities to ``decision`` (threshold 0.5); ``sign``
    says they are logits, so the decision is at 0 (sigmoid's 0.5), and it counts decisions like ``decision``."""
    ref = np.array([[0.2, 0.7, 0.9, 0.4]], np.float32)
    got = np.array([[0.6, 0.3, 0.8, -0.1]], np.float32)  # two cross 0.5; only the last changes sign
    c = _report(ref, got).comparisons[0]
    assert c.decision_threshold == 0.5 and c.decision == 0.5 and c.sign == 0.75
    verdict = judge(_report(ref, got), {"y": parse_gate("y:sign>=0.5")})
    check = verdict.checks[0]
    assert check.metric == "sign" and check.value == 0.75 and check.n == 4 and check.bound < 0.75
    assert "sign 0.75 (≥" in verdict.summary()
    with pytest.raises(UsageError, match="needs floating-point outputs"):
        resolve_gates([parse_gate("ids:sign>=0.99")], {"ids": [np.arange(4)]})
    with pytest.raises(UsageError, match="limit must be a finite number"):
        parse_gate("sign>=1.5")
