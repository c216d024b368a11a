"""Real servers on 127.0.0.1 over real bundles: uvicorn in a thread (``server``), for tritonclient and
HTTP tests, and the `torch2ort serve` process itself (``serve_process``), for the hardening probes
and the schemathesis run."""

from __future__ import annotations

from pathlib import Path

import pytest

import torch2ort
from fixtures.server import running
from fixtures.tokenizer import tiny_tokenizer
from serve.probes import Target
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
        # the tiny encoder has 64 positions: the tokenizer truncates there (its default, 256, would
        # send longer texts to a Gather out of range)
        "encoder": pack(exported("encoder"), root / "encoder", name="encoder", postprocess="embeddings",
                        preprocess=[{"op": "tokenize", "max_length": 64, "outputs": ["input_ids", "attention_mask"]}],
                        tokenizer=tok),
    }


@pytest.fixture(scope="module")
def server(bundles):
    with running(list(bundles.values()), Limits(max_batch=8, max_delay_ms=2, queue=64)) as (url, hosts):
        yield url, hosts


@pytest.fixture(scope="module")
def serve_process(bundles, tmp_path_factory):
    """`torch2ort serve` (the CLI, in its own process) over mobilenet and encoder, 2 s read timeout."""
    src = str(Path(torch2ort.__file__).resolve().parents[1])
    t = Target(src, [str(bundles["mobilenet"]), str(bundles["encoder"])],
               ["--read-timeout-s", "2", "--max-batch", "4", "--max-delay-ms", "5"])
    t.start(tmp_path_factory.mktemp("serve-log") / "server.log")
    yield t
    t.stop()
    assert t.proc.returncode == 0, t.log.read_text()[-2000:]
