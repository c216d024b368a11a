"""`--engine ray` on a local Ray cluster (2 CPUs): the same rows as the local engine, resumable."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from torch2ort.batch import run_batch

ray = pytest.importorskip("ray", reason="--engine ray needs torch2ort[ray]")
pytestmark = pytest.mark.slow  # starting Ray and its actors takes tens of seconds on 2 busy cores


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _table(out):
    return pq.read_table(out).sort_by("row")


def test_ray_and_local_write_identical_rows(cluster, bundles, images, texts, tmp_path):
    for name, corpus in (("mobilenet", images), ("encoder", texts)):
        local, remote = tmp_path / f"{name}-local.parquet", tmp_path / f"{name}-ray.parquet"
        run_batch(bundles[name], corpus, local, batch_size=4, shard_rows=4, threads=1, progress=False)
        result = run_batch(bundles[name], corpus, remote, engine="ray", batch_size=4, shard_rows=4, threads=1,
                           progress=False)
        assert result.rows == _table(local).num_rows and result.shards > 2
        assert _table(remote).equals(_table(local)), name
    errors = [r for r in _table(tmp_path / "mobilenet-ray.parquet").to_pylist() if r["error"]]
    assert {r["source"] for r in errors} == {"a/corrupt.png", "b/empty.jpg"}


def test_ray_rerun_resumes(cluster, bundles, texts, tmp_path):
    out = tmp_path / "emb.parquet"
    run_batch(bundles["encoder"], texts, out, engine="ray", batch_size=4, shard_rows=8, progress=False)
    before = _table(out)
    (out / "part-00000.parquet").unlink()
    again = run_batch(bundles["encoder"], texts, out, engine="ray", batch_size=4, shard_rows=8, progress=False)
    assert (again.skipped_shards, again.rows) == (3, 8)
    assert _table(out).equals(before)
