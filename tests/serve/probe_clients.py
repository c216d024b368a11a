"""Probes for items 6-8 of the hardening issue and model names: disconnects and slow clients, bad
option values, the OpenAPI document against the answers, and names with '..' or '/'."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import numpy as np

from serve.probes import INFER, Target, binary_body, expect, free_port, image_json, post_json, request, wait_ready


# --- item 6: disconnects are quiet; slow and half-open clients are timed out --------------------------
def _log_lines(t: Target) -> list[str]:
    return t.log.read_text(errors="replace").splitlines() if t.log else []


def drop_mid_body(t: Target, clients: int = 50) -> str | None:
    before = len(_log_lines(t))
    for _ in range(clients):
        with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
            s.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n" + b'{"inputs": [' + b" " * 1000)
    time.sleep(1.0)
    new = _log_lines(t)[before:]
    noisy = [line for line in new if "Traceback" in line or "internal error" in line or "Exception" in line]
    return f"{len(new)} log lines, {len(noisy)} of them errors, for {clients} dropped clients" if noisy else None


def _closed_within(t: Target, payload: bytes, seconds: float) -> str | None:
    with socket.create_connection(("127.0.0.1", t.port), timeout=seconds) as s:
        s.sendall(payload)
        start = time.time()
        try:
            while time.time() - start < seconds:
                if not s.recv(65536):
                    return None  # closed by the server
            return f"still open after {seconds:g} s"
        except TimeoutError:
            return f"still open after {seconds:g} s"
        except ConnectionResetError:
            return None


def half_open_headers(t: Target) -> str | None:
    return _closed_within(t, b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\n", 6)


def slow_body(t: Target) -> str | None:
    return _closed_within(t, b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
                          6)


def silent_connection(t: Target) -> str | None:
    return _closed_within(t, b"", 10)


SLOW = {"drop-mid-body-x50": drop_mid_body, "half-open-headers": half_open_headers, "slow-body": slow_body,
        "connect-and-say-nothing": silent_connection}


# --- item 7: bad option values are one-line usage errors (exit 2) -------------------------------------
def _usage_error(proc: subprocess.CompletedProcess) -> str | None:
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 2 or len(lines) != 1:
        return f"exit {proc.returncode}, {len(lines)} stderr lines: {proc.stderr.strip()[-160:]!r}"
    return None


def delay_inf(t: Target) -> str | None:
    port = free_port()
    proc = t.popen("serve", t.bundles[0], "--port", str(port), "--max-batch", "4", "--max-delay-ms", "inf")
    try:
        try:
            wait_ready(f"127.0.0.1:{port}", proc, 60)
        except RuntimeError:
            return None if proc.wait(10) == 2 else f"exit {proc.returncode}"
        body = image_json(shape=[1, 3, 32, 32], data=[0.0] * 3072).encode()
        try:
            request(f"127.0.0.1:{port}", "POST", INFER, body, timeout=5)
            return None
        except TimeoutError:
            return "accepted, and a lone request got no answer in 5 s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def body_nan(t: Target) -> str | None:
    return _usage_error(t.cli("serve", t.bundles[0], "--port", str(free_port()), "--max-body-mb", "nan"))


def port_in_use(t: Target) -> str | None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        return _usage_error(t.cli("serve", t.bundles[0], "--port", str(s.getsockname()[1])))


OPTIONS = {"max-delay-ms-inf": delay_inf, "max-body-mb-nan": body_nan, "port-in-use": port_in_use}


# --- item 8: the OpenAPI document and the answers agree --------------------------------------------------
def _strict_json(raw: bytes):
    def bad(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(raw, parse_constant=bad)


def declared_statuses(t: Target) -> str | None:
    spec = json.loads(request(t.url, "GET", "/openapi.json")[2])
    responses = spec["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    missing = [s for s in ("200", "400", "404", "413", "503") if s not in responses]
    errors = [s for s in ("400", "404", "413", "503") if s in responses and "Error" not in json.dumps(responses[s])]
    return f"undeclared {missing}, no error schema {errors}" if missing or errors else None


def empty_inputs(t: Target) -> str | None:
    spec = json.loads(request(t.url, "GET", "/openapi.json")[2])
    schema = json.dumps(spec.get("components", {}).get("schemas", {}).get("InferRequest", {}))
    status = post_json(t, '{"inputs": []}')[0]
    if status == 200 or (status == 400 and '"minItems": 1' in schema):
        return None
    return f"{status}, and the schema {'does' if 'minItems' in schema else 'does not'} say minItems"


def allow_header(t: Target) -> str | None:
    code, headers, _ = request(t.url, "DELETE", "/v2/health/live")
    return None if code == 405 and "GET" in headers.get("allow", "") else f"{code}, Allow {headers.get('allow')!r}"


def binary_data_no(t: Target) -> str | None:
    body = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                   "data": [0.0] * 3072}],
                       "outputs": [{"name": "output_0", "parameters": {"binary_data": "no"}}]})
    return expect(post_json(t, body), 400)


def _nan_image(binary_out: bool) -> tuple[int, dict, bytes]:
    image = np.full((1, 3, 32, 32), np.nan, np.float32)
    outputs = [{"name": "output_0", "parameters": {"binary_data": binary_out}}]
    return binary_body({"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32",
                        "parameters": {"binary_data_size": image.nbytes}}, image.tobytes(), outputs)


def nan_json_output(t: Target) -> str | None:
    code, _, raw = request(t.url, "POST", INFER, *_nan_image(False))
    if code != 200:
        return f"{code}: {raw[:100]!r}"
    try:
        out = _strict_json(raw)["outputs"][0]
    except ValueError as exc:
        return f"the response is not JSON: {exc}"
    return None if out.get("parameters", {}).get("non_finite") is True else "no parameters.non_finite flag"


def nan_binary_output(t: Target) -> str | None:
    code, headers, raw = request(t.url, "POST", INFER, *_nan_image(True))
    if code != 200:
        return f"{code}: {raw[:100]!r}"
    out = _strict_json(raw[:int(headers["inference-header-content-length"])])["outputs"][0]
    return None if out.get("parameters", {}).get("non_finite") is True else "no parameters.non_finite flag"


OPENAPI = {"statuses-declared": declared_statuses, "empty-inputs-consistent": empty_inputs,
           "405-allow": allow_header, "binary-data-no": binary_data_no, "nan-json-output": nan_json_output,
           "nan-binary-output": nan_binary_output}


# --- model names with '..' or '/' are a clean 404 --------------------------------------------------------
NAME_PATHS = ["/v2/models/..", "/v2/models/../ready", "/v2/models/a%2Fb", "/v2/models/mobilenet%2F..%2Fencoder",
              "/v2/models/%2E%2E/versions/1", "/bundles/../torch2ort.json", "/bundles/%2E%2E/mobilenet/torch2ort.json",
              "/bundles/mobilenet%2F..%2Fencoder/torch2ort.json"]
NAMES = {path: (lambda t, p=path: expect(request(t.url, "GET", p), 404)) for path in NAME_PATHS}
NAMES["POST /v2/models/%2E%2E/infer"] = lambda t: expect(post_json(t, image_json(), "/v2/models/%2E%2E/infer"), 404)
