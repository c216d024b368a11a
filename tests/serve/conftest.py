"""A real server on 127.0.0.1 (uvicorn in a thread) over real bundles, for tritonclient and HTTP tests."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest

from fixtures.tokenizer import tiny_tokenizer
from torch2ort.bundle import pack
from torch2ort.serve import Limits, create_app, load_hosts

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(bundles: list, limits: Limits | None = None, max_body_mb: float = 64.0):
    """Serve ``bundles``; yields (url, hosts). Stops the server (gracefully) on exit."""
    import uvicorn

    hosts = load_hosts([str(b) for b in bundles], limits or Limits())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(hosts, max_body_mb), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}", hosts
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, exported):
    root = tmp_path_factory.mktemp("serve-bundles")
    tok = root / "tokenizer.json"
    tiny_tokenizer(tok)
    return {
        "mobilenet": pack(exported("mobilenet"), root / "mobilenet", name="mobilenet", labels=LABELS,
                          preprocess="image", postprocess="softmax-topk"),
        "attn_mil": pack(exported("attn_mil"), root / "mil", name="attn_mil"),
        "encoder": pack(exported("encoder"), root / "encoder", name="encoder", preprocess="text",
                        postprocess="embeddings", tokenizer=tok),
    }


@pytest.fixture(scope="module")
def server(bundles):
    with running(list(bundles.values()), Limits(max_batch=8, max_delay_ms=2, queue=64)) as (url, hosts):
        yield url, hosts
