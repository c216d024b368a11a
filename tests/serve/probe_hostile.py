"""Probes for issue 27 (server hardening): inputs the model refuses at run time (item 4), zero-size
shapes with huge dims (5), gRPC limits and auth (9), big text (3) and the intake (8). Each sends real
HTTP or gRPC to a real `torch2ort serve` process and returns None, or what went wrong."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from serve.probes import INFER, TEXT_INFER, Target, binary_body, expect, free_port, post_json, request

Probe = Callable[[Target], "str | None"]


# --- gRPC helpers ---------------------------------------------------------------------------------------
def grpc_call(t: Target, method: str, message, metadata=(), url: str | None = None, timeout: float = 60):
    """(status code, response or None, details) of one unary call on the OIP service."""
    with grpc.insecure_channel(url or t.grpc_url, options=[("grpc.max_send_message_length", -1)]) as channel:
        try:
            return grpc.StatusCode.OK, getattr(pbg.GRPCInferenceServiceStub(channel), method)(
                message, metadata=metadata, timeout=timeout), ""
        except grpc.RpcError as exc:
            return exc.code(), None, exc.details() or ""


def grpc_expect(result, code: grpc.StatusCode) -> str | None:
    got, _, details = result
    return None if got == code else f"{got.name} instead of {code.name}: {details[:120]}"


def infer_message(model: str, tensors: dict[str, np.ndarray] | None = None, raw_shapes: dict | None = None
                  ) -> pb.ModelInferRequest:
    """A ModelInferRequest with raw contents: ``tensors`` as they are, or ``raw_shapes``: name ->
    (datatype, shape, bytes) for shapes no array can have."""
    message = pb.ModelInferRequest(model_name=model)
    for name, arr in (tensors or {}).items():
        dt = {"int64": "INT64", "float32": "FP32"}[str(arr.dtype)]
        message.inputs.add(name=name, datatype=dt, shape=list(arr.shape))
        message.raw_input_contents.append(arr.tobytes())
    for name, (dt, shape, blob) in (raw_shapes or {}).items():
        message.inputs.add(name=name, datatype=dt, shape=shape)
        message.raw_input_contents.append(blob)
    return message


# --- item 4: what the model refuses at run time is the request's 400, never a batch's 500 ----------------
def _ids(ids: list[list[int]]) -> dict[str, np.ndarray]:
    arr = np.array(ids, np.int64).reshape(len(ids), -1)
    return {"input_ids": arr, "attention_mask": np.ones_like(arr)}


def _post_ids(t: Target, feed: dict[str, np.ndarray]) -> tuple[int, dict, bytes]:
    body = {"inputs": [{"name": k, "shape": list(v.shape), "datatype": "INT64", "data": v.ravel().tolist()}
                       for k, v in feed.items()]}
    return post_json(t, json.dumps(body), TEXT_INFER)


CASES_4 = {"id-past-table": _ids([[2, 99_999, 3]]), "negative-id": _ids([[2, -5, 3]]),
           "id-int64-max": _ids([[2, 2**63 - 1, 3]]), "seq-0": _ids([[]]), "seq-600": _ids([[5] * 600]),
           "rows-0": {"input_ids": np.zeros((0, 3), np.int64), "attention_mask": np.zeros((0, 3), np.int64)}}


def refused_run_in_a_batch(t: Target, via_grpc: bool = False) -> str | None:
    """4 concurrent requests to a model batched up to 4 rows with 1 s to gather them: the one whose
    index is past the table (which only the run can tell) gets a 400 (or INVALID_ARGUMENT); the three
    batched with it still get their answers."""
    server = t.sibling([t.lookup], ["--max-batch", "4", "--max-delay-ms", "1000"], "lookup.log", grpc=via_grpc)
    try:
        good = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [0, 1, 2]}]}
        bad_x = np.array([[0, 1, 50]], np.int64)
        results: dict[int, object] = {}

        def send(i: int) -> None:
            if i == 0 and via_grpc:
                results[i] = grpc_call(server, "ModelInfer", infer_message("lookup", {"x": bad_x}))[0]
            elif i == 0:
                bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": bad_x.ravel().tolist()}]}
                results[i] = post_json(server, json.dumps(bad), "/v2/models/lookup/infer")[0]
            else:
                results[i] = post_json(server, json.dumps(good), "/v2/models/lookup/infer")[0]

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        want = grpc.StatusCode.INVALID_ARGUMENT if via_grpc else 400
        if [results.get(i) for i in range(4)] != [want, 200, 200, 200]:
            return f"answers {[results.get(i) for i in range(4)]}, wanted {[want, 200, 200, 200]}"
        metrics = request(server.url, "GET", "/metrics")[2].decode()
        rows = _metric(metrics, "torch2ort_batch_size_sum", "lookup")
        runs = _metric(metrics, "torch2ort_batch_size_count", "lookup")
        return None if rows > runs else f"the requests were not batched ({rows:g} rows in {runs:g} runs)"
    finally:
        server.stop()


def _metric(text: str, name: str, model: str) -> float:
    found = re.search(rf'^{name}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


REFUSED: dict[str, Probe] = {
    **{name: (lambda t, f=feed: expect(_post_ids(t, f), 400)) for name, feed in CASES_4.items()},
    **{f"grpc-{name}": (lambda t, f=feed: grpc_expect(grpc_call(t, "ModelInfer", infer_message("encoder", f)),
                                                      grpc.StatusCode.INVALID_ARGUMENT))
       for name, feed in CASES_4.items()},
    "refused-run-in-a-batch": refused_run_in_a_batch,
    "grpc-refused-run-in-a-batch": lambda t: refused_run_in_a_batch(t, via_grpc=True),
}


# --- item 5: a zero-size tensor with a huge other dim is a 400 ------------------------------------------
ZERO_SIZE: dict[str, Probe] = {
    "json-0-by-1e30": lambda t: expect(post_json(t, json.dumps(
        {"inputs": [{"name": "image", "shape": [0, 10**30], "datatype": "FP32", "data": []}]})), 400),
    "binary-0-3-64-2^62": lambda t: expect(request(t.url, "POST", INFER, *binary_body(
        {"name": "image", "shape": [0, 3, 64, 2**62], "datatype": "FP32", "parameters": {"binary_data_size": 0}},
        b"")), 400),
    "grpc-raw-0-3-64-2^62": lambda t: grpc_expect(grpc_call(t, "ModelInfer", infer_message(
        "mobilenet", raw_shapes={"image": ("FP32", [0, 3, 64, 2**62], b"")})), grpc.StatusCode.INVALID_ARGUMENT),
    "grpc-typed-0-by-2^62": lambda t: grpc_expect(grpc_call(t, "ModelInfer", _typed_zero()),
                                                  grpc.StatusCode.INVALID_ARGUMENT),
}


def _typed_zero() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="mobilenet")
    message.inputs.add(name="image", datatype="FP32", shape=[0, 2**62])
    return message


FAMILIES = {"refused runs (27.4)": REFUSED, "zero-size shapes (27.5)": ZERO_SIZE}


# --- item 9: gRPC messages are bounded in size and in how many are read at once; auth comes first --------
class RssSampler:
    """The server's peak RSS growth while a block runs (sampled every 10 ms), and what it holds after."""

    def __init__(self, t: Target) -> None:
        self.t, self.samples, self._stop = t, [t.rss_mb()], threading.Event()
        self.base = self.samples[0]
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.t.rss_mb())
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        time.sleep(1.0)
        self.after = self.t.rss_mb() - self.base

    @property
    def peak(self) -> float:
        return max(self.samples) - self.base


