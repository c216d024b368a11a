"""Serving a generating bundle (issue 25, part 6) through a real `torch2ort serve` process: Triton's generate
extension, OIP infer with text, and the OpenAI routes through the real ``openai`` client, each token for token
equal to ``Bundle.generate``; a client that disconnects stops its generation; concurrent streams interleave;
bad requests are one-line 4xx; the generation routes hold to their OpenAPI document (schemathesis).

One module-scoped server over the session's tiny peaked Llama (``llama_decoder``), served twice: as it is
(``llama``: 256 positions, no chat template) and re-packed with a chat template (``chat``). The re-pack also
states 4,096 positions: Llama's rotary positions are computed, not looked up, so the graph runs past its
config's 256, and a long generation is what the disconnect test needs to interrupt.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torch2ort
from serve.probes import Target, request
from torch2ort.bundle.writer import pack

pytest.importorskip("torch")
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
EOS = "<|endoftext|>"
PROMPT = "def f(x):"
LONG = 3000  # new tokens: far more than the few steps the disconnect takes to notice


@pytest.fixture(scope="module")
def chat_bundle(llama_decoder, tmp_path_factory):
    from torch2ort.runtime import Bundle

    gen = {k: v for k, v in Bundle.load(llama_decoder.bundle).manifest["generation"].items() if k != "tokenizer"}
    gen |= {"chat_template": TEMPLATE, "special_tokens": {"eos_token": EOS}, "max_positions": 4096}
    return pack(llama_decoder.onnx, tmp_path_factory.mktemp("chat") / "chat", name="chat",
                tokenizer=llama_decoder.folder / "tokenizer.json", generation=gen)


@pytest.fixture(scope="module")
def bundle(chat_bundle):
    from torch2ort.runtime import Bundle

    return Bundle.load(chat_bundle)


@pytest.fixture(scope="module")
def served(llama_decoder, chat_bundle, lookup_bundle, tmp_path_factory):
    """`torch2ort serve` over the two generating bundles and one that does not generate (``lookup``)."""
    src = str(Path(torch2ort.__file__).resolve().parents[1])
    t = Target(src, [str(llama_decoder.bundle), str(chat_bundle), str(lookup_bundle)],
               ["--max-new-tokens", str(LONG), "--max-prompt-tokens", "64", "--log-level", "warning"], grpc=True)
    t.start(tmp_path_factory.mktemp("gen-log") / "server.log")
    yield t
    t.stop()
    assert t.proc.returncode == 0, t.log.read_text()[-2000:]


def post(t: Target, path: str, doc) -> tuple[int, dict]:
    status, _, body = request(t.url, "POST", path, json.dumps(doc).encode() if not isinstance(doc, bytes) else doc)
    return status, json.loads(body)


def metric(t: Target, name: str, **labels) -> float:
    text = request(t.url, "GET", "/metrics")[2].decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def events(resp: http.client.HTTPResponse):
    """The JSON of each ``data:`` event of an SSE answer, as it arrives."""
    for raw in resp:
        line = raw.decode().strip()
        if line.startswith("data: "):
            yield line[6:]


# --- token for token ------------------------------------------------------------------------------------
def test_triton_generate_and_oip_infer_equal_bundle_generate(served, bundle):
    want = bundle.generate(PROMPT, max_new_tokens=32)
    status, doc = post(served, "/v2/models/chat/generate", {"text_input": PROMPT, "parameters": {"max_tokens": 32}})
    assert status == 200, doc
    assert doc["token_ids"] == want.token_ids[0] and doc["text_output"] == want.text[0]
    assert doc["finish_reason"] == "length" and doc["model_name"] == "chat" and doc["prompt_tokens"] == 9
    conn = http.client.HTTPConnection(*served.url.split(":"), timeout=60)
    conn.request("POST", "/v2/models/chat/generate_stream", json.dumps({"text_input": PROMPT, "max_tokens": 32}))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    chunks = [json.loads(e) for e in events(resp)]
    conn.close()
    assert [c["token_ids"][0] for c in chunks] == want.token_ids[0]
    assert "".join(c["text_output"] for c in chunks) == want.text[0] and chunks[-1]["finish_reason"] == "length"
    prompts = [PROMPT, "The quick brown fox"]
    status, doc = post(served, "/v2/models/chat/infer", {
        "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [2], "data": prompts}],
        "parameters": {"max_tokens": 12}})
    assert status == 200, doc
    assert doc["outputs"][0]["data"] == [bundle.generate(p, max_new_tokens=12).text[0] for p in prompts]
    status, meta = 200, json.loads(request(served.url, "GET", "/v2/models/chat")[2])
    assert meta["inputs"][0]["name"] == "text_input" and meta["outputs"][0]["name"] == "text_output"
    assert meta["parameters"]["torch2ort_generation"]["openai"] == ["/v1/completions", "/v1/chat/completions"]


def test_openai_client_completions_and_chat(served, bundle, llama_decoder):
    """The real openai client, plain and streamed; greedy (temperature 0) text equals Bundle.generate's, and the
    chat prompt equals transformers' own apply_chat_template on the same template."""
    openai = pytest.importorskip("openai")
    from transformers import PreTrainedTokenizerFast

    client = openai.OpenAI(base_url=f"http://{served.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["chat", "llama"]
    want = bundle.generate(PROMPT, max_new_tokens=24)
    got = client.completions.create(model="chat", prompt=PROMPT, max_tokens=24, temperature=0)
    assert got.choices[0].text == want.text[0] and got.choices[0].finish_reason == "length"
    assert got.usage.completion_tokens == 24 and got.usage.prompt_tokens == 9
    parts = client.completions.create(model="chat", prompt=PROMPT, max_tokens=24, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in parts) == want.text[0]

    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    tok = PreTrainedTokenizerFast(tokenizer_file=str(llama_decoder.folder / "tokenizer.json"), eos_token=EOS)
    tok.chat_template = TEMPLATE
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    gen = bundle.generator()
    assert gen.encode([rendered], special_tokens=False)[0] == list(ids)
    want_ids = gen.generate_ids([list(ids)], 16)[0]
    chat = client.chat.completions.create(model="chat", messages=messages, max_tokens=16, temperature=0)
    assert chat.choices[0].message.content == gen.tokenizer.decode(want_ids)
    assert chat.choices[0].message.role == "assistant" and chat.usage.prompt_tokens == len(ids)
    streamed = client.chat.completions.create(model="chat", messages=messages, max_tokens=16, temperature=0,
                                              stream=True, stream_options={"include_usage": True})
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == chat.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 16
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client.chat.completions.create(model="llama", messages=messages, max_tokens=4)
    # sampling: the same seed draws the same tokens as Bundle.generate with it (top_k: an extension field)
    seeded = [client.completions.create(model="chat", prompt=PROMPT, max_tokens=12, seed=7, temperature=1.5,
                                        extra_body={"top_k": 40}).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1] == bundle.generate(PROMPT, max_new_tokens=12, do_sample=True, temperature=1.5,
                                                     top_k=40, seed=7).text[0]


# --- limits ---------------------------------------------------------------------------------------------
def test_a_client_that_disconnects_stops_its_generation(served):
    """Streamed and not: the client goes away after a few tokens of a 3,000-token request; the decode loop ends
    the generation as 'cancelled' (which it records only when it drops a stream before its budget is spent)."""
    before = metric(served, "torch2ort_generated_tokens_total", model="chat")
    for path in ("/v2/models/chat/generate_stream", "/v1/completions"):
        cancelled = metric(served, "torch2ort_generations_total", model="chat", reason="cancelled")
        sock = socket.create_connection(tuple_of(served.url))
        body = json.dumps({"text_input": PROMPT, "max_tokens": LONG} if "v2" in path else
                          {"model": "chat", "prompt": PROMPT, "max_tokens": LONG, "stream": True}).encode()
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        seen = b""
        while seen.count(b"data: ") < 3:
            seen += sock.recv(4096)
        sock.close()
        _wait(lambda c=cancelled: metric(served, "torch2ort_generations_total", model="chat", reason="cancelled") > c)
    # not streamed: the answer would come only at the end, so the server watches the connection meanwhile
    cancelled = metric(served, "torch2ort_generations_total", model="chat", reason="cancelled")
    sock = socket.create_connection(tuple_of(served.url))
    body = json.dumps({"text_input": PROMPT, "max_tokens": LONG}).encode()
    sock.sendall(f"POST /v2/models/chat/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                 + body)
    _wait(lambda: metric(served, "torch2ort_generated_tokens_total", model="chat") > before + 10)
    sock.close()
    _wait(lambda: metric(served, "torch2ort_generations_total", model="chat", reason="cancelled") > cancelled)
    assert metric(served, "torch2ort_generations_active", model="chat") == 0
    made = metric(served, "torch2ort_generated_tokens_total", model="chat") - before
    assert made < LONG, f"{made} tokens: the three generations ran on after their clients left"
    assert metric(served, "torch2ort_generations_total", model="chat", reason="length") >= 0
    assert metric(served, "torch2ort_time_to_first_token_seconds_count", model="chat") > 0


def tuple_of(url: str) -> tuple[str, int]:
    host, port = url.split(":")
    return host, int(port)


def _wait(condition, limit: float = 30.0) -> None:
    deadline = time.time() + limit
    while not condition():
        assert time.time() < deadline, "timed out waiting for the server's metrics"
        time.sleep(0.02)


def test_concurrent_streams_are_batched(served, bundle):
    """A 20-token stream that starts while a 3,000-token one runs finishes long before it, with the tokens
    Bundle.generate gives it alone: it joins the running batch (first come, first served would run the long one
    to its end first; here it is still running, and then its client leaves, when the short one has finished),
    and runs of two rows show in the batch-size histogram."""
    order: list[str] = []
    short_tokens: list[int] = []
    lock = threading.Lock()
    started, done = threading.Event(), threading.Event()

    def stream(name: str, tokens: int, until: threading.Event | None = None) -> None:
        conn = http.client.HTTPConnection(*tuple_of(served.url), timeout=60)
        conn.request("POST", "/v2/models/chat/generate_stream", json.dumps({"text_input": PROMPT,
                                                                              "max_tokens": tokens}))
        for e in events(conn.getresponse()):
            with lock:
                order.append(name)
                if name == "short":
                    short_tokens.extend(json.loads(e)["token_ids"])
            started.set()
            if until is not None and until.is_set():
                break
        conn.close()

    single = metric(served, "torch2ort_batch_size_bucket", le="1.0", model="chat")
    long = threading.Thread(target=stream, args=("long", LONG, done))
    long.start()
    assert started.wait(30)
    stream("short", 20)
    with lock:
        long_so_far = order.count("long")
    done.set()
    long.join(60)
    assert order.count("short") == 20
    assert long_so_far < LONG, "the short stream waited for the long one to finish"
    first, last = order.index("short"), len(order) - order[::-1].index("short")
    assert order[first:last].count("long") <= 3 * 20 + 10, "the streams did not advance together"
    assert short_tokens == bundle.generate(PROMPT, max_new_tokens=20).token_ids[0]
    runs = metric(served, "torch2ort_batch_size_count", model="chat")
    assert runs - metric(served, "torch2ort_batch_size_bucket", le="1.0", model="chat") >= 10, "no run of 2 rows"
    assert single >= 0


BAD = [
    ("/v2/models/chat/generate", b"{", "not valid JSON"),
    ("/v2/models/chat/generate", {"text_input": ""}, "text_input"),
    ("/v2/models/chat/generate", {"text_input": "a", "foo": 1}, "unknown field 'foo'"),
    ("/v2/models/chat/generate", {"text_input": "a", "max_tokens": -1}, "max_tokens"),
    ("/v2/models/chat/generate", {"text_input": "a", "max_tokens": 10**30}, "max_tokens"),
    ("/v2/models/chat/generate", {"text_input": "a", "max_tokens": LONG + 1}, "--max-new-tokens"),
    ("/v2/models/chat/generate", b'{"text_input": "a", "temperature": NaN}', "NaN"),
    ("/v2/models/chat/generate", b'{"text_input": "a", "top_p": Infinity}', "Infinity"),
    ("/v2/models/chat/generate", {"text_input": "a", "temperature": "hot"}, "temperature"),
    ("/v2/models/chat/generate", {"text_input": "a", "top_k": 1.5}, "top_k"),
    ("/v2/models/chat/generate", {"text_input": "a", "seed": True}, "seed"),
    ("/v2/models/chat/generate", {"text_input": "a", "stop": [""]}, "stop"),
    ("/v2/models/chat/generate", {"text_input": "x" * 200}, "--max-prompt-tokens"),
    ("/v2/models/llama/generate", {"text_input": "a", "max_tokens": 300}, "context"),
    ("/v2/models/lookup/generate", {"text_input": "a"}, "does not generate"),
    ("/v2/models/lookup/generate_stream", {"text_input": "a"}, "does not generate"),
    ("/v2/models/chat/infer", {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["a"]}],
                               "parameters": {"max_tokens": 0}}, "max_tokens"),
    ("/v2/models/chat/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
     "text_input"),
    ("/v1/completions", {"model": "chat", "prompt": "a", "n": 2}, "n"),
    ("/v1/completions", {"model": "chat", "prompt": "a", "logprobs": 3}, "logprobs"),
    ("/v1/completions", {"model": "chat", "prompt": []}, "prompt"),
    ("/v1/completions", {"model": "chat", "prompt": "a", "temperature": 3}, "temperature"),
    ("/v1/completions", {"model": "lookup", "prompt": "a"}, "does not generate"),
    ("/v1/completions", {"prompt": "a"}, "model"),
    ("/v1/chat/completions", {"model": "chat", "messages": []}, "messages"),
    ("/v1/chat/completions", {"model": "chat", "messages": [{"role": "wizard", "content": "a"}]}, "role"),
    ("/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": "a", "x": 1}]}, "'x'"),
]


