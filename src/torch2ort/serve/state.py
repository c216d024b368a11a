"""What the HTTP routes and the gRPC service share: one typed object per server."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

from torch2ort.errors import ProtocolError
from torch2ort.serve.host import ModelHost
from torch2ort.serve.metrics import Metrics

EXTENSIONS = ("binary_tensor_data",)
INTAKE = 4   # requests reading + parsing their body at once, server-wide
PARSERS = 2  # of those, parsing (JSON, BYTES, tokenizing) or encoding at once: worker threads
PROCESS_JSON = 4 * 2**20  # JSON of this many bytes or more is parsed in a parser process, not a thread


HELD_BACK = "torch2ort_body_held_back_s"  # scope state: seconds the server kept a body waiting for a reading slot


@dataclass
class ServerState:
    """The served models, the metrics, the token, and the bounded pools every request goes through.

    ``reading`` bounds the bodies read and parsed at once (``intake``); ``parse_pool`` runs parsing,
    tokenizing and large encodings off the event loop, on ``PARSERS`` threads. ``parse_procs`` parses
    JSON of ``PROCESS_JSON`` bytes or more in ``PARSERS`` processes: ``json.loads`` and numpy's list
    conversion hold the GIL for the whole call (about a second for 60 MB), which would stall the event
    loop, health checks included, whatever thread they ran on.
    """

    hosts: dict[str, ModelHost]
    metrics: Metrics = field(default_factory=Metrics)
    token: str | None = None       # bearer token every route but health requires
    intake: int = INTAKE
    extensions: tuple[str, ...] = EXTENSIONS
    parse_pool: ThreadPoolExecutor = field(init=False)
    parse_procs: ProcessPoolExecutor | None = field(init=False, default=None)
    reading: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.parse_pool = ThreadPoolExecutor(max_workers=PARSERS, thread_name_prefix="parse")
        self.reading = asyncio.Semaphore(self.intake)
        self.metrics.attach(self.hosts)

    def host_of(self, name: str, version: str | None = None) -> ModelHost:
        """The served model ``name`` (at ``version``, when given), or ProtocolError(404) listing the served ones."""
        if not name or "/" in name or "\\" in name or ".." in name:
            raise ProtocolError(f"{name!r} is not a model name", 404)
        host = self.hosts.get(name)
        if host is None:
            raise ProtocolError(f"unknown model {name!r}; served: {', '.join(sorted(self.hosts))}", 404)
        if version is not None and version != host.version:
            raise ProtocolError(f"model {name!r} has no version {version!r}; versions: {host.version}", 404)
        return host

    @property
    def ready(self) -> bool:
        return all(h.ready for h in self.hosts.values())

    async def start(self) -> None:
        for host in self.hosts.values():
            await host.scheduler.start()
        # spawn, not fork: the server holds threads and ONNX Runtime sessions a fork would copy mid-state
        # processes start on the first large request, not before: most servers never see one
        self.parse_procs = ProcessPoolExecutor(PARSERS, mp_context=multiprocessing.get_context("spawn"))

    def large_json(self, body: bytes | bytearray, header_length: str | None) -> bool:
        """Whether the JSON part of an infer body is big enough for a parser process."""
        size = len(body) if header_length is None or not header_length.isdigit() else int(header_length)
        return self.parse_procs is not None and size >= PROCESS_JSON

    async def decode(self, work, limit: float):
        """Await ``work`` (parsing and decoding, begun holding a reading slot, which this releases) for
        at most ``limit`` seconds, else ProtocolError(503). A thread cannot be stopped: past the
        deadline the request is answered at once, and its slot is released when the work has
        finished, so the intake still bounds what decodes at once (and health stays live meanwhile).
        """
        task = asyncio.ensure_future(work)
        try:
            result = await asyncio.wait_for(asyncio.shield(task), limit)
        except BaseException as exc:  # past the deadline, the work's own error, or this request cancelled
            task.add_done_callback(lambda t: (self.reading.release(), t.cancelled() or t.exception()))
            if isinstance(exc, TimeoutError):
                raise ProtocolError(f"decoding the request's inputs took longer than {limit:g} s "
                                    "(--decode-timeout-s)", 503) from None
            raise
        self.reading.release()
        return result

    async def stop(self) -> None:
        for host in self.hosts.values():
            if getattr(host, "generation", None) is not None:
                await host.generation.stop()
            await host.scheduler.stop()
        self.parse_pool.shutdown(wait=True)
        if self.parse_procs is not None:
            self.parse_procs.shutdown(wait=True, cancel_futures=True)


__all__ = ["EXTENSIONS", "HELD_BACK", "INTAKE", "PARSERS", "ServerState"]
