"""The Scheduler on its own: admission, and dynamic batching over any compute (here: doubling arrays)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from torch2ort.errors import ProtocolError
from torch2ort.serve import Limits
from torch2ort.serve.scheduler import Scheduler


def _scheduler(limits: Limits, batching: bool, runs: list) -> Scheduler:
    def run(feed):
        runs.append({k: v.shape for k, v in feed.items()})
        return {"y": feed["x"] * 2}

    return Scheduler("m", limits, run, lambda feed, raw: raw | {"sum": raw["y"].sum(axis=1)}, batching)


def test_batching_merges_rows_that_agree_and_splits_outputs_back():
    runs: list = []

    async def main():
        s = _scheduler(Limits(max_batch=6, max_delay_ms=200), True, runs)
        await s.start()
        feeds = [{"x": np.full((rows, width), i, np.float32)} for i, (rows, width) in
                 enumerate([(1, 4), (2, 4), (3, 4), (2, 5)])]  # the last one's other dim differs
        for _ in feeds:
            s.admit()
        results = await asyncio.gather(*(s.infer(f) for f in feeds))
        for _ in feeds:
            s.release()
        await s.stop()
        return feeds, results, s

    feeds, results, s = asyncio.run(main())
    for feed, out in zip(feeds, results):
        np.testing.assert_array_equal(out["y"], feed["x"] * 2)
        np.testing.assert_array_equal(out["sum"], (feed["x"] * 2).sum(axis=1))
    assert sorted(r["x"] for r in runs) == [(2, 5), (6, 4)]  # three requests in one run, the odd one alone
    assert s.stats == {"requests": 4, "batches": 2, "rows": 8} and s.inside == 0


def test_admission_refuses_before_start_and_when_the_queue_is_full():
    async def main():
        s = _scheduler(Limits(queue=2), False, [])
        with pytest.raises(ProtocolError, match="not ready") as err:
            s.admit()
        assert err.value.status == 503
        await s.start()
        s.admit()
        s.admit()
        with pytest.raises(ProtocolError, match="overloaded .*--queue 2") as err:
            s.admit()
        s.release()
        s.admit()  # a freed slot can be taken again
        out = await s.infer({"x": np.ones((1, 3), np.float32)})
        await s.stop()
        return out

    assert asyncio.run(main())["y"].tolist() == [[2, 2, 2]]


@pytest.mark.parametrize("batching", [False, True], ids=["alone", "batched"])
def test_every_request_records_its_queue_compute_and_postprocess(batching):
    """The metrics a served request's breakdown reads (serve.metrics.Breakdown): one queue wait and one
    postprocess per request, one compute per run, with batching on or off."""
    from torch2ort.serve.metrics import Metrics, ModelMetrics, samples

    metrics = Metrics()

    async def main():
        s = _scheduler(Limits(max_batch=4, max_delay_ms=50), batching, [])
        s.metrics = ModelMetrics(metrics, "m")
        await s.start()
        for _ in range(3):
            s.admit()
        await asyncio.gather(*(s.infer({"x": np.ones((1, 3), np.float32)}) for _ in range(3)))
        await s.stop()

    asyncio.run(main())
    got = samples(metrics.exposition().decode())
    count = lambda name: got[(f"torch2ort_{name}_seconds_count", (("model", "m"),))]  # noqa: E731
    assert count("queue") == 3 and count("postprocess") == 3
    assert count("compute") == (1 if batching else 3)
