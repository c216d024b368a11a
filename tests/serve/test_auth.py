"""Bearer-token auth (--token-file) on both protocols: 401/UNAUTHENTICATED without it, health open."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

from fixtures.families import run_cli
from fixtures.server import free_port, running
from serve.test_http import call
from torch2ort.errors import UsageError
from torch2ort.serve.auth import authorized, read_token

TOKEN = "s3cret-token_42"
GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def guarded(bundles):
    port = free_port()
    with running([bundles["mobilenet"]], token=TOKEN, grpc_port=port) as (url, _):
        yield url, f"127.0.0.1:{port}"


def test_http_refuses_without_the_token_and_accepts_with_it(guarded):
    url = guarded[0]
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert call(url, path)[0] == 200
    body = {"inputs": [{"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}]}
    for path, data in [("/v2", None), ("/metrics", None), ("/v2/models/mobilenet", None), ("/openapi.json", None),
                       ("/v2/models/mobilenet/infer", body), ("/v2/repository/index", b"")]:
        status, headers, _ = call(url, path, data)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
        assert call(url, path, data, {"Authorization": "Bearer wrong"})[0] == 401, path
        assert call(url, path, data, GOOD)[0] == 200, path
    client = http.InferenceServerClient(url)
    with pytest.raises(InferenceServerException, match="bearer token"):
        client.get_model_repository_index()
    assert client.get_model_repository_index(headers=GOOD)[0]["name"] == "mobilenet"


def test_grpc_refuses_without_the_token_and_accepts_with_it(guarded):
    client = tg.InferenceServerClient(guarded[1])
    assert client.is_server_live() and client.is_server_ready()
    x = tg.InferInput("image", [1, 3, 32, 32], "FP32")
    x.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InferenceServerException, match="bearer token") as err:
        client.infer("mobilenet", [x])
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException, match="bearer token"):
        client.get_model_metadata("mobilenet", headers={"authorization": "Bearer nope"})
    result = client.infer("mobilenet", [x], headers={"authorization": f"Bearer {TOKEN}"})
    assert result.as_numpy("probabilities").shape == (1, 7)


def test_token_files_and_headers(tmp_path):
    f = tmp_path / "token"
    f.write_text(f"  {TOKEN}\n")
    assert read_token(f) == TOKEN
    for bad in ("", "two words", "\n"):
        f.write_text(bad)
        with pytest.raises(UsageError, match="one token"):
            read_token(f)
    with pytest.raises(UsageError, match="cannot read"):
        read_token(tmp_path / "missing")
    os.mkfifo(tmp_path / "fifo")  # opened without a writer: refused at once, never waited on
    for path, why in [(tmp_path / "fifo", "not a regular file"), ("/dev/zero", "not a regular file"),
                      (tmp_path, "not a regular file")]:
        with pytest.raises(UsageError, match=why):
            read_token(path)
    f.write_text("x" * 4097)
    with pytest.raises(UsageError, match="at most 4096"):
        read_token(f)
    assert authorized(f"bearer {TOKEN}", TOKEN) and authorized(f"Bearer {TOKEN}".encode(), TOKEN)
    assert not any(authorized(h, TOKEN) for h in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x"))


def test_cli_rejects_a_bad_token_file(bundles, tmp_path, capsys):
    assert run_cli("serve", bundles["mobilenet"], "--token-file", tmp_path / "missing", "--port", free_port()) == 2
    assert "--token-file" in capsys.readouterr().err
    assert run_cli("serve", bundles["mobilenet"], "--grpc-port", "70000") == 2