@pytest.mark.parametrize(("path", "body", "needle"), BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_requests_are_one_line_4xx(served, path, body, needle):
    status, doc = post(served, path, body)
    assert 400 <= status < 500, doc
    message = doc["error"]["message"] if path.startswith("/v1/") else doc["error"]  # OpenAI's error object there
    assert isinstance(message, str) and "\n" not in message and needle in message, doc


def test_grpc_keeps_working_and_refuses_generation_in_one_line(served):
    """gRPC has no generation: a generating model is a one-line INVALID_ARGUMENT; the others still infer."""
    import grpc
    import numpy as np
    from tritonclient.grpc import service_pb2 as pb

    from serve.probe_hostile import grpc_call, infer_message

    message = pb.ModelInferRequest(model_name="chat")
    message.inputs.add(name="text_input", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
    code, _, details = grpc_call(served, "ModelInfer", message)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "generates text" in details and "\n" not in details
    code, reply, details = grpc_call(served, "ModelInfer", infer_message("lookup", {"x": np.array([[1, 2, 3]])}))
    assert code == grpc.StatusCode.OK, details
    assert grpc_call(served, "ModelMetadata", pb.ModelMetadataRequest(name="chat"))[1].inputs[0].name == "text_input"


def test_unknown_model_is_404_and_the_queue_still_drains(served):
    assert post(served, "/v1/completions", {"model": "nope", "prompt": "a"})[0] == 404
    assert post(served, "/v2/models/nope/generate", {"text_input": "a"})[0] == 404
    assert metric(served, "torch2ort_queue_depth", model="chat") == 0


def test_a_generation_past_its_deadline_is_a_one_line_503(chat_bundle):
    """In-process server with a 0.2 s deadline: a 2,000-token generation is a 503 (a last error event once a
    stream has begun), and the decode loop records it as 'deadline'."""
    from fixtures.server import running
    from torch2ort.serve import Limits

    with running([chat_bundle], Limits(generate_timeout_s=0.2)) as (url, hosts):
        t = Target("", [], port=int(url.split(":")[1]))
        status, doc = post(t, "/v2/models/chat/generate", {"text_input": PROMPT, "max_tokens": 2000})
        assert status == 503 and "--generate-timeout-s" in doc["error"] and "\n" not in doc["error"], doc
        conn = http.client.HTTPConnection(*tuple_of(url), timeout=60)
        conn.request("POST", "/v2/models/chat/generate_stream", json.dumps({"text_input": PROMPT, "max_tokens": 2000}))
        last = json.loads(list(events(conn.getresponse()))[-1])
        conn.close()
        assert "--generate-timeout-s" in last["error"]
        assert metric(t, "torch2ort_generations_total", model="chat", reason="deadline") == 2


@pytest.fixture(scope="module")
def short(served):
    """A sibling whose --max-new-tokens is 8, so every generation schemathesis starts is short."""
    t = served.sibling(served.bundles, ["--max-new-tokens", "8", "--log-level", "warning"], "schemathesis.log")
    yield t
    t.stop()


@pytest.mark.parametrize("phases", ["examples,fuzzing", pytest.param("coverage,stateful", marks=pytest.mark.slow)])
def test_generation_routes_match_their_openapi_document(short, phases, tmp_path):
    """schemathesis on the generation routes, its default checks on: no 5xx, answers and SSE events as
    documented, schema-invalid bodies refused. Its coverage phase (about 2,400 cases, 50 s) is marked slow."""
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"http://{short.url}/openapi.json", "--max-examples", "12",
         "--generation-deterministic", "--request-timeout", "30", "--no-color", "--workers", "1", "--phases", phases,
         "--include-path-regex", "generate|/v1/", "--exclude-checks", "positive_data_acceptance"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


_SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=6))
_JSONISH = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                                          max_size=3), max_leaves=8)
_FIELDS = st.sampled_from(["text_input", "parameters", "max_tokens", "max_new_tokens", "min_tokens", "temperature",
                           "top_k", "top_p", "seed", "stop", "do_sample", "stream", "prompt", "messages", "n",
                           "stream_options", "echo", "logprobs", "max_completion_tokens", "model"]
                          ) | st.text(max_size=4)
_PATHS = ["/v2/models/chat/generate", "/v2/models/chat/generate_stream", "/v2/models/lookup/generate",
          "/v2/models/chat/infer", "/v1/completions", "/v1/chat/completions"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(_FIELDS, _JSONISH, max_size=6), path=st.sampled_from(_PATHS),
       model=st.sampled_from(["chat", "llama", "lookup", None]))
def test_fuzzed_generation_bodies_are_never_5xx(short, body, path, model):
    """Hypothesis bodies (NaN and huge numbers included) on every generation route: a 2xx, or a one-line 4xx."""
    if model is not None and path.startswith("/v1/"):
        body["model"] = model
    status, headers, raw = request(short.url, "POST", path, json.dumps(body).encode())
    assert status < 500, raw[:300]
    if status >= 400:
        error = json.loads(raw)["error"]
        message = error["message"] if path.startswith("/v1/") else error
        assert isinstance(message, str) and "\n" not in message, raw[:300]
