"""GET /bundles/{name}/…: a bundle's own files (its web page) over the server, cross-origin isolated."""

from __future__ import annotations

import json

import pytest

from fixtures.server import running
from serve.conftest import LABELS
from serve.test_http import call, error_of
from torch2ort.bundle.writer import pack


@pytest.fixture(scope="module")
def web_server(tmp_path_factory, exported, bundles):
    root = tmp_path_factory.mktemp("web-bundle")
    web = pack(exported("mobilenet"), root / "cnn", name="cnn", labels=LABELS, preprocess="imagenet",
               postprocess="softmax-topk", web=True)
    with running([web, bundles["attn_mil"]]) as (url, _):
        yield url, web


def test_the_page_and_its_files_are_served_isolated(web_server):
    url, bundle = web_server
    status, headers, body = call(url, "/bundles/cnn/web/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert body == (bundle / "web" / "index.html").read_bytes()
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    status, headers, body = call(url, "/bundles/cnn/web/ort/ort-wasm-simd-threaded.wasm")
    assert status == 200 and headers["content-type"] == "application/wasm" and body[:4] == b"\0asm"
    status, _, body = call(url, "/bundles/cnn/torch2ort.json")
    assert status == 200 and json.loads(body)["name"] == "cnn"
    status, _, body = call(url, "/bundles/cnn/model.onnx")
    assert status == 200 and body == (bundle / "model.onnx").read_bytes()


def test_the_bare_web_path_redirects_so_relative_urls_work(web_server):
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"http://{web_server[0]}/bundles/cnn/web", timeout=10)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 307 and e.headers["location"] == "/bundles/cnn/web/"


@pytest.mark.parametrize("path, needle", [
    ("/bundles/cnn/secret.txt", "has no file 'secret.txt'"),
    ("/bundles/cnn/web/%2e%2e/%2e%2e/etc/passwd", "has no file"),
    ("/bundles/nope/web/", "unknown model 'nope'"),
    ("/bundles/attn_mil/web/", "has no web page"),
])
def test_only_listed_files_of_known_bundles(web_server, path, needle):
    resp = call(web_server[0], path)
    assert resp[0] == 404 and needle in error_of(resp)
