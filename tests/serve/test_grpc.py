"""The gRPC endpoint: tritonclient.grpc (raw tensors) and the plain generated stub (typed contents)
against a server sharing its hosts with HTTP, matching Bundle.predict."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg
from tritonclient.utils import InferenceServerException

from fixtures.families import FAMILIES
from fixtures.server import free_port, running
from serve.test_http import call, tensor
from serve.test_prometheus import scrape, value
from torch2ort.inputs import synthetic_feed
from torch2ort.runtime import Bundle
from torch2ort.serve import Limits
from torch2ort.serve.metrics import Breakdown


@pytest.fixture(scope="module")
def both(bundles):
    port = free_port()
    with running(list(bundles.values()), Limits(max_batch=4, max_delay_ms=2), grpc_port=port) as (url, hosts):
        yield url, f"127.0.0.1:{port}", hosts


@pytest.fixture(scope="module")
def client(both):
    return tg.InferenceServerClient(both[1])


def test_health_metadata_and_index(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mobilenet") and client.is_model_ready("mobilenet", "1")
    assert "binary_tensor_data" in client.get_server_metadata().extensions
    meta = client.get_model_metadata("attn_mil")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs][1] == ("segment_mask", "BOOL", [-1, -1])
    assert client.get_model_metadata("encoder").inputs[0].datatype == "BYTES"
    assert [m.name for m in client.get_model_repository_index().models] == ["attn_mil", "encoder", "mobilenet"]


@pytest.mark.parametrize("model", ["mobilenet", "attn_mil"])
def test_raw_tensors_match_bundle_predict(client, bundles, model):
    feed = synthetic_feed(FAMILIES[model].spec, {"batch": 3}, seed=5)
    expected = Bundle.load(bundles[model]).predict(feed).raw
    inputs = []
    for name, arr in feed.items():
        i = tg.InferInput(name, list(arr.shape), {"float32": "FP32", "bool": "BOOL"}[str(arr.dtype)])
        i.set_data_from_numpy(arr)
        inputs.append(i)
    result = client.infer(model, inputs, request_id="g-1", outputs=[tg.InferRequestedOutput(n) for n in expected])
    assert result.get_response().id == "g-1"
    for name, want in expected.items():
        got = result.as_numpy(name)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_texts_as_bytes(client, bundles):
    texts = np.array([b"list files", b"show disk usage"], dtype=object)
    i = tg.InferInput("text", [2], "BYTES")
    i.set_data_from_numpy(texts)
    got = client.infer("encoder", [i], outputs=[tg.InferRequestedOutput("embeddings")]).as_numpy("embeddings")
    expected = Bundle.load(bundles["encoder"]).predict(["list files", "show disk usage"])["embeddings"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_plain_typed_contents_round_trip(both, bundles):
    x = np.random.default_rng(2).random((2, 3, 32, 32), dtype=np.float32)
    predicted = Bundle.load(bundles["mobilenet"]).predict({"image": x})
    expected = predicted.raw | {k: v for k, v in predicted.items() if isinstance(v, np.ndarray)}
    request = pb.ModelInferRequest(model_name="mobilenet", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="image", datatype="FP32", shape=list(x.shape), contents=pb.InferTensorContents(fp32_contents=x.ravel()))])
    with grpc.insecure_channel(both[1]) as channel:
        response = pbg.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert not response.raw_output_contents
    assert {o.name for o in response.outputs} == set(expected) == {"output_0", "probabilities"}
    for out in response.outputs:
        got = np.array(out.contents.fp32_contents, np.float32).reshape(list(out.shape))
        np.testing.assert_allclose(got, expected[out.name], rtol=1e-6, atol=1e-6)


def test_errors_carry_codes_and_messages(client):
    bad = tg.InferInput("image", [1, 3, 31, 32], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 31, 32), np.float32))
    with pytest.raises(InferenceServerException, match="dim 2 is 31") as err:
        client.infer("mobilenet", [bad])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="unknown model") as err:
        client.infer("nope", [bad])
    assert err.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="UNIMPLEMENTED|nimplemented"):
        client.get_inference_statistics("mobilenet")


def test_grpc_shares_hosts_and_metrics_with_http(both, client):
    url, _, hosts = both
    before = scrape(url)
    x = tg.InferInput("image", [1, 3, 32, 32], "FP32")
    x.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    client.infer("mobilenet", [x])
    after = scrape(url)
    labels = {"model": "mobilenet", "protocol": "grpc"}
    assert value(after, "torch2ort_requests_total", **labels) - value(before, "torch2ort_requests_total", **labels) == 1
    assert hosts["mobilenet"].scheduler.inside == 0


def test_the_cli_serves_grpc_with_a_token_and_stops_cleanly(bundles, tmp_path):
    """`torch2ort serve … --grpc-port P --token-file F` in its own process; SIGTERM exits 0."""
    from pathlib import Path

    import torch2ort
    from serve.probes import Target, wait_ready

    token = tmp_path / "token"
    token.write_text("tok-123\n")
    port = free_port()
    t = Target(str(Path(torch2ort.__file__).resolve().parents[1]), [str(bundles["mobilenet"])],
               ["--grpc-port", str(port), "--token-file", str(token)])
    t.start(tmp_path / "server.log")
    try:
        wait_ready(t.url, t.proc)
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready()
        x = tg.InferInput("image", [2, 3, 32, 32], "FP32")
        x.set_data_from_numpy(np.ones((2, 3, 32, 32), np.float32))
        with pytest.raises(InferenceServerException, match="bearer token"):
            client.infer("mobilenet", [x])
        got = client.infer("mobilenet", [x], headers={"authorization": "Bearer tok-123"}).as_numpy("probabilities")
        assert got.shape == (2, 7)
    finally:
        t.stop()
    assert t.proc.returncode == 0, t.log.read_text()[-2000:]


def test_the_stages_account_for_a_request_and_bound_what_another_language_could_save(both, client):
    """The serving path's stages (read, decode, encode) plus queue, compute and postprocess sum to no more
    than the request's total, per protocol, and the breakdown says what a Go or C++ server could save."""
    url = both[0]
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    before = call(url, "/metrics")[2].decode()
    for _ in range(5):
        assert call(url, "/v2/models/mobilenet/infer", {"inputs": [tensor("image", x)]})[0] == 200
    middle = call(url, "/metrics")[2].decode()
    inp = tg.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    for _ in range(3):
        client.infer("mobilenet", [inp])
    after = call(url, "/metrics")[2].decode()

    rest = Breakdown.between(before, middle, "mobilenet", "http")
    over_grpc = Breakdown.between(middle, after, "mobilenet", "grpc")
    assert (rest.requests, over_grpc.requests) == (5, 3)
    for b in (rest, over_grpc):
        parts = (b.decode, b.queue, b.compute, b.postprocess, b.encode)
        assert all(p > 0 for p in parts) and b.compute > 0
        assert b.other >= 0, b  # the stages never claim more than the request took
        assert 0 < b.serving < b.total
        line = b.go_would_save()
        assert f"at most {b.serving:.3f} ms per request" in line and f"{b.compute:.3f} ms" in line
    assert rest.read > 0 and over_grpc.read == 0  # a gRPC message is read before its model is known
    with pytest.raises(ValueError, match="no grpc requests"):
        Breakdown.between(after, after, "mobilenet", "grpc")
