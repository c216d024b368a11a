"""One served bundle: OIP metadata, request validation, and inference with optional dynamic batching.

``ModelHost`` wraps a runtime ``Bundle`` and uses only its public stages: ``preprocess`` (the
checked feed), ``run`` and ``postprocess``. Requests are parsed and validated (names, dtypes, shapes, one size per
dim label) before they are queued, so a bad request is a 400 and can never fail a batch. Inference
runs on a dedicated worker thread, off the event loop; with ``max_batch > 1`` concurrent requests
whose non-batch dims agree are concatenated along the batch axis, up to ``max_batch`` rows, waiting
at most ``max_delay_ms`` for company, and the outputs are split back per request.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, ProtocolError
from torch2ort.runtime.bundle import Bundle
from torch2ort.serve.options import Limits
from torch2ort.serve.protocol import InferRequest, oip_datatype, parse_request

TEXT_INPUT = "text"


@dataclass
class _Job:
    feed: dict[str, np.ndarray]
    rows: int
    signature: tuple
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class ModelHost:
    def __init__(self, bundle: Bundle, limits: Limits, version: str = "1") -> None:
        self.bundle, self.limits, self.version = bundle, limits, version
        self.name = bundle.name
        pre = bundle.manifest.get("preprocess", [])
        self.text = bool(pre) and pre[0].get("op") == "tokenize"
        self.batch_label = self._batch_label()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{self.name}")
        self.inside = 0                      # requests admitted and not yet answered
        self.ready = False
        self.stats = {"requests": 0, "batches": 0, "rows": 0}
        self.metrics = None                  # metrics.ModelMetrics, when the app records Prometheus metrics
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self.output_meta = self._warm_up()

    # --- metadata -----------------------------------------------------------------------------
    def _batch_label(self) -> str | None:
        """The label every input and output carries as its first dim, when there is one."""
        firsts = {t["shape"][0] if t["shape"] else None for t in self.bundle.inputs + self.bundle.outputs}
        label = firsts.pop() if len(firsts) == 1 else None
        return label if isinstance(label, str) else None

    def _warm_up(self) -> list[dict]:
        """Run once (so `ready` means a session that has computed) and learn the post-processed outputs."""
        feed = {}
        for t in self.bundle.inputs:
            shape = [d if isinstance(d, int) and d >= 0 else 1 for d in t["shape"]]
            feed[t["name"]] = np.zeros(shape, dtype=t["dtype"]) if t["dtype"] != "bool" else np.ones(shape, bool)
        if self.text:
            feed = self.preprocess_text(np.array(["warm up"], dtype=object))
        outputs = self.postprocess(feed, self.run_model(feed))
        meta = []
        for name, arr in outputs.items():
            declared = next((o for o in self.bundle.outputs if o["name"] == name), None)
            shape = ([-1 if not isinstance(d, int) or d < 0 else d for d in declared["shape"]] if declared
                     else [-1] + list(arr.shape[1:]))
            meta.append({"name": name, "datatype": oip_datatype(arr.dtype), "shape": shape})
        return meta

    def metadata(self) -> dict:
        if self.text:
            inputs = [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]
        else:
            inputs = [{"name": t["name"], "datatype": oip_datatype(t["dtype"]),
                       "shape": [d if isinstance(d, int) and d >= 0 else -1 for d in t["shape"]]}
                      for t in self.bundle.inputs]
        return {"name": self.name, "versions": [self.version], "platform": "onnxruntime_onnx",
                "inputs": inputs, "outputs": self.output_meta,
                "parameters": {"torch2ort_dynamic_batching": self.batching, "batch_dim": self.batch_label}}

    @property
    def batching(self) -> bool:
        return self.limits.max_batch > 1 and self.batch_label is not None

    # --- validation and compute ------------------------------------------------------------------
    def preprocess_text(self, texts: np.ndarray) -> dict[str, np.ndarray]:
        return self.bundle.preprocess([str(t) for t in texts.ravel()])

    def prepare(self, body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, np.ndarray], list[str]]:
        """Parse, validate and tokenize a request body: (request, model feed, outputs to return).

        CPU work that can take a while (JSON, BYTES, tokenizing): the server runs it off the event loop.
        """
        req = parse_request(body, header_length, self.limits.caps)
        feed = self.validate(req.inputs)
        known = [m["name"] for m in self.output_meta]
        wanted = req.outputs if req.outputs is not None else known
        unknown = [o for o in wanted if o not in known]
        if unknown:
            raise ProtocolError(f"unknown outputs {unknown}; outputs: {', '.join(known)}")
        return req, feed, wanted

    def validate(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model feed for a request, or ProtocolError(400). Runs before anything is queued."""
        try:
            if self.text and set(inputs) == {TEXT_INPUT}:
                texts = inputs[TEXT_INPUT]
                if texts.dtype != object or texts.ndim != 1 or texts.size == 0:
                    raise ProtocolError(f"input {TEXT_INPUT!r} must be BYTES with shape [N], N >= 1")
                inputs = self.preprocess_text(texts)
            elif any(a.dtype == object for a in inputs.values()):
                raise ProtocolError("BYTES inputs are accepted only as 'text', for bundles with a text preprocess")
            return self.bundle.preprocess(inputs)
        except (PredictInputError, BundleError) as exc:
            raise ProtocolError(str(exc)) from None

    def run_model(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.bundle.run(feed)

    def _timed_run(self, feed: dict[str, np.ndarray], queued_at: list[float]) -> dict[str, np.ndarray]:
        """``run_model`` on the worker thread, recording queue waits, compute time and batch size."""
        start = time.perf_counter()
        raw = self.run_model(feed)
        m = self.metrics
        if m is not None:
            m.compute.observe(time.perf_counter() - start)
            m.batch.observe(next(iter(feed.values())).shape[0] if feed else 0)
            for t in queued_at:
                m.queue.observe(start - t)
        return raw

    def postprocess(self, feed: dict[str, np.ndarray], raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw outputs plus the post-processed results that are numeric arrays (embeddings, probabilities)."""
        results = self.bundle.postprocess(feed, raw)
        arrays = {k: v for k, v in results.items() if isinstance(v, np.ndarray) and v.dtype != object}
        return raw | arrays

    # --- scheduling --------------------------------------------------------------------------------
    def admit(self) -> None:
        if not self.ready:
            raise ProtocolError(f"model {self.name!r} is not ready", 503)
        if self.inside >= self.limits.queue:
            raise ProtocolError(f"model {self.name!r} is overloaded ({self.inside} requests queued or running; "
                                f"--queue {self.limits.queue}); retry later", 503)
        self.inside += 1

    def release(self) -> None:
        self.inside -= 1

    async def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one validated feed (after ``admit``); batched with others when batching is on."""
        self.stats["requests"] += 1
        loop = asyncio.get_running_loop()
        if not self.batching:
            raw = await loop.run_in_executor(self.executor, self._timed_run, feed, [time.perf_counter()])
            self.stats["batches"] += 1
            return await loop.run_in_executor(self.executor, self.postprocess, feed, raw)
        rows = next(iter(feed.values())).shape[0]
        signature = tuple((k, v.shape[1:], str(v.dtype)) for k, v in sorted(feed.items()))
        job = _Job(feed, rows, signature, loop.create_future())
        assert self._queue is not None
        await self._queue.put(job)
        return await job.future

    async def start(self) -> None:
        if self.batching:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._batch_loop(), name=f"batcher-{self.name}")
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        held: list[_Job] = []                 # jobs that did not match the batch being formed
        loop = asyncio.get_running_loop()
        while True:
            first = held.pop(0) if held else await self._queue.get()
            batch, rows = [first], first.rows
            deadline = first.queued_at + self.limits.max_delay_ms / 1000.0
            keep = []
            for job in held:                  # earlier arrivals with the same signature go first
                if job.signature == first.signature and rows + job.rows <= self.limits.max_batch:
                    batch.append(job)
                    rows += job.rows
                else:
                    keep.append(job)
            held = keep
            while rows < self.limits.max_batch:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                if job.signature == first.signature and rows + job.rows <= self.limits.max_batch:
                    batch.append(job)
                    rows += job.rows
                else:
                    held.append(job)
            await self._run_batch(batch, loop)

    async def _run_batch(self, batch: list[_Job], loop) -> None:
        feed = {k: np.concatenate([j.feed[k] for j in batch]) if len(batch) > 1 else batch[0].feed[k]
                for k in batch[0].feed}
        total = sum(j.rows for j in batch)
        self.stats["batches"] += 1
        self.stats["rows"] += total
        try:
            raw = await loop.run_in_executor(self.executor, self._timed_run, feed, [j.queued_at for j in batch])
        except Exception as exc:  # an ORT failure on a validated feed: a real internal fault
            for j in batch:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        start = 0
        for j in batch:
            part = {k: (v[start:start + j.rows] if v.ndim and v.shape[0] == total else v) for k, v in raw.items()}
            start += j.rows
            try:
                result = await loop.run_in_executor(self.executor, self.postprocess, j.feed, part)
            except Exception as exc:
                if not j.future.done():
                    j.future.set_exception(exc)
                continue
            if not j.future.done():
                j.future.set_result(result)


def load_hosts(paths: list[str], limits: Limits, providers: list[str] | None = None,
               threads: int | None = None) -> dict[str, ModelHost]:
    hosts: dict[str, ModelHost] = {}
    for p in paths:
        host = ModelHost(Bundle.load(p, providers, threads), limits)
        if host.name in hosts:
            raise BundleError(f"two bundles are named {host.name!r}; model names must be unique")
        hosts[host.name] = host
    return hosts


__all__ = ["Limits", "ModelHost", "load_hosts"]
