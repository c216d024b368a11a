"""Probes for issue 27 (server hardening): inputs the model refuses at run time (item 4), zero-size
shapes with huge dims (5), gRPC limits and auth (9), big text (3) and the intake (8). Each sends real
HTTP or gRPC to a real `torch2ort serve` process and returns None, or what went wrong."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from serve.probes import INFER, TEXT_INFER, Target, binary_body, expect, post_json, request

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
