"""The server's options, checked where they are made: ``Limits`` (per model) and ``ServeOptions`` (per server).

Every number must be finite and in range, so ``torch2ort.serve.serve(...)`` from Python refuses
exactly what ``torch2ort serve`` refuses: a bad value is a ``UsageError`` whose one line names the
option (its Python name and its flag), e.g.

    >>> Limits(max_delay_ms=float("inf"))
    Traceback (most recent call last):
    torch2ort.errors.UsageError: max_delay_ms (--max-delay-ms) inf: must be a number from 0 to 60000
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from torch2ort import values as V
from torch2ort.errors import UsageError
from torch2ort.serve.protocol import Caps

LOG_LEVELS = ("debug", "info", "warning", "error")


def _check(owner, name: str, low: float, high: float, whole: bool) -> None:
    """``owner.name`` is a (whole) number from ``low`` to ``high``, named by its Python name and its flag."""
    label = f"{name} (--{name.replace('_', '-')})"
    (V.count if whole else V.number)(label, getattr(owner, name), low, high)


@dataclass(frozen=True)
class Limits:
    """What one model admits: dynamic batching, its queue, and the size of one request."""

    max_batch: int = 1             # rows merged into one run (1: no dynamic batching)
    max_delay_ms: float = 5.0      # how long the first request of a batch waits for company
    queue: int = 64                # requests inside one model (queued + running) before 503
    max_rows: int = 1024           # rows (first dim) per request; strings in a BYTES input
    max_text_chars: int = 100_000  # characters in one string
    max_file_mb: float = 32.0      # one encoded file (image, audio, signal record), before it is decoded
    decode_timeout_s: float = 30.0  # parsing and decoding one request's inputs, files included
    max_prompt_tokens: int = 8192   # text generation: tokens in one prompt (a chat's rendered messages)
    max_new_tokens: int = 2048      # text generation: tokens one request may ask for (max_tokens)
    generate_timeout_s: float = 600.0  # text generation: one request, from its admission to its last token

    RANGES = {"max_batch": (1, 2**20, True), "max_delay_ms": (0, 60_000, False), "queue": (1, 2**20, True),
              "max_rows": (1, 2**31, True), "max_text_chars": (1, 2**31, True), "max_file_mb": (1e-3, 2**20, False),
              "decode_timeout_s": (0.01, 3600, False), "max_prompt_tokens": (1, 2**20, True),
              "max_new_tokens": (1, 2**16, True), "generate_timeout_s": (0.01, 86_400, False)}

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(self, f.name, *self.RANGES[f.name])

    @property
    def caps(self) -> Caps:
        return Caps(self.max_rows, self.max_text_chars, int(self.max_file_mb * 2**20),
                    decode_timeout_s=self.decode_timeout_s)


@dataclass(frozen=True)
class ServeOptions:
    """What one server listens on and how it treats connections; ``limits`` apply to every model."""

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None   # also serve the OIP gRPC protocol there
    max_body_mb: float = 64.0      # request body (HTTP) and message (gRPC) limit
    read_timeout_s: float = 30.0   # for the request headers, then again for the body
    threads: int | None = None     # ONNX Runtime intra-op threads; None: physical cores
    providers: list[str] | str | None = None
    token_file: str | None = None
    log_level: str = "info"
    graceful_s: float = 30.0       # how long a stop waits for requests in flight
    ui: bool = True                # the page at / to try the models
    limits: Limits = field(default_factory=Limits)

    RANGES = {"port": (1, 65535, True), "grpc_port": (1, 65535, True), "max_body_mb": (1e-3, 2**20, False),
              "read_timeout_s": (0.1, 3600, False), "threads": (1, 1024, True), "graceful_s": (0, 3600, False)}

    def __post_init__(self) -> None:
        for name, (low, high, whole) in self.RANGES.items():
            if getattr(self, name) is not None or name not in ("grpc_port", "threads"):
                _check(self, name, low, high, whole)
        if self.grpc_port is not None and self.grpc_port == self.port:
            raise UsageError(f"grpc_port (--grpc-port) {self.grpc_port} is the HTTP port (--port); pick another")
        if self.log_level not in LOG_LEVELS:
            raise UsageError(f"log_level (--log-level) {self.log_level!r:.40}: must be one of {', '.join(LOG_LEVELS)}")
        if not isinstance(self.limits, Limits):
            raise UsageError(f"limits must be a torch2ort.serve.Limits, not {type(self.limits).__name__}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)


__all__ = ["LOG_LEVELS", "Limits", "ServeOptions"]
