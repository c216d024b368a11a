"""Hostile-client probes against a real ``torch2ort serve`` process, by family (the hardening issue).

Each probe sends real HTTP (or runs the real CLI) and returns ``None`` when the server behaved, or
a one-line failure. ``test_probes.py`` runs every probe as a test; run this file directly to get
the family → cases → failures table for any source tree (e.g. an older commit)::

    python tests/serve/probes.py --src /tmp/base/src --image BUNDLE --text BUNDLE [--arg=--read-timeout-s=2]
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SERVE = "import sys; from torch2ort.cli import main; sys.exit(main(sys.argv[1:]))"
INFER = "/v2/models/mobilenet/infer"
TEXT_INFER = "/v2/models/encoder/infer"


@dataclass
class Target:
    src: str                      # PYTHONPATH of the torch2ort under test
    bundles: list[str]            # mobilenet (image) and encoder (text) bundles
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        env = os.environ | {"PYTHONPATH": self.src, "HF_HUB_OFFLINE": "1"}
        return subprocess.run([sys.executable, "-c", SERVE, *args], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def popen(self, *args: str, log=subprocess.DEVNULL) -> subprocess.Popen:
        env = os.environ | {"PYTHONPATH": self.src, "HF_HUB_OFFLINE": "1"}
        return subprocess.Popen([sys.executable, "-c", SERVE, *args], stdout=log, stderr=log, env=env)

    def start(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        with open(log, "w") as out:  # the child keeps its own descriptor
            self.proc = self.popen("serve", *self.bundles, "--port", str(self.port), "--log-level", "info",
                                   *self.args, log=out)
        wait_ready(self.url, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, limit: float = 90) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if request(url, "GET", "/v2/health/ready", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, dict, bytes]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def expect(resp: tuple[int, dict, bytes], status: int) -> str | None:
    code, headers, body = resp
    if code != status:
        return f"{code} instead of {status}: {body[:120]!r}"
    if status >= 400 and not headers.get("content-type", "").startswith("application/json"):
        return f"{status} without a JSON error body"
    return None


def post_json(t: Target, text: str, path: str = INFER) -> tuple[int, dict, bytes]:
    return request(t.url, "POST", path, text.encode())


def binary_body(spec: dict, blob: bytes, outputs: list | None = None) -> tuple[bytes, dict]:
    doc = {"inputs": [spec]} | ({"outputs": outputs} if outputs else {})
    head = json.dumps(doc).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


# --- item 4: malformed bodies are 400, never 500 --------------------------------------------------
def _image(**extra) -> str:
    return json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [0.0]} | extra]})


def _deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


MALFORMED: dict[str, Callable[[Target], str | None]] = {
    "datatype-object": lambda t: expect(post_json(t, _image(datatype={})), 400),
    "datatype-list": lambda t: expect(post_json(t, _image(datatype=[])), 400),
    "shape-overflow": lambda t: expect(post_json(t, _image(shape=[10**30])), 400),
    "binary-shape-wraps": lambda t: expect(request(t.url, "POST", INFER, *binary_body(
        {"name": "image", "shape": [2**32, 2**32], "datatype": "FP32", "parameters": {"binary_data_size": 0}},
        b"")), 400),
    "int-5001-digits": lambda t: expect(post_json(
        t, '{"inputs":[{"name":"image","shape":[1],"datatype":"INT64","data":[' + "7" * 5001 + "]}]}"), 400),
    "body-nested-990": lambda t: expect(post_json(t, _deep(990)), 400),
    "data-nested-990": lambda t: expect(post_json(
        t, '{"inputs":[{"name":"image","shape":[1],"datatype":"FP32","data":' + _deep(990) + "}]}"), 400),
    "parameters-nested-50000": lambda t: expect(post_json(
        t, '{"parameters":{"a":' + _deep(50_000) + '},"inputs":[{"name":"image","shape":[1],"datatype":"FP32",'
           '"data":[0.0]}]}'), 400),
}


# --- item 5: large requests do not block the event loop; memory is bounded ---------------------------
def _health_while(t: Target, send: Callable[[], tuple], want: int | None = None) -> str | None:
    """Run ``send`` in a thread; meanwhile poll /v2/health/live. Slowest health answer must be < 1 s,
    and the request's answer ``want`` (or anything but a 5xx)."""
    result: list = []

    def run() -> None:
        try:
            result.append(send())
        except OSError as exc:  # timed out, reset: recorded as a failure below
            result.append((0, {}, str(exc).encode()))

    worker = threading.Thread(target=run)
    worker.start()
    slowest, polls = 0.0, 0
    while worker.is_alive() or polls < 3:
        start = time.perf_counter()
        request(t.url, "GET", "/v2/health/live", timeout=60)
        slowest, polls = max(slowest, time.perf_counter() - start), polls + 1
        time.sleep(0.02)
    worker.join(120)
    if not result:
        return "the large request got no answer"
    if result[0][0] >= 500 or result[0][0] == 0 or (want and result[0][0] != want):
        return f"the large request got {result[0][0] or result[0][2].decode()}: {result[0][2][:100]!r}"
    if slowest >= 1.0:
        return f"/v2/health/live took {slowest:.2f} s while the request was in flight"
    return None


