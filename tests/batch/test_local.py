"""`torch2ort batch` with the local engine: outputs equal Bundle.predict, error rows, resume, refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from batch.conftest import TEXTS
from fixtures.families import run_cli
from torch2ort.batch import run_batch
from torch2ort.batch.job import MARKER
from torch2ort.errors import OutputExistsError, UsageError
from torch2ort.runtime import Bundle


def _rows(out) -> list[dict]:
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: r["row"])


def test_images_match_predict_and_corrupt_files_are_error_rows(bundles, images, tmp_path):
    out = tmp_path / "faces.parquet"
    result = run_batch(bundles["mobilenet"], images, out, batch_size=4, shard_rows=5, progress=False)
    rows = _rows(out)
    assert result.rows == len(rows) == 13 and result.errors == 2 and result.shards == 3
    assert [r["row"] for r in rows] == list(range(13))
    errors = {r["source"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"a/corrupt.png", "b/empty.jpg"}
    assert all("not a readable image" in e for e in errors.values())
    assert all(r["probabilities"] is None for r in rows if r["error"])
    bundle = Bundle.load(bundles["mobilenet"])
    for r in rows:
        if r["error"]:
            continue
        expected = bundle.predict(str(images / r["source"]))
        np.testing.assert_allclose(r["probabilities"], expected["probabilities"][0], rtol=1e-5, atol=1e-6)
        assert r["topk_label"] == [t["label"] for t in expected["topk"][0]]


def test_texts_match_predict(bundles, texts, tmp_path):
    out = tmp_path / "emb.parquet"
    run_batch(bundles["encoder"], texts, out, batch_size=4, shard_rows=8, progress=False)
    rows = _rows(out)
    assert [r["source"] for r in rows] == TEXTS * 3 and not any(r["error"] for r in rows)
    expected = Bundle.load(bundles["encoder"]).predict(TEXTS)["embeddings"]
    got = np.array([r["embeddings"] for r in rows[: len(TEXTS)]], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)  # other batches, other padding


def test_rerun_resumes_and_rewrites_only_missing_shards(bundles, texts, tmp_path):
    out = tmp_path / "emb.parquet"
    first = run_batch(bundles["encoder"], texts, out, batch_size=4, shard_rows=8, progress=False)
    before = _rows(out)
    (out / "part-00001.parquet").unlink()
    (out / ".part-00002.parquet.999.tmp").write_bytes(b"half a shard from a killed run")
    again = run_batch(bundles["encoder"], texts, out, batch_size=4, shard_rows=8, progress=False)
    assert (first.shards, first.skipped_shards, again.skipped_shards, again.rows) == (4, 0, 3, 8)
    assert _rows(out) == before
    assert not list(out.glob(".*.tmp"))
    assert run_batch(bundles["encoder"], texts, out, batch_size=4, shard_rows=8, progress=False).rows == 0


def test_tables_with_a_column(bundles, tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(TEXTS)))
    csv = tmp_path / "docs.csv"
    csv.write_text("body,n\n" + "".join(f'"{t}",{i}\n' for i, t in enumerate(TEXTS)))
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    run_batch(bundles["encoder"], jsonl, a, column="body", progress=False)
    run_batch(bundles["encoder"], csv, b, column="body", progress=False)
    assert [r["embeddings"] for r in _rows(a)] == [r["embeddings"] for r in _rows(b)]
    with pytest.raises(UsageError, match="no column 'text'; columns: id, body"):
        run_batch(bundles["encoder"], jsonl, tmp_path / "c.parquet", column="text", progress=False)
    with pytest.raises(UsageError, match="--column"):
        run_batch(bundles["encoder"], jsonl, tmp_path / "c.parquet", progress=False)


def test_nothing_the_user_wrote_is_replaced(bundles, texts, tmp_path):
    mine = tmp_path / "mine.parquet"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(OutputExistsError, match="not a torch2ort batch output"):
            run_batch(bundles["encoder"], texts, mine, force=force, progress=False)
    assert (mine / "notes.txt").read_text() == "mine"
    afile = tmp_path / "file.parquet"
    afile.write_bytes(b"PAR1")
    with pytest.raises(OutputExistsError, match="not a folder"):
        run_batch(bundles["encoder"], texts, afile, progress=False)
    out = tmp_path / "emb.parquet"
    run_batch(bundles["encoder"], texts, out, batch_size=4, progress=False)
    with pytest.raises(OutputExistsError, match="different batch job"):
        run_batch(bundles["encoder"], texts, out, batch_size=8, progress=False)
    assert run_batch(bundles["encoder"], texts, out, batch_size=8, force=True, progress=False).rows == 30
    assert json.loads((out / MARKER).read_text())["identity"]["batch_size"] == 8


def test_cli(bundles, texts, tmp_path, capsys):
    out = tmp_path / "emb.parquet"
    assert run_cli("batch", bundles["encoder"], texts, "-o", out, "--concurrency", "2", "--shard-rows", "8") == 0
    assert "wrote 30 rows (0 errors)" in capsys.readouterr().out
    assert len(_rows(out)) == 30
    assert run_cli("batch", bundles["encoder"], tmp_path / "missing.txt", "-o", tmp_path / "x.parquet") == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_cli("batch", bundles["encoder"], texts, "-o", out, "--batch-size", "0") == 2
    assert run_cli("batch", bundles["encoder"], texts, "-o", tmp_path / "y", "--address", "auto") == 2
    assert "--address is for --engine ray" in capsys.readouterr().err


def test_cli_names_the_output_after_the_model(bundles, texts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli("batch", bundles["encoder"], texts, "--no-progress") == 0
    assert len(_rows(tmp_path / "encoder.parquet")) == 30


def test_batch_runs_with_torch_blocked(bundles, images, tmp_path):
    """The CLI command and its library import nothing from the torch side (Ray workers have the runtime only)."""
    import subprocess
    import sys

    from runtime.test_torch_free import BLOCK

    code = ("import sys\nfrom torch2ort.cli import main\nrc = main(['batch', *sys.argv[1:]])\n"
            "assert 'torch' not in sys.modules\nsys.exit(rc)")
    out = tmp_path / "faces.parquet"
    proc = subprocess.run([sys.executable, "-c", BLOCK + code, str(bundles["mobilenet"]), str(images), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 13 rows (2 errors)" in proc.stdout


def test_multi_label_lists_keep_their_type_when_empty(bundles, images, exported, tmp_path):
    """A threshold no probability reaches gives empty label lists (at warm-up too): the column stays list<string>."""
    import pyarrow as pa

    from batch.conftest import LABELS
    from torch2ort.bundle.writer import pack

    bundle = pack(exported("mobilenet"), tmp_path / "multi", name="multi", labels=LABELS, preprocess="image",
                  postprocess=[{"op": "sigmoid", "output": "output_0", "name": "p"},
                               {"op": "threshold", "output": "p", "threshold": 1.5}])
    out = tmp_path / "multi.parquet"
    run_batch(bundle, images, out, shard_rows=4, progress=False)
    table = pq.read_table(out)
    assert table.schema.field("labels").type == pa.list_(pa.string())
    assert all(r["labels"] == [] for r in table.to_pylist() if not r["error"])


def test_a_tampered_bundle_is_refused_before_any_work(bundles, texts, tmp_path):
    import shutil

    from torch2ort.errors import BundleError

    bad = tmp_path / "bad-bundle"
    shutil.copytree(bundles["encoder"], bad)
    (bad / "tokenizer.json").write_text("{}")
    with pytest.raises(BundleError, match="tokenizer.json"):
        run_batch(bad, texts, tmp_path / "out.parquet", engine="ray", progress=False)
    assert not (tmp_path / "out.parquet").exists()
