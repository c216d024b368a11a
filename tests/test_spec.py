from __future__ import annotations

import pytest

from torch2ort.errors import SpecError
from torch2ort.spec import Dim, InputSpec, TensorSpec


def test_parses_the_issue_example():
    spec = InputSpec.from_cli(["spectrograms:batch=1,segments=8,3,224,224:float32",
                               "segment_mask:batch=1,segments=8:bool"])
    x = spec["spectrograms"]
    assert x.dims == (Dim(1, "batch"), Dim(8, "segments"), Dim(3), Dim(224), Dim(224))
    assert x.symbolic_shape() == ["batch", "segments", 3, 224, 224]
    assert spec.dynamic_labels() == {"batch": 1, "segments": 8}
    assert spec["segment_mask"].dtype == "bool"
    assert x.shape_for({"batch": 4}) == (4, 8, 3, 224, 224)


def test_range_and_round_trips():
    t = TensorSpec.from_cli("input_ids:batch=1,seq=16:int64:0..30521")
    assert (t.low, t.high) == (0, 30521)
    assert TensorSpec.from_cli(t.to_cli()) == t
    spec = InputSpec.from_cli([t.to_cli()], "embeddings")
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.sha256() == InputSpec.from_dict(spec.to_dict()).sha256()
    assert spec.sha256() != InputSpec.from_cli(["input_ids:batch=1,seq=17:int64:0..30521"]).sha256()


@pytest.mark.parametrize("text, fragment", [
    ("x:1,3:float64", "unknown dtype 'float64'"),
    ("x:1,three:float32", "not an int or label=int"),
    ("x:1,3", "does not parse"),
    ("x:1,3:float32:5", "LOW..HIGH"),
    ("x:1,3:float32:5..1", "is empty"),
    ("x:1,0:float32", "at least 1"),
    ("x:1-b=2:float32", "identifier"),
    ("9x:1:float32", "must start with a letter"),
])
def test_bad_specs_say_what_is_wrong(text, fragment):
    with pytest.raises(SpecError, match=fragment):
        TensorSpec.from_cli(text)


def test_spec_level_errors():
    with pytest.raises(SpecError, match="given twice"):
        InputSpec.from_cli(["x:1:float32", "x:1:float32"])
    with pytest.raises(SpecError, match="one label, one size"):
        InputSpec.from_cli(["x:batch=1,3:float32", "y:batch=2:float32"])
    with pytest.raises(SpecError, match="no inputs"):
        InputSpec.from_cli([])
    with pytest.raises(SpecError, match="distinct"):
        InputSpec.from_cli(["x:1:float32"], "a,a")


def test_example_tensors_over_the_byte_budget_are_refused_before_allocating():
    from torch2ort.spec import MAX_EXAMPLE_BYTES

    with pytest.raises(SpecError, match=r"would take 45,776.4 GiB .* the limit is 2 GiB"):
        InputSpec.from_cli(["image:batch=100000,3,6400,6400:float32"])
    side = int((MAX_EXAMPLE_BYTES // 4) ** 0.5)
    InputSpec.from_cli([f"x:{side},{side}:float32"])  # just under the budget: accepted
    with pytest.raises(SpecError, match="the limit is 2 GiB"):
        InputSpec.from_cli([f"x:{side},{side}:float32", f"y:{side},{side}:uint8"])  # the sum counts