def concurrently(n: int, send: Callable[[int], object], timeout: float = 300) -> list:
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            results[i] = send(i)
        except Exception as exc:  # recorded: the caller judges
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout)
    return results


def grpc_big_messages(t: Target, clients: int = 8, limit_mb: float = 600) -> str | None:
    """8 concurrent 27 MiB raw messages (parsed, then refused: 48x48 images for a 32x32 model): the
    server's peak RSS growth stays under ``limit_mb``; each answer is INVALID_ARGUMENT."""
    blob = np.zeros((1000, 3, 48, 48), np.float32).tobytes()
    message = infer_message("mobilenet", raw_shapes={"image": ("FP32", [1000, 3, 48, 48], blob)})
    del blob
    with RssSampler(t) as rss:
        codes = concurrently(clients, lambda i: grpc_call(t, "ModelInfer", message)[0])
    print(f"gRPC {clients} x {message.ByteSize() / 2**20:.0f} MiB: peak +{rss.peak:.0f} MB, after +{rss.after:.0f} MB")
    if codes != [grpc.StatusCode.INVALID_ARGUMENT] * clients:
        return f"codes {codes}"
    return None if rss.peak < limit_mb else f"server RSS grew {rss.peak:.0f} MB (limit {limit_mb:g})"


TOKEN = "probe-token-27"


