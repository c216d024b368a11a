"""``torch2ort serve``: bundles over the Open Inference Protocol (KServe v2) REST API; torch-free."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        description="Serve one or more bundles with the KServe v2 / Open Inference Protocol REST "
                    "API (JSON and binary tensors; tritonclient works). Torch is never imported. "
                    "OpenAPI document at /openapi.json. See docs/serve.md.")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=1, metavar="N",
                   help="dynamic batching: merge concurrent requests up to N rows (default 1: off)")
    p.add_argument("--max-delay-ms", type=float, default=5.0, metavar="D",
                   help="dynamic batching: wait at most D ms for more rows (default 5)")
    p.add_argument("--max-body-mb", type=float, default=64.0, metavar="M", help="request body limit (default 64)")
    p.add_argument("--queue", type=int, default=64, metavar="Q",
                   help="requests per model queued or running before answering 503 (default 64)")
    p.add_argument("--providers", metavar="cuda,cpu", help="ONNX Runtime providers in order of preference")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort.errors import UsageError
    from torch2ort.serve import Limits, serve

    if args.max_batch < 1 or args.queue < 1 or args.max_delay_ms < 0 or args.max_body_mb <= 0:
        raise UsageError("--max-batch and --queue must be >= 1, --max-delay-ms >= 0, --max-body-mb > 0")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be 1..65535")
    serve(args.bundles, args.host, args.port, Limits(args.max_batch, args.max_delay_ms, args.queue),
          args.max_body_mb, args.providers, args.threads, args.log_level)
    return 0
