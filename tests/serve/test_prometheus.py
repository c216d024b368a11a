"""Prometheus /metrics (parsed with prometheus_client's own parser) and the repository index."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.http as http
from prometheus_client.parser import text_string_to_metric_families

from serve.test_http import call, tensor


def scrape(url: str) -> dict[tuple, float]:
    status, headers, body = call(url, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), headers
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_and_histograms_move_with_requests(server):
    url = server[0]
    before = scrape(url)
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    for _ in range(3):
        assert call(url, "/v2/models/mobilenet/infer", {"inputs": [tensor("image", x)]})[0] == 200
    assert call(url, "/v2/models/mobilenet/infer", {"inputs": [tensor("image", x[:, :, :31])]})[0] == 400
    assert call(url, "/v2/models/nope/infer", {"inputs": [tensor("image", x)]})[0] == 404
    after = scrape(url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("torch2ort_requests_total", model="mobilenet", protocol="http") == 4
    assert delta("torch2ort_request_failures_total", model="mobilenet", protocol="http", code="400") == 1
    assert delta("torch2ort_request_seconds_count", model="mobilenet", protocol="http") == 4
    assert delta("torch2ort_compute_seconds_count", model="mobilenet") == 3  # the 400 never ran
    assert delta("torch2ort_queue_seconds_count", model="mobilenet") == 3
    assert delta("torch2ort_batch_size_sum", model="mobilenet") == 9       # 3 rows each
    assert delta("torch2ort_compute_seconds_sum", model="mobilenet") > 0
    assert not any(dict(labels).get("model") == "nope" for _, labels in after)
    assert value(after, "torch2ort_queue_depth", model="mobilenet") == 0
    assert value(after, "torch2ort_queue_depth", model="encoder") == 0


def test_repository_index_lists_the_models(server):
    url = server[0]
    index = http.InferenceServerClient(url).get_model_repository_index()
    assert [m["name"] for m in index] == ["attn_mil", "encoder", "mobilenet"]
    assert all(m["state"] == "READY" and m["version"] == "1" for m in index)
    status, _, body = call(url, "/v2/repository/index", {"ready": True})
    assert status == 200 and len(json.loads(body)) == 3
    status, _, body = call(url, "/v2/repository/index", {"ready": "yes"})
    assert status == 400 and "ready" in json.loads(body)["error"]
    assert call(url, "/v2/repository/index", b"[1")[0] == 400
