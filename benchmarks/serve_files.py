"""What sending a file to `torch2ort serve` costs against sending the tensor; writes the 'serve-files'
section of BENCHMARKS.md.

The example emotion CNN (examples/emotion_cnn.py, 3×64×64 -> 7 classes) is exported and packed with
the image preset, and served by `torch2ort serve` in its own process. One client sends requests one
after another on a keep-alive connection, each form ``--n`` times after 20 warm-up requests, for
``--repeats`` rounds; a round's figure is its median, and the table shows the min and median of the
rounds' medians (per request, and per image for the batch). Forms: the model's tensor (binary),
``examples/face.png`` as ``image_file`` over the binary extension and as JSON base64, and 8 copies
of it in one request. Then /v2/health/live is polled while 4 clients each send two 36 MP PNGs.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from serve_load import _port, serve  # noqa: E402


def _binary(spec: dict, blob: bytes) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": [spec | {"parameters": {"binary_data_size": len(blob)}}],
                       "outputs": [{"name": "probabilities"}]}).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


def _forms(png: bytes) -> dict[str, tuple[bytes, dict, int]]:
    """name -> (body, headers, images per request)."""
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    files = lambda n: b"".join(len(png).to_bytes(4, "little") + png for _ in range(n))  # noqa: E731
    json_body = json.dumps({"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [1],
                                        "data": [base64.b64encode(png).decode()]}],
                            "outputs": [{"name": "probabilities"}]}).encode()
    return {
        "tensor FP32 [1,3,64,64], binary": (*_binary({"name": "image", "datatype": "FP32", "shape": [1, 3, 64, 64]},
                                                      x.tobytes()), 1),
        "PNG as image_file, binary extension": (*_binary({"name": "image_file", "datatype": "BYTES", "shape": [1]},
                                                         files(1)), 1),
        "PNG as image_file, JSON base64": (json_body, {}, 1),
        "8 PNGs in one request (per image)": (*_binary({"name": "image_file", "datatype": "BYTES", "shape": [8]},
                                                       files(8)), 8),
    }


def _time(port: int, body: bytes, headers: dict, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", "/v2/models/emotion_cnn/infer", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        out.append(time.perf_counter() - start)
        if resp.status != 200:
            raise SystemExit(f"{resp.status}: {data[:200]!r}")
    conn.close()
    return out


def _health_under_decoding(port: int) -> tuple[float, int]:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buf, format="PNG")
    body, headers = _binary({"name": "image_file", "datatype": "BYTES", "shape": [2]},
                            b"".join(len(buf.getvalue()).to_bytes(4, "little") + buf.getvalue() for _ in range(2)))
    threads = [threading.Thread(target=_time, args=(port, body, headers, 1)) for _ in range(4)]
    for t in threads:
        t.start()
    slowest, polls = 0.0, 0
    while any(t.is_alive() for t in threads):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.perf_counter()
        conn.request("GET", "/v2/health/live")
        conn.getresponse().read()
        slowest, polls = max(slowest, time.perf_counter() - start), polls + 1
        conn.close()
        time.sleep(0.02)
    return slowest, polls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from torch2ort.cli import main as cli

    png = (ROOT / "examples" / "face.png").read_bytes()
    rounds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, bundle = Path(tmp) / "emotion.onnx", Path(tmp) / "bundle"
        model = f"{ROOT}/examples/emotion_cnn.py:EmotionCNN"
        assert cli(["export", model, "--input", "image:batch=1,3,64,64:float32:0..1", "-o", str(onnx_path)]) == 0
        assert cli(["pack", str(onnx_path), "-o", str(bundle), "--name", "emotion_cnn", "--labels",
                    f"{ROOT}/examples/emotion_labels.txt", "--preprocess", "image", "--postprocess",
                    "softmax-topk"]) == 0
        port = _port()
        proc = serve(bundle, port, [])
        try:
            forms = _forms(png)
            for _ in range(args.repeats):
                for name, (body, headers, images) in forms.items():
                    _time(port, body, headers, 20)
                    times = _time(port, body, headers, args.n)
                    rounds.setdefault(name, []).append(statistics.median(times) * 1000 / images)
            health = [_health_under_decoding(port) for _ in range(args.repeats)]
        finally:
            proc.terminate()
            proc.wait(30)
    load = os.getloadavg()
    rows = []
    for name, medians in rounds.items():
        spread = max(medians) / min(medians)
        rows.append(f"| {name} | {min(medians):.2f} | {statistics.median(medians):.2f} | "
                    f"{'unstable (' + format(spread, '.1f') + '×)' if spread > 1.5 else 'stable'} |")
    body = "\n".join([
        f"Command: `benchmarks/serve_files` (one client, keep-alive, {args.n} requests per form after 20 warm-up, "
        f"{args.repeats} rounds; loopback). Model: the example emotion CNN packed with `--preprocess image`; "
        f"file: `examples/face.png` ({len(png):,} bytes), decoded, resized to 64×64 and scaled in the server. "
        f"Load average while measuring: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores, shared).",
        "",
        "| request | min of round medians, ms | median of round medians, ms | rounds agree |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        "/v2/health/live while 4 clients each send two 36 MP PNGs (decoded in the worker threads): slowest "
        "answer " + ", ".join(f"{s * 1000:.0f} ms ({n} polls)" for s, n in health) + " in the "
        f"{args.repeats} rounds."])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "serve-files", "Files through the server (torch2ort serve)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
