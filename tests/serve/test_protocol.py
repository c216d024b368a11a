"""JSON tensor data (``protocol._from_json``): the type checks that run on every value, on flat and
nested data, and nesting that is ragged or too deep."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import ProtocolError
from torch2ort.serve.options import Caps
from torch2ort.serve.protocol import MAX_NESTING, _from_json


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_numbers_arrive_as_the_declared_type(nested):
    x = np.random.default_rng(0).random((2, 3, 4))
    data = x.tolist() if nested else x.ravel().tolist()
    got = _from_json("x", "FP32", [2, 3, 4], 24, data, Caps())
    assert got.dtype == np.float32 and np.array_equal(got, x.astype(np.float32))
    ints = _from_json("i", "INT64", [2, 2], 4, [[1, -2], [3, 2**40]], Caps())
    assert ints.dtype == np.int64 and ints.tolist() == [[1, -2], [3, 2**40]]
    assert _from_json("b", "BOOL", [3], 3, [True, False, True], Caps()).tolist() == [True, False, True]


@pytest.mark.parametrize(("datatype", "data", "message"), [
    ("FP32", [[1.0, True]], "must be numbers"),          # a bool is not a number here
    ("FP32", [[1.0, "2"]], "must be numbers"),
    ("FP32", [[1.0, None]], "must be numbers"),
    ("FP32", [[1.0, {"a": 1}]], "must be numbers"),
    ("INT64", [[1, 2.5]], "must be integers"),
    ("BOOL", [[True, 1]], "true/false"),
    ("INT8", [[1, 300]], "out of range"),
    ("FP32", [[1.0], [2.0, 3.0]], "needs 2 values"),       # ragged rows: the count tells
    ("FP32", [[[1.0, 3.0]], 2.0], "needs 2 values"),
], ids=lambda v: str(v)[:24])
def test_bad_values_are_one_line_protocol_errors(datatype, data, message):
    with pytest.raises(ProtocolError, match=message) as err:
        _from_json("x", datatype, [2], 2, data, Caps())
    assert "\n" not in str(err.value) and err.value.status == 400


def test_nesting_deeper_than_the_cap_is_refused():
    data: list = [1.0]
    for _ in range(MAX_NESTING + 1):
        data = [data]
    with pytest.raises(ProtocolError, match="nested more than"):
        _from_json("x", "FP32", [1], 1, data, Caps())
