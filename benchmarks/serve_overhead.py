"""Where a served request's time goes, from the server's own Prometheus histograms; writes the
'serve-overhead' section of BENCHMARKS.md.

Two bundles are served by one `torch2ort serve` process (HTTP and gRPC): the example emotion CNN
(3×64×64 -> 7 classes, `--preprocess image`, softmax-topk) and all-MiniLM-L6-v2 migrated from the
local copy (22.7 M parameters; one sentence per request, tokenized in the server). One client sends
each request form ``--n`` times, one after another on one connection, after 20 warm-up requests;
/metrics is scraped before and after, and ``torch2ort.serve.metrics.Breakdown`` turns the two
scrapes into mean milliseconds per request for each stage: read (the HTTP body), decode (parse,
check, decode files and text), queue, compute (the ONNX Runtime run), postprocess, encode, and the
rest (routing, event loop, thread hand-offs). Rounds run ``--repeats`` times; the table shows the
median over rounds, and a form whose rounds' totals spread more than 1.5× is marked unstable.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from batch_throughput import build_bundles  # noqa: E402
from serve_load import _port, serve  # noqa: E402

from torch2ort.serve.metrics import Breakdown  # noqa: E402

SENTENCE = "The quick brown fox jumps over the lazy dog while the band plays on in the park."
FIELDS = ("read", "decode", "queue", "compute", "postprocess", "encode", "other")


def _binary(spec: dict, blob: bytes, output: str) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": [spec | {"parameters": {"binary_data_size": len(blob)}}],
                       "outputs": [{"name": output, "parameters": {"binary_data": True}}]}).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


def _http_forms(png: bytes, minilm: str) -> list[tuple[str, str, bytes, dict]]:
    """(label, model, body, headers) per HTTP form."""
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    tensor_json = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 3, 64, 64],
                                          "data": x.ravel().tolist()}],
                              "outputs": [{"name": "probabilities"}]}).encode()
    png_json = json.dumps({"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [1],
                                       "data": [base64.b64encode(png).decode()]}],
                           "outputs": [{"name": "probabilities"}]}).encode()
    text_json = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [SENTENCE]}]})
    return [
        ("emotion: tensor, binary extension", "emotion_cnn",
         *_binary({"name": "image", "datatype": "FP32", "shape": [1, 3, 64, 64]}, x.tobytes(), "probabilities")),
        ("emotion: tensor, JSON", "emotion_cnn", tensor_json, {}),
        ("emotion: PNG file, JSON base64", "emotion_cnn", png_json, {}),
        ("MiniLM: one sentence, JSON", minilm, text_json.encode(), {}),
    ]


def _scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return text


def _http(port: int, model: str, body: bytes, headers: dict, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", f"/v2/models/{model}/infer", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        out.append(time.perf_counter() - start)
        if resp.status != 200:
            raise SystemExit(f"{model}: {resp.status}: {data[:200]!r}")
    conn.close()
    return out


def _grpc(client, model: str, n: int) -> list[float]:
    import tritonclient.grpc as tg

    if model != "emotion_cnn":
        inp = tg.InferInput("text", [1], "BYTES")
        inp.set_data_from_numpy(np.array([SENTENCE.encode()], dtype=object))
    else:
        inp = tg.InferInput("image", [1, 3, 64, 64], "FP32")
        inp.set_data_from_numpy(np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32))
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.infer(model, [inp])
        out.append(time.perf_counter() - start)
    return out


def _round(port: int, protocol: str, model: str, send) -> tuple[Breakdown, float]:
    send(20)  # warm-up, outside the scrapes
    before = _scrape(port)
    client = statistics.fmean(send(ARGS.n)) * 1000
    return Breakdown.between(before, _scrape(port), model, protocol), client


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 requests, 1 round, no BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--minilm-bundle", type=Path, help="reuse this MiniLM bundle instead of migrating one")
    ARGS = args = parser.parse_args()
    if args.quick:
        args.n, args.repeats, args.no_write = 20, 1, True
    import tritonclient.grpc as tg

    png = (ROOT / "examples" / "face.png").read_bytes()
    rounds: dict[str, list[tuple[Breakdown, float]]] = {}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        bundles = build_bundles(Path(tmp), ["emotion", "minilm"], args.minilm_bundle)
        port, grpc_port = _port(), _port()
        proc = serve([bundles["emotion"], bundles["minilm"]], port, ["--grpc-port", str(grpc_port), "--threads", "2"])
        try:
            client = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            minilm = next(m["name"] for m in client.get_model_repository_index(as_json=True)["models"]
                          if m["name"] != "emotion_cnn")
            forms = [(label, "http", model, lambda k, m=model, b=body, h=headers: _http(port, m, b, h, k))
                     for label, model, body, headers in _http_forms(png, minilm)]
            forms += [(f"{'emotion: tensor' if m == 'emotion_cnn' else 'MiniLM: one sentence'}, gRPC (tritonclient)",
                       "grpc", m, lambda k, m=m: _grpc(client, m, k)) for m in ("emotion_cnn", minilm)]
            for _ in range(args.repeats):
                for label, protocol, model, send in forms:
                    rounds.setdefault(label, []).append(_round(port, protocol, model, send))
                loads.append(os.getloadavg()[0])
        finally:
            proc.terminate()
            proc.wait(30)
    rows, lines = [], []
    for label, got in rounds.items():
        med = lambda f, got=got: statistics.median(f(b, c) for b, c in got)  # noqa: E731
        totals = [b.total for b, _ in got]
        spread = max(totals) / min(totals)
        stable = "stable" if spread <= 1.5 else f"unstable ({spread:.1f}×)"
        cells = [med(lambda b, c, f=f: getattr(b, f)) for f in FIELDS]
        total, serving = med(lambda b, c: b.total), med(lambda b, c: b.serving)
        rows.append(f"| {label} | {med(lambda b, c: c):.3f} | {total:.3f} | "
                    + " | ".join(f"{v:.3f}" for v in cells) + f" | {stable} |")
        lines.append(f"- {label}: a server in Go or C++ around the same ONNX Runtime could save at most "
                     f"**{serving:.3f} ms per request ({100 * serving / total:.0f}% of the server's {total:.3f} ms)**"
                     + ("" if spread <= 1.5 else " (unstable)") + ".")
    body = "\n".join([
        f"Command: `benchmarks/serve_overhead` (one client, one connection, {args.n} requests per form after 20 "
        f"warm-up, {args.repeats} rounds; loopback; the server at `--threads 2`). Figures are mean ms per request "
        "from the server's own Prometheus histograms (`torch2ort_request_seconds`, `torch2ort_stage_seconds`, "
        "`torch2ort_queue_seconds`, `torch2ort_compute_seconds`, `torch2ort_postprocess_seconds`), differenced "
        "between scrapes taken before and after each form, median over rounds; *client* is what the client "
        "measured (it adds the loopback and the client library). Models: the example emotion CNN (3×64×64, "
        "softmax-topk postprocess) and all-MiniLM-L6-v2 (22.7 M parameters, mean-pooled embedding). Load average "
        f"after each round: {', '.join(f'{x:.2f}' for x in loads)} (2 cores).",
        "",
        "| request | client | server total | " + " | ".join(FIELDS) + " | rounds agree |",
        "| --- | " + " | ".join(["---:"] * (len(FIELDS) + 2)) + " | --- |",
        *rows,
        "",
        "**What would Go save on the serving path?** Everything but the ONNX Runtime run is the most a server "
        "written in another language could save: it still has to read, parse and answer, so this is a bound, "
        "not a forecast.",
        "",
        *lines])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "serve-overhead", "The serving path's own overhead (torch2ort serve)",
                       body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