def grpc_token_first(t: Target) -> str | None:
    """A server with --token-file and --max-body-mb 1: the token is checked before the message is
    read (a 3 MiB message without it is UNAUTHENTICATED, not RESOURCE_EXHAUSTED), unknown methods need
    it too, health stays open, and with it an oversized message is RESOURCE_EXHAUSTED."""
    token = (t.log.parent if t.log else Path("/tmp")) / "probe-token"
    token.write_text(TOKEN + "\n")
    server = t.sibling([t.bundles[0]], ["--token-file", str(token), "--max-body-mb", "1"], "token.log", grpc=True)
    good = (("authorization", f"Bearer {TOKEN}"),)
    big = infer_message("mobilenet", raw_shapes={"image": ("FP32", [256, 3, 32, 32], bytes(256 * 3 * 32 * 32 * 4))})
    small = infer_message("mobilenet", {"image": np.zeros((1, 3, 32, 32), np.float32)})
    unauth, exhausted = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED
    checks = {
        "big, no token": (grpc_call(server, "ModelInfer", big), unauth),
        "small, wrong token": (grpc_call(server, "ModelInfer", small, (("authorization", "Bearer x"),)), unauth),
        "unknown method, no token": (_unknown_method(server, ()), unauth),
        "unknown method, token": (_unknown_method(server, good), grpc.StatusCode.UNIMPLEMENTED),
        "live, no token": (grpc_call(server, "ServerLive", pb.ServerLiveRequest()), grpc.StatusCode.OK),
        "big, token": (grpc_call(server, "ModelInfer", big, good), exhausted),
        "small, token": (grpc_call(server, "ModelInfer", small, good), grpc.StatusCode.OK),
    }
    try:
        failures = [f"{what}: {grpc_expect(result, want)}" for what, (result, want) in checks.items()
                    if grpc_expect(result, want)]
    finally:
        server.stop()
    return "; ".join(failures) or None


def _unknown_method(t: Target, metadata) -> tuple:
    with grpc.insecure_channel(t.grpc_url) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelConfig")
        try:
            call(b"", metadata=metadata, timeout=30)
            return grpc.StatusCode.OK, None, ""
        except grpc.RpcError as exc:
            return exc.code(), None, exc.details() or ""


def _token_file_refused(t: Target, path: str) -> str | None:
    """`serve --token-file PATH` is a one-line usage error (exit 2) within seconds, in under 2 GB."""
    try:
        proc = t.cli("serve", t.bundles[0], "--port", str(free_port()), "--token-file", path, timeout=30,
                     memory_mb=2048)
    except subprocess.TimeoutExpired:
        return "still starting after 30 s"
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 2 or len(lines) != 1 or "--token-file" not in proc.stderr:
        return f"exit {proc.returncode}: {proc.stderr.strip()[-160:]!r}"
    return None


def token_fifo(t: Target) -> str | None:
    fifo = (t.log.parent if t.log else Path("/tmp")) / "token.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    return _token_file_refused(t, str(fifo))