def text_20mb(t: Target) -> str | None:
    """20 MB of text within the default caps (200 strings of 100,000 characters): tokenized, run and
    answered 200, while health keeps answering."""
    body = json.dumps({"inputs": [{"name": "text", "shape": [200], "datatype": "BYTES",
                                   "data": ["x" * 100_000] * 200}]}).encode()
    return _health_while(t, lambda: request(t.url, "POST", TEXT_INFER, body, timeout=120), want=200)


def text_20mb_one_string(t: Target) -> str | None:
    """One 20 MB string of 4M words (over --max-text-chars): refused, while health keeps answering."""
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                   "data": ["word " * 4_000_000]}]}).encode()
    return _health_while(t, lambda: request(t.url, "POST", TEXT_INFER, body, timeout=120))


def million_empty_strings(t: Target) -> str | None:
    body, headers = binary_body({"name": "text", "shape": [1_000_000], "datatype": "BYTES",
                                 "parameters": {"binary_data_size": 4_000_000}}, b"\0" * 4_000_000)
    return _health_while(t, lambda: request(t.url, "POST", TEXT_INFER, body, headers, timeout=120))


def concurrent_big_json(t: Target, clients: int = 16, limit_mb: float = 1200) -> str | None:
    """16 concurrent ~60 MiB JSON image bodies (refused after parsing); the server's RSS growth stays bounded."""
    rows = 1000
    data = np.random.default_rng(0).random(rows * 3 * 32 * 32).round(6).tolist()
    body = json.dumps({"inputs": [{"name": "image", "shape": [rows - 1, 3, 32, 32], "datatype": "FP32",
                                   "data": data}]}).encode()
    del data
    rss = [_rss_mb(t.proc.pid)]
    base, stop = rss[0], threading.Event()

    def sample():
        while not stop.is_set():
            rss.append(_rss_mb(t.proc.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(request(t.url, "POST", INFER, body, timeout=300)))
               for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    stop.set()
    sampler.join()
    if any(r[0] >= 500 for r in results) or len(results) != clients:
        return f"statuses {sorted(r[0] for r in results)}"
    grown = max(rss) - base
    return None if grown < limit_mb else f"server RSS grew {grown:.0f} MB (limit {limit_mb:g})"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


LOAD = {"text-20mb": text_20mb, "text-20mb-one-string": text_20mb_one_string,
        "1m-empty-strings": million_empty_strings,
        "16x60mb-json-memory": concurrent_big_json}


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
        body = _image(shape=[1, 3, 32, 32], data=[0.0] * 3072).encode()
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
NAMES["POST /v2/models/%2E%2E/infer"] = lambda t: expect(post_json(t, _image(), "/v2/models/%2E%2E/infer"), 404)

FAMILIES = {"malformed bodies (4)": MALFORMED, "large requests (5)": LOAD, "slow clients (6)": SLOW,
            "option values (7)": OPTIONS, "OpenAPI agreement (8)": OPENAPI, "model names": NAMES}


def run_all(target: Target) -> dict[str, list[tuple[str, str | None]]]:
    results = {}
    for family, probes in FAMILIES.items():
        results[family] = []
        for name, probe in probes.items():
            try:
                outcome = probe(target)
            except Exception as exc:  # a probe that cannot complete counts as a failure
                outcome = f"{type(exc).__name__}: {exc}"[:200]
            results[family].append((name, outcome))
    return results


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--arg", action="append", default=[], help="an extra `torch2ort serve` argument")
    p.add_argument("--log", default="/tmp/probe-server.log")
    a = p.parse_args()
    target = Target(a.src, [a.image, a.text], a.arg)
    target.start(Path(a.log))
    try:
        results = run_all(target)
    finally:
        target.stop()
    print("| probe family | cases | failures |\n| --- | --- | --- |")
    for family, rows in results.items():
        print(f"| {family} | {len(rows)} | {sum(1 for _, o in rows if o)} |")
    for family, rows in results.items():
        for name, outcome in rows:
            if outcome:
                print(f"FAIL {family} / {name}: {outcome}")


if __name__ == "__main__":
    main()
