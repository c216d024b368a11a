"""The one Gate type (its JSON form) and the judge of the bundle's answers (``parity.judge``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from torch2ort.errors import UsageError
from torch2ort.parity.gates import Gate, default_gate, parse_gate
from torch2ort.parity.judge import RAW_FP32_MAXABS, ST_FP32_COSINE, bundle_gate, judge_answer


def test_a_gate_round_trips_through_json_exactly():
    g = Gate("cosine", 0.9999995, "sentence_embedding", "asked for with --accept")
    back = Gate.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back == g  # the text form would round 0.9999995 to 1 (``:g``): the typed fields keep it
    assert g.to_dict()["gate"] == "sentence_embedding:cosine>=1" and g.text(with_output=False) == "cosine>=1"


def test_a_gate_reads_the_older_text_form():
    """evidence.json files written before the typed form hold ``{"gate": TEXT, "why": ...}``."""
    assert Gate.from_dict({"gate": "logits:top1>=0.99", "why": "class scores"}) == Gate("top1", 0.99, "logits",
                                                                                      "class scores")


@pytest.mark.parametrize("bad", [{"metric": "accuracy", "limit": 0.9}, {"metric": "cosine", "limit": "high"},
                                 {"why": "no gate"}, ["cosine", 0.99], {"gate": "cosine>0.9"}])
def test_a_malformed_gate_is_refused(bad):
    with pytest.raises(UsageError):
        Gate.from_dict(bad)


def test_named_gives_a_global_gate_to_one_output():
    assert parse_gate("cosine>=0.98").named("emb") == Gate("cosine", 0.98, "emb", "asked for with --accept")


def test_bundle_gate_near_identity_unquantised_and_the_shipped_gate_otherwise():
    ref = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    shipped = Gate("top1", 0.97, "logits", "class scores")
    assert bundle_gate("logits", ref, shipped, optimised=True, task=None, from_file=False) is shipped
    assert bundle_gate("logits", ref, None, optimised=True, task=None, from_file=False) == default_gate("logits", ref)
    raw = bundle_gate("logits", ref, shipped, optimised=False, task=None, from_file=True)
    assert (raw.metric, raw.limit) == ("maxabs", RAW_FP32_MAXABS)
    st = bundle_gate("sentence_embedding", ref, None, optimised=False, task="sentence-embedding", from_file=False)
    assert (st.metric, st.limit) == ("cosine", ST_FP32_COSINE)
    ids = bundle_gate("ids", np.arange(4), None, optimised=False, task=None, from_file=False)
    assert (ids.metric, ids.limit) == ("maxabs", 0.0)


def test_judge_answer_passes_fails_and_says_why():
    ref = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    gate = Gate("maxabs", 1e-3, "y")
    ok = judge_answer("raw:y", ref + 1e-5, ref, gate, "torch")
    assert ok.passed and ok.value < 1e-3 and ok.reason == "" and ok.agreement["min_cosine"] > 0.999
    assert ok.to_dict()["gate"] == "maxabs<=0.001" and ok.to_dict()["reference"] == "torch"
    far = judge_answer("raw:y", ref + 0.5, ref, gate)
    assert not far.passed and "fails maxabs<=0.001" in far.reason
    missing = judge_answer("raw:y", None, ref, gate)
    assert not missing.passed and math.isnan(missing.value) and missing.reason == "the bundle returned no raw:y"
    shape = judge_answer("raw:y", ref[:2], ref, gate)
    assert not shape.passed  # no agreement figures for a different shape: the gate cannot hold
