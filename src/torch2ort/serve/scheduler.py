"""Scheduling for one model: admission (queue slots), its worker thread, and dynamic batching.

Inference runs on a dedicated worker thread, off the event loop. With batching on, concurrent
requests whose non-batch dims agree are concatenated along the batch axis, up to ``max_batch`` rows,
waiting at most ``max_delay_ms`` for company, and the outputs are split back per request. When a
batched run fails with a ``ProtocolError`` (the model refused the input: ONNX Runtime refused it), its
requests are re-run one by one, so only the request at fault gets the error (issue 27, item 4). The
scheduler takes the compute as two callables (``run``, ``postprocess``) and knows nothing of bundles.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from torch2ort.errors import ProtocolError
from torch2ort.serve.options import Limits

Arrays = dict[str, np.ndarray]


@dataclass
class _Job:
    feed: Arrays
    rows: int
    signature: tuple
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class Scheduler:
    def __init__(self, name: str, limits: Limits, run: Callable[[Arrays], Arrays],
                 postprocess: Callable[[Arrays, Arrays], Arrays], batching: bool) -> None:
        self.name, self.limits, self.batching = name, limits, batching
        self._run, self._postprocess = run, postprocess
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")
        self.inside = 0                      # requests admitted and not yet answered
        self.ready = False
        self.stats = {"requests": 0, "batches": 0, "rows": 0}
        self.metrics = None                  # metrics.ModelMetrics, when the app records Prometheus metrics
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None

    def admit(self) -> None:
        """Take a queue slot, or ProtocolError(503) when not ready or full; ``release`` gives it back."""
        if not self.ready:
            raise ProtocolError(f"model {self.name!r} is not ready", 503)
        if self.inside >= self.limits.queue:
            raise ProtocolError(f"model {self.name!r} is overloaded ({self.inside} requests queued or running; "
                                f"--queue {self.limits.queue}); retry later", 503)
        self.inside += 1

    def release(self) -> None:
        self.inside -= 1

    async def infer(self, feed: Arrays) -> Arrays:
        """Run one validated feed (after ``admit``); batched with others when batching is on."""
        self.stats["requests"] += 1
        loop = asyncio.get_running_loop()
        if not self.batching:
            raw = await loop.run_in_executor(self.executor, self._timed_run, feed, [time.perf_counter()])
            self.stats["batches"] += 1
            return await loop.run_in_executor(self.executor, self._timed_postprocess, feed, raw)
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

    def _timed_run(self, feed: Arrays, queued_at: list[float]) -> Arrays:
        """``run`` on the worker thread, recording queue waits, compute time and batch size (of failed
        runs too: a refused batch and its one-by-one re-runs are all runs)."""
        start = time.perf_counter()
        try:
            return self._run(feed)
        finally:
            m = self.metrics
            if m is not None:
                m.compute.observe(time.perf_counter() - start)
                m.batch.observe(next(iter(feed.values())).shape[0] if feed else 0)
                for t in queued_at:
                    m.queue.observe(start - t)

    def _timed_postprocess(self, feed: Arrays, raw: Arrays) -> Arrays:
        start = time.perf_counter()
        try:
            return self._postprocess(feed, raw)
        finally:
            if self.metrics is not None:
                self.metrics.postprocess.observe(time.perf_counter() - start)

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
        except ProtocolError as exc:  # the model refused the batch: find whose input it was
            if len(batch) == 1:
                return _fail(batch[0], exc)
            for j in batch:
                await self._run_batch([j], loop)
            return
        except Exception as exc:  # an internal fault: every request in the run shares it
            for j in batch:
                _fail(j, exc)
            return
        start = 0
        for j in batch:
            part = {k: (v[start:start + j.rows] if v.ndim and v.shape[0] == total else v) for k, v in raw.items()}
            start += j.rows
            try:
                result = await loop.run_in_executor(self.executor, self._timed_postprocess, j.feed, part)
            except Exception as exc:
                _fail(j, exc)
                continue
            if not j.future.done():
                j.future.set_result(result)


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


__all__ = ["Scheduler"]
