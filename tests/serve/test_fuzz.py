"""Hypothesis-generated infer requests: whatever the body, never a 500, and errors are JSON."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torch2ort.serve import Limits, create_app, load_hosts
from torch2ort.serve.protocol import DATATYPES

SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8)
JSONISH = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                       max_leaves=12)
SHAPES = st.lists(st.integers(-2, 40), max_size=5)
TENSOR = st.fixed_dictionaries({
    "name": st.sampled_from(["image", "text", "x", ""]) | st.integers(),
    "shape": SHAPES | JSONISH,
    "datatype": st.sampled_from(list(DATATYPES) + ["FLOAT", "", "fp32"]),
}, optional={"data": st.lists(st.floats(allow_nan=True) | st.integers(-300, 300) | st.booleans() | st.text(max_size=3),
                              max_size=64) | JSONISH,
             "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-5, 100) | JSONISH})})
REQUEST = st.fixed_dictionaries({"inputs": st.lists(TENSOR, max_size=3) | JSONISH}, optional={
    "id": st.text(max_size=5) | st.integers(), "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=10)},
        optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()})}), max_size=2) | JSONISH,
    "parameters": JSONISH})


@pytest.fixture(scope="module")
def client(bundles):
    hosts = load_hosts([str(bundles["mobilenet"]), str(bundles["encoder"])], Limits(max_batch=4, max_delay_ms=1))
    with TestClient(create_app(hosts, max_body_mb=1)) as c:
        yield c


def _check(resp) -> None:
    assert resp.status_code != 500, resp.text
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith("application/json")
        assert isinstance(resp.json()["error"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=REQUEST, model=st.sampled_from(["mobilenet", "encoder", "missing"]))
def test_structured_bodies_never_500(client, body, model):
    _check(client.post(f"/v2/models/{model}/infer", content=json.dumps(body)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=256), header=st.none() | st.integers(-10, 300).map(str)
       | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=4))
def test_raw_bytes_never_500(client, raw, header):
    headers = {} if header is None else {"Inference-Header-Content-Length": header}
    _check(client.post("/v2/models/mobilenet/infer", content=raw, headers=headers))
