"""Real servers on 127.0.0.1 over real bundles: uvicorn in a thread (``server``), for tritonclient and
HTTP tests, and the `torch2ort serve` process itself (``serve_process``), for the hardening probes
and the schemathesis run."""

from __future__ import annotations

import os
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


def lookup_model(path: Path, rows: int = 10) -> Path:
    """y = table[x + 0]: the Add hides the table's bound from the graph reader (runtime/graph_bounds.py), so
    only ONNX Runtime's run can refuse an index past the table, as it does any input it cannot take."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(rows * 4, dtype=np.float32).reshape(rows, 4), "table")
    zero = numpy_helper.from_array(np.zeros((), np.int64), "zero")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "zero"], ["shifted"]), helper.make_node("Gather", ["table", "shifted"], ["y"])],
        "lookup", [helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 4])], [table, zero])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def lookup_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookup")
    return pack(lookup_model(root / "lookup.onnx"), root / "lookup", name="lookup")


@pytest.fixture(scope="module")
def server(bundles):
    with running(list(bundles.values()), Limits(max_batch=8, max_delay_ms=2, queue=64)) as (url, hosts):
        yield url, hosts


@pytest.fixture(scope="module")
def serve_process(bundles, lookup_bundle, tmp_path_factory):
    """`torch2ort serve` (the CLI, in its own process) over mobilenet and encoder, 2 s read timeout,
    HTTP and gRPC; probes that need other options start a sibling with the lookup bundle at hand.
    ``TORCH2ORT_PROBE_SRC=/old/src`` serves another source tree (to see the probes fail on old code)."""
    src = os.environ.get("TORCH2ORT_PROBE_SRC") or str(Path(torch2ort.__file__).resolve().parents[1])
    t = Target(src, [str(bundles["mobilenet"]), str(bundles["encoder"])],
               ["--read-timeout-s", "2", "--max-batch", "4", "--max-delay-ms", "5"], str(lookup_bundle), grpc=True)
    t.start(tmp_path_factory.mktemp("serve-log") / "server.log")
    yield t
    t.stop()
    assert t.proc.returncode == 0, t.log.read_text()[-2000:]
