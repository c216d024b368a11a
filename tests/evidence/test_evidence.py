"""The evidence schema: typed sections, a JSON round trip, typed gates, and the format check."""

from __future__ import annotations

import json

import pytest

from fixtures.evidence import optimised_evidence, typed_evidence
from torch2ort import evidence as E
from torch2ort.errors import UsageError
from torch2ort.parity.gates import Gate


def test_round_trip_keeps_every_key_typed_or_not():
    ev = typed_evidence()
    text = ev.to_json()
    back = E.Evidence.from_json(text)
    assert back == ev and back.to_json() == text
    assert json.loads(text)["format"] == E.FORMAT == 2
    # keys the report does not read survive in extra, and come back in the same place
    assert back.bench.extra["batch_label"] == "batch" and back.bench.rows[0].extra["size_mb"] == 0.1
    assert json.loads(text)["verify"]["parity"]["comparisons"][0]["n_bad"] == 0
    assert isinstance(back.check.outputs["y"], E.OutputCheck) and back.verify.cases[0].shapes == {"x": [2, 4]}
    assert "bundle" not in json.loads(text)  # a stage that did not run leaves no section


@pytest.mark.parametrize("text, message", [
    (json.dumps({"format": 1, "stages": []}), "evidence format 1; this torch2ort reads format 2"),
    ("{not json", "is not JSON"),
    ("[1, 2]", "should hold a JSON object"),
    (json.dumps({"format": 2, "model": {"source": "m.py:Net"}}), "ModelInfo lacks kind, parameters, parameter_mb"),
    (json.dumps({"format": 2, "check": []}), "CheckInfo should be a JSON object"),
])
def test_other_formats_and_broken_files_are_one_line_errors(text, message):
    with pytest.raises(UsageError, match=message) as err:
        E.Evidence.from_json(text)
    assert "\n" not in err.value.one_line()


def test_optimize_gates_are_typed_and_round_trip():
    ev = optimised_evidence()
    back = E.Evidence.from_json(ev.to_json())
    assert back == ev and back.optimize.gates["y"] == Gate("cosine", 0.99, "y", "embedding or token features")
    stored = json.loads(ev.to_json())["optimize"]["gates"]["y"]
    assert stored == {"gate": "y:cosine>=0.99", "metric": "cosine", "limit": 0.99, "output": "y",
                      "why": "embedding or token features"}


def test_a_format_2_file_with_text_gates_still_loads():
    """Files written before gates were typed hold {"gate": TEXT, "why": ...}; they read back as the same Gate."""
    data = json.loads(optimised_evidence().to_json())
    data["optimize"]["gates"] = {"y": {"gate": "y:cosine>=0.99", "why": "embedding or token features"}}
    assert E.Evidence.from_json(json.dumps(data)).optimize.gates == optimised_evidence().optimize.gates