def token_too_big(t: Target) -> str | None:
    big = (t.log.parent if t.log else Path("/tmp")) / "token.big"
    big.write_bytes(b"x" * 100_000)
    return _token_file_refused(t, str(big))


def _malformed(**fields) -> pb.ModelInferRequest:
    """A mobilenet ModelInferRequest with one raw input, fields overridden."""
    spec = {"name": "image", "datatype": "FP32", "shape": [1, 3, 32, 32], "blob": bytes(3072 * 4), "blobs": 1}
    spec |= fields
    message = pb.ModelInferRequest(model_name="mobilenet")
    message.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
    message.raw_input_contents.extend([spec["blob"]] * spec["blobs"])
    return message


# the malformed bodies of probe_bodies.MALFORMED that a protobuf message can carry
GRPC_MALFORMED = {
    "shape-wraps": _malformed(shape=[2**32, 2**32], blob=b""), "shape-negative": _malformed(shape=[-1, 3]),
    "17-dims": _malformed(shape=[1] * 17, blob=bytes(4)), "datatype-unknown": _malformed(datatype="FP33"),
    "two-raw-for-one-input": _malformed(blobs=2), "bytes-short": _malformed(blob=bytes(10)),
    "no-name": _malformed(name=""), "no-inputs": pb.ModelInferRequest(model_name="mobilenet")}


GRPC = {**{f"malformed-{name}": (lambda t, m=message: grpc_expect(grpc_call(t, "ModelInfer", m),
                                                                   grpc.StatusCode.INVALID_ARGUMENT))
           for name, message in GRPC_MALFORMED.items()},
        "8x27mb-memory": grpc_big_messages, "token-before-the-body": grpc_token_first,
        "token-file-fifo": token_fifo, "token-file-dev-zero": lambda t: _token_file_refused(t, "/dev/zero"),
        "token-file-100kb": token_too_big}
FAMILIES["gRPC and auth (27.9)"] = GRPC


# --- item 3: text within every limit is tokenised in bounded memory ------------------------------------
def big_text(t: Target, rows: int = 64, limit_mb: float = 150) -> str | None:
    """64 strings of 99,999 CJK characters and words (within --max-rows, --max-text-chars and
    --max-body-mb): answered 200, and the server's peak RSS growth stays under ``limit_mb``."""
    text = ("文件列表 list files " * 7000)[:99_999]
    body = json.dumps({"inputs": [{"name": "text", "shape": [rows], "datatype": "BYTES", "data": [text] * rows}]})
    with RssSampler(t) as rss:
        code, _, answer = post_json(t, body, TEXT_INFER)
    print(f"text {rows} x 99,999 chars: peak +{rss.peak:.0f} MB, after +{rss.after:.0f} MB")
    if code != 200:
        return f"{code}: {answer[:100]!r}"
    return None if rss.peak < limit_mb else f"server RSS grew {rss.peak:.0f} MB (limit {limit_mb:g})"


FAMILIES["big text (27.3)"] = {"64x99999-chars-memory": big_text}


# --- item 8: idle connections cannot hold the intake shut -----------------------------------------------
def idle_bodies(t: Target, idle: int = 8) -> str | None:
    """8 connections send headers and a Content-Length, then nothing (the server has 4 reading slots
    and a 2 s read timeout): a real request meanwhile is answered within 1 s, not after the timeout."""
    head = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n").encode()
    sockets = [socket.create_connection(("127.0.0.1", t.port), timeout=10) for _ in range(idle)]
    try:
        for s in sockets:
            s.sendall(head)
        time.sleep(0.3)
        body = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                       "data": [0.0] * 3072}]})
        start = time.perf_counter()
        code = post_json(t, body)[0]
        took = time.perf_counter() - start
    finally:
        for s in sockets:
            s.close()
    if code != 200:
        return f"{code} with {idle} idle bodies open"
    return None if took < 1.0 else f"answered after {took:.2f} s with {idle} idle bodies open"


FAMILIES["intake (27.8)"] = {"8-idle-bodies": idle_bodies}
