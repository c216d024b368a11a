"""A real server on 127.0.0.1 (uvicorn in a thread) over real bundles, for tritonclient and HTTP tests."""

from __future__ import annotations

import pytest

from fixtures.server import running
from fixtures.tokenizer import tiny_tokenizer
from torch2ort.bundle.writer import pack
from torch2ort.serve import Limits

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


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
