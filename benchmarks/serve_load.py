"""Bounded load test of `torch2ort serve` on loopback; writes the 'serve' section of BENCHMARKS.md.

The example emotion CNN (examples/emotion_cnn.py, 3×64×64 -> 7 classes) is exported, packed and
served by `torch2ort serve` in its own process. 32 client threads, each with its own keep-alive
HTTP connection, send one-image binary-tensor infer requests (what tritonclient sends by default)
for a fixed time. Measured per configuration: requests/s, latency p50/p99 seen by the clients,
and errors. Clients and server share this machine's cores, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request() -> tuple[bytes, dict]:
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    head = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 64, 64], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head)),
                                "Content-Type": "application/octet-stream"}


def load(port: int, clients: int, seconds: float) -> dict:
    body, headers = _request()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, bad = [], []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                conn.request("POST", "/v2/models/emotion_cnn/infer", body, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    bad.append(str(resp.status))
            except OSError as exc:
                bad.append(type(exc).__name__)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {"requests": len(lat), "rps": len(lat) / wall, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": len(errors), "wall_s": wall,
            "error_kinds": sorted(set(errors))[:5]}


def serve(bundle: Path | list[Path], port: int, extra: list[str]) -> subprocess.Popen:
    bundles = [str(b) for b in (bundle if isinstance(bundle, list) else [bundle])]
    proc = subprocess.Popen([sys.executable, "-m", "torch2ort", "serve", *bundles, "--port", str(port),
                             "--log-level", "warning", "--queue", "256", *extra])
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from torch2ort.cli import main as cli

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, bundle = Path(tmp) / "emotion.onnx", Path(tmp) / "bundle"
        model = f"{ROOT}/examples/emotion_cnn.py:EmotionCNN"
        assert cli(["export", model, "--input", "image:batch=1,3,64,64:float32:0..1", "-o", str(onnx_path)]) == 0
        labels = f"{ROOT}/examples/emotion_labels.txt"
        assert cli(["pack", str(onnx_path), "-o", str(bundle), "--name", "emotion_cnn", "--labels", labels,
                    "--postprocess", "softmax-topk"]) == 0
        for label, extra in (("no batching", []), ("--max-batch 8 --max-delay-ms 2",
                                                   ["--max-batch", "8", "--max-delay-ms", "2"])):
            port = _port()
            proc = serve(bundle, port, extra)
            try:
                load(port, 4, 1.0)  # warm-up
                r = load(port, args.clients, args.seconds)
            finally:
                proc.terminate()
                proc.wait(30)
            print(label, r, flush=True)
            if r["errors"]:
                raise SystemExit(f"{label}: {r['errors']} errors ({r['error_kinds']}); not writing BENCHMARKS.md")
            rows.append(f"| {label} | {args.clients} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.1f} | "
                        f"{r['p99']:.1f} | {r['errors']} |")
    body = "\n".join([
        f"Command: `benchmarks/serve_load` ({args.clients} client threads with keep-alive connections, "
        f"{args.seconds:g} s per configuration after a 1 s warm-up, loopback). Model: the example emotion CNN "
        "(3×64×64 -> 7 classes), one image per request as a binary tensor, `probabilities` returned as binary "
        "(the softmax postprocess runs in the server). Latency is measured by the clients, request sent to "
        "response read. The clients run on the same 2 cores as the server, so these are lower bounds on what "
        "the server alone can do. Dynamic batching only pays when model compute dominates a request; for a "
        "model this small the cost per request is HTTP, JSON and thread hand-offs, which batching cannot "
        "merge, and its wait for company shows in the latency.",
        "",
        "| server options | clients | requests | requests/s | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "serve", "Serving load test (torch2ort serve)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
