"""A real client: tritonclient.http against the server, binary (its default) and JSON tensors."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

from fixtures.families import FAMILIES
from torch2ort.inputs import synthetic_feed
from torch2ort.runtime import Bundle


@pytest.fixture(scope="module")
def client(server):
    return http.InferenceServerClient(server[0])


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"]
    assert client.is_model_ready("mobilenet") and client.is_model_ready("mobilenet", "1")
    m = client.get_model_metadata("attn_mil")
    ins = {t["name"]: t for t in m["inputs"]}
    assert ins["spectrograms"] == {"name": "spectrograms", "datatype": "FP32", "shape": [-1, -1, 3, 32, 32]}
    assert ins["segment_mask"]["datatype"] == "BOOL"
    assert {o["name"] for o in m["outputs"]} >= {"bag_prob", "attn_weights"}
    text = client.get_model_metadata("encoder")
    assert text["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert "embeddings" in {o["name"] for o in text["outputs"]}


def _inputs(feed: dict, binary: bool):
    out = []
    for name, arr in feed.items():
        dt = {"float32": "FP32", "bool": "BOOL", "int64": "INT64"}[str(arr.dtype)]
        i = http.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr, binary_data=binary)
        out.append(i)
    return out


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["mobilenet", "attn_mil"])
def test_infer_equals_bundle_predict(client, bundles, model, binary):
    spec = FAMILIES[model].spec
    feed = synthetic_feed(spec, {"batch": 3}, seed=11)
    bundle = Bundle.load(bundles[model])
    expected = bundle.predict(feed).raw
    names = list(expected)
    result = client.infer(model, _inputs(feed, binary), request_id="req-7",
                          outputs=[http.InferRequestedOutput(n, binary_data=binary) for n in names])
    assert result.get_response()["id"] == "req-7"
    for n in names:
        got = result.as_numpy(n)
        assert got.dtype == expected[n].dtype and got.shape == expected[n].shape
        np.testing.assert_allclose(got, expected[n], rtol=1e-6, atol=1e-6)


def test_text_as_bytes_gives_the_bundles_embeddings(client, bundles):
    texts = np.array(["list files", "show disk usage in a directory"], dtype=object)
    i = http.InferInput("text", [2], "BYTES")
    i.set_data_from_numpy(texts)
    result = client.infer("encoder", [i], outputs=[http.InferRequestedOutput("embeddings")])
    expected = Bundle.load(bundles["encoder"]).predict(list(texts))["embeddings"]
    np.testing.assert_allclose(result.as_numpy("embeddings"), expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-5)


def test_errors_reach_the_client_as_messages(client):
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("nope", _inputs({"image": x}, True))
    with pytest.raises(InferenceServerException, match="dim 2 is 31"):
        client.infer("mobilenet", _inputs({"image": np.zeros((1, 3, 31, 32), np.float32)}, True))
