"""Every error path over plain HTTP, limits (body size, bounded queue), and dynamic batching."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from fixtures.families import FAMILIES
from fixtures.server import running
from torch2ort.inputs import synthetic_feed
from torch2ort.runtime import Bundle
from torch2ort.serve import Limits


def call(url: str, path: str, body: bytes | dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(f"http://{url}{path}", data=data, headers=headers or {},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def error_of(resp) -> str:
    status, headers, body = resp
    assert headers["content-type"].startswith("application/json"), headers
    return json.loads(body)["error"]


def tensor(name: str, arr: np.ndarray, dt: str = "FP32") -> dict:
    return {"name": name, "shape": list(arr.shape), "datatype": dt, "data": arr.ravel().tolist()}


IMAGE = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not valid JSON"),
    ({"inputs": []}, "non-empty 'inputs'"),
    ({"inputs": [tensor("picture", IMAGE)]}, "missing ['image']"),
    ({"inputs": [tensor("image", IMAGE, "INT64")]}, "must be integers"),
    ({"inputs": [tensor("image", IMAGE) | {"datatype": "FLOAT"}]}, "datatype 'FLOAT'"),
    ({"inputs": [tensor("image", IMAGE) | {"shape": [1, 3, 32]}]}, "needs 96 values"),
    ({"inputs": [tensor("image", IMAGE[:, :, :16])]}, "dim 2 is 16"),
    ({"inputs": [tensor("image", IMAGE) | {"shape": [1, 3, -32, 32]}]}, "non-negative"),
    ({"inputs": [tensor("image", IMAGE)], "outputs": [{"name": "nope"}]}, "unknown outputs"),
    ({"inputs": [tensor("image", IMAGE) | {"data": "x"}]}, "needs 3072 values"),
    ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, "BYTES"),
    ({"inputs": [tensor("image", IMAGE)], "id": 5}, "'id' must be a string"),
])
def test_bad_requests_are_400_with_a_message(server, body, needle):
    resp = call(server[0], "/v2/models/mobilenet/infer", body)
    assert resp[0] == 400 and needle in error_of(resp)


def test_binary_header_errors_are_400(server):
    head = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                   "parameters": {"binary_data_size": IMAGE.nbytes}}]}).encode()
    ok = call(server[0], "/v2/models/mobilenet/infer", head + IMAGE.tobytes(),
              {"Inference-Header-Content-Length": str(len(head))})
    assert ok[0] == 200 and ok[1]["content-type"] == "application/json"  # outputs were not asked for as binary
    for headers, body, needle in [
        ({"Inference-Header-Content-Length": "abc"}, head + IMAGE.tobytes(), "must be an integer"),
        ({"Inference-Header-Content-Length": str(len(head) + 10**6)}, head, "but the body has"),
        ({"Inference-Header-Content-Length": str(len(head))}, head + IMAGE.tobytes()[:-4], "does not fit"),
        ({"Inference-Header-Content-Length": str(len(head))}, head + IMAGE.tobytes() + b"xx", "belong to no input"),
    ]:
        resp = call(server[0], "/v2/models/mobilenet/infer", body, headers)
        assert resp[0] == 400 and needle in error_of(resp)


def test_binary_outputs_and_json_outputs(server):
    body = {"id": "x1", "inputs": [tensor("image", IMAGE)],
            "outputs": [{"name": "output_0", "parameters": {"binary_data": True}}, {"name": "probabilities"}]}
    status, headers, raw = call(server[0], "/v2/models/mobilenet/infer", body)
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    n = int(headers["Inference-Header-Content-Length"])
    doc = json.loads(raw[:n])
    assert doc["id"] == "x1" and doc["model_name"] == "mobilenet"
    logits_entry, probs_entry = doc["outputs"]
    logits = np.frombuffer(raw[n:], np.float32).reshape(logits_entry["shape"])
    assert logits_entry["parameters"]["binary_data_size"] == logits.nbytes
    probs = np.array(probs_entry["data"], np.float32).reshape(probs_entry["shape"])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probs, rtol=1e-5)


def test_unknown_models_versions_and_routes_are_404(server):
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/mobilenet/versions/2",
                 "/v2/nothing-here"):
        resp = call(server[0], path)
        assert resp[0] == 404 and error_of(resp)
    resp = call(server[0], "/v2/models/nope/infer", {"inputs": [tensor("image", IMAGE)]})
    assert resp[0] == 404 and "served:" in error_of(resp)


def test_health_and_openapi(server):
    assert call(server[0], "/v2/health/live")[0] == 200
    assert json.loads(call(server[0], "/v2/health/ready")[2]) == {"ready": True}
    spec = json.loads(call(server[0], "/openapi.json")[2])
    assert "/v2/models/{name}/infer" in spec["paths"] and "InferRequest" in spec["components"]["schemas"]


def test_body_too_large_is_413(bundles):
    with running([bundles["mobilenet"]], max_body_mb=0.01) as (url, _):
        resp = call(url, "/v2/models/mobilenet/infer", {"inputs": [tensor("image", IMAGE)]})
        assert resp[0] == 413 and "over the limit" in error_of(resp)


def test_full_queue_is_503_and_frees_up(bundles):
    # One slot; the first request sits in the batcher for up to 1.5 s, so the second finds the queue full.
    with running([bundles["mobilenet"]], Limits(max_batch=8, max_delay_ms=1500, queue=1)) as (url, hosts):
        body = {"inputs": [tensor("image", IMAGE)]}
        first: list = []
        t = threading.Thread(target=lambda: first.append(call(url, "/v2/models/mobilenet/infer", body)))
        t.start()
        import time

        deadline = time.time() + 10
        while hosts["mobilenet"].scheduler.inside == 0 and time.time() < deadline:
            time.sleep(0.01)
        resp = call(url, "/v2/models/mobilenet/infer", body)
        assert resp[0] == 503 and "overloaded" in error_of(resp)
        t.join(10)
        assert first[0][0] == 200
        assert call(url, "/v2/models/mobilenet/infer", body)[0] == 200


def test_dynamic_batching_merges_rows_and_splits_outputs(bundles):
    spec = FAMILIES["attn_mil"].spec
    bundle = Bundle.load(bundles["attn_mil"])
    feeds = [synthetic_feed(spec, {"batch": 1 + i % 3, "segments": 8 if i % 4 else 4}, seed=i) for i in range(12)]
    with running([bundles["attn_mil"]], Limits(max_batch=6, max_delay_ms=300, queue=64)) as (url, hosts):
        results: dict[int, tuple] = {}

        def send(i: int) -> None:
            body = {"inputs": [tensor("spectrograms", feeds[i]["spectrograms"]),
                               tensor("segment_mask", feeds[i]["segment_mask"], "BOOL") |
                               {"data": feeds[i]["segment_mask"].ravel().tolist()}]}
            results[i] = call(url, "/v2/models/attn_mil/infer", body)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(feeds))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        bad = {"inputs": [tensor("spectrograms", np.zeros((1, 8, 3, 31, 32), np.float32)),
                          tensor("segment_mask", np.ones((1, 8), bool), "BOOL")]}
        assert call(url, "/v2/models/attn_mil/infer", bad)[0] == 400  # refused before queueing
        stats = hosts["attn_mil"].scheduler.stats
    assert stats["rows"] == sum(f["spectrograms"].shape[0] for f in feeds)
    assert stats["batches"] < len(feeds)  # rows were merged
    for i, f in enumerate(feeds):
        status, _, raw = results[i]
        assert status == 200
        outs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in json.loads(raw)["outputs"]}
        expected = bundle.predict(f).raw
        for name, value in expected.items():
            np.testing.assert_allclose(outs[name], value, rtol=1e-5, atol=1e-6)
