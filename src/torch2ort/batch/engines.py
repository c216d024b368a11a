"""The two engines that run a job's pending shards: ``local`` (threads in this process) and ``ray``.

Both call ``ShardWorker.write_shard`` on the same shards, so they write the same rows.

- **local**: ``concurrency`` worker threads, each with its own Bundle and ``threads`` ORT intra-op
  threads (default: the physical cores split between the workers); ORT releases the GIL.
- **ray**: Ray Data. One dataset row per pending shard -> ``map_batches`` with a callable class
  that holds one Bundle per actor (``batch_size=1``: a call is a shard) and writes the shard itself,
  so rows never go through the driver; the driver sees a status row per shard (the progress bar).
  Actors are sized to cores: ``num_cpus=threads`` each, ``threads`` ORT intra-op threads set
  explicitly (Ray sets ``OMP_NUM_THREADS=1`` in workers, which ORT would otherwise follow), and
  ``concurrency`` actors (default: the cluster's CPUs // threads). Without ``address`` a local Ray
  is started (and stopped after the job); an already initialised Ray is used as it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from torch2ort._env import physical_cores
from torch2ort.batch.inputs import Inputs
from torch2ort.batch.worker import ShardWorker
from torch2ort.errors import Torch2OrtError, UsageError

Shard = tuple[int, int, int]
Progress = Callable[[dict], None]


def run_local(spec: dict, pending: list[Shard], concurrency: int | None, threads: int | None,
              progress: Progress) -> None:
    workers_n = max(1, min(concurrency or 1, len(pending)))
    threads = threads or max(1, physical_cores() // workers_n)
    local = threading.local()
    first = ShardWorker(**spec, threads=threads)  # load errors surface here, before any thread starts
    spare = [first]
    lock = threading.Lock()

    def work(shard: Shard) -> dict:
        if not hasattr(local, "worker"):
            with lock:
                local.worker = spare.pop() if spare else None
            if local.worker is None:
                local.worker = ShardWorker(**spec, threads=threads)
        return local.worker.write_shard(*shard)

    if workers_n == 1:
        for shard in pending:
            progress(first.write_shard(*shard))
        return
    with ThreadPoolExecutor(workers_n, thread_name_prefix="batch") as pool:
        for status in pool.map(work, pending):
            progress(status)


class RayShardWriter:
    """The Ray Data callable class: one Bundle per actor, one shard per call."""

    def __init__(self, spec: dict, threads: int) -> None:
        self.worker = ShardWorker(**spec, threads=threads)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        done = [self.worker.write_shard(int(i), int(a), int(b))
                for i, a, b in zip(batch["shard"], batch["start"], batch["stop"])]
        return {k: np.array([d[k] for d in done]) for k in ("shard", "rows", "errors")}


def run_ray(spec: dict, pending: list[Shard], address: str | None, concurrency: int | None,
            threads: int | None, progress: Progress) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'torch2ort[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot start or reach Ray at {address or 'a new local cluster'}: {exc}") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours counts rows; Ray's would count shards
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = threads or 1
        if threads > cpus:
            raise UsageError(f"--threads {threads} per actor, but the Ray cluster has {cpus} CPUs")
        actors = max(1, min(concurrency or max(1, cpus // threads), len(pending)))
        items = [{"shard": i, "start": a, "stop": b} for i, a, b in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(RayShardWriter, fn_constructor_kwargs={"spec": spec, "threads": threads},
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads)
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
            progress({k: int(v[0]) for k, v in batch.items()})
    except Exception as exc:  # a RayTaskError wraps what an actor raised: ours is a one-line error
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Torch2OrtError):
            raise cause from None
        raise
    finally:
        if started:
            ray.shutdown()


def worker_spec(bundle: str, inputs: Inputs, out: str, batch_size: int, providers: list[str] | None,
                options: dict | None = None) -> dict:
    return {"bundle": bundle, "inputs": inputs, "out": out, "batch_size": batch_size, "providers": providers,
            "options": dict(options or {})}
