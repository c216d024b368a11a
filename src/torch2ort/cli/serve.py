"""``torch2ort serve``: bundles over the Open Inference Protocol (KServe v2) REST API; torch-free.

A thin parser: every value is checked by the library (``torch2ort.serve.Limits`` and
``ServeOptions``), so ``torch2ort.serve.serve(...)`` from Python refuses what this command refuses.
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        description="Serve one or more bundles with the KServe v2 / Open Inference Protocol REST "
                    "API (JSON and binary tensors; tritonclient works), optionally gRPC too (--grpc-port). "
                    "Bundles that generate text also get Triton's generate extension (/v2/models/NAME/generate, "
                    "/generate_stream) and OpenAI-compatible /v1/completions, /v1/chat/completions (with a chat "
                    "template) and /v1/models, streamed as server-sent events; generation stops when the client "
                    "disconnects, and concurrent requests are batched continuously. "
                    "Torch is never imported. OpenAPI document at /openapi.json, Prometheus metrics at "
                    "/metrics. Numbers must be finite and in range (checked before anything loads). "
                    "See docs/serve.md and docs/scale.md.")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port, 1-65535 (default 8000)")
    p.add_argument("--max-batch", type=int, default=1, metavar="N",
                   help="dynamic batching: merge concurrent requests up to N rows, 1-2^20 (default 1: off)")
    p.add_argument("--max-delay-ms", type=float, default=5.0, metavar="D",
                   help="dynamic batching: wait at most D ms for more rows, 0-60000 (default 5)")
    p.add_argument("--max-body-mb", type=float, default=64.0, metavar="M",
                   help="request body limit, 0.001-2^20 (default 64)")
    p.add_argument("--max-rows", type=int, default=1024, metavar="R",
                   help="rows (first dim) per request, and strings in a BYTES input, 1-2^31 (default 1024)")
    p.add_argument("--max-text-chars", type=int, default=100_000, metavar="C",
                   help="characters in one text string, 1-2^31 (default 100000)")
    p.add_argument("--max-file-mb", type=float, default=32.0, metavar="F",
                   help="one encoded file (image, audio, signal record) sent to a bundle's file input, checked "
                        "before decoding, 0.001-2^20 (default 32)")
    p.add_argument("--decode-timeout-s", type=float, default=30.0, metavar="S",
                   help="time to parse and decode one request's inputs (files, text) before answering 503, "
                        "0.01-3600 (default 30)")
    p.add_argument("--max-prompt-tokens", type=int, default=8192, metavar="T",
                   help="text generation: tokens in one prompt (a chat: its rendered messages), 1-2^20 (default 8192)")
    p.add_argument("--max-new-tokens", type=int, default=2048, metavar="T",
                   help="text generation: the most tokens one request may ask for (max_tokens), 1-2^16 "
                        "(default 2048); the model's context bounds it too")
    p.add_argument("--generate-timeout-s", type=float, default=600.0, metavar="S",
                   help="text generation: one request's deadline, from its admission to its last token (then 503, "
                        "or a last error event in a stream), 0.01-86400 (default 600)")
    p.add_argument("--read-timeout-s", type=float, default=30.0, metavar="S",
                   help="time a client has to send its request headers, and then its body, 0.1-3600 (default 30)")
    p.add_argument("--queue", type=int, default=64, metavar="Q",
                   help="requests per model queued or running before answering 503, 1-2^20 (default 64)")
    p.add_argument("--grpc-port", type=int, metavar="P",
                   help="also serve the OIP gRPC protocol (KServe v2 GRPCInferenceService) on port P, e.g. 8001")
    p.add_argument("--token-file", metavar="FILE",
                   help="require 'Authorization: Bearer <token>' (HTTP and gRPC) with the token in FILE; "
                        "health checks stay open")
    p.add_argument("--no-ui", action="store_true",
                   help="leave out the page at / (pick a model, drop a file or type text, see the answer)")
    p.add_argument("--providers", metavar="cuda,cpu", help="ONNX Runtime providers in order of preference")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads, 1-1024 (default: physical cores)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort.serve import Limits, serve

    limits = Limits(args.max_batch, args.max_delay_ms, args.queue, args.max_rows, args.max_text_chars,
                    args.max_file_mb, args.decode_timeout_s, max_prompt_tokens=args.max_prompt_tokens,
                    max_new_tokens=args.max_new_tokens, generate_timeout_s=args.generate_timeout_s)
    serve(args.bundles, args.host, args.port, limits, args.max_body_mb, args.providers, args.threads,
          args.log_level, read_timeout_s=args.read_timeout_s, grpc_port=args.grpc_port, token_file=args.token_file,
          ui=not args.no_ui)
    return 0
