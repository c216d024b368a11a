"""`torch2ort batch` on a zero-shot bundle: candidate labels once for the job, a nested list<struct{score,
label}> column per image equal to Bundle.predict, and one-line refusals of a job without good labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures.families import run_cli
from serve.task_bundles import zero_shot_bundle
from torch2ort.batch import run_batch
from torch2ort.errors import OutputExistsError, UsageError
from torch2ort.runtime import Bundle

LABELS = ["list", "files", "disk usage"]


@pytest.fixture(scope="module")
def zeroshot(tmp_path_factory):
    return zero_shot_bundle(tmp_path_factory.mktemp("zs-batch"))


def _rows(out) -> list[dict]:
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: r["row"])


def _assert_equal_predict(bundle: Bundle, images, rows, **options) -> None:
    for r in rows:
        if r["error"]:
            continue
        want = bundle.predict(str(images / r["source"]), **options)["zero_shot"][0]
        assert [d["label"] for d in r["zero_shot"]] == [d["label"] for d in want]
        np.testing.assert_allclose([d["score"] for d in r["zero_shot"]], [d["score"] for d in want], rtol=1e-5,
                                   atol=1e-7)


def test_rows_equal_predict_with_the_labels_given_once(zeroshot, images, tmp_path):
    out = tmp_path / "zs.parquet"
    result = run_batch(zeroshot, images, out, batch_size=4, shard_rows=5, progress=False,
                       options={"candidate_labels": LABELS, "hypothesis_template": "{} on a disk"})
    rows = _rows(out)
    assert result.rows == 13 and result.errors == 2  # the corrupt .png and the empty .jpg: error rows
    assert all(r["zero_shot"] is None for r in rows if r["error"])
    field = pq.read_schema(out / "part-00000.parquet").field("zero_shot")
    assert field.type == pa.list_(pa.struct([("score", pa.float64()), ("label", pa.string())]))
    assert all(len(r["zero_shot"]) == 3 for r in rows if not r["error"])
    assert len({r["zero_shot"][0]["label"] for r in rows if not r["error"]}) > 1  # top-1 differs between images
    _assert_equal_predict(Bundle.load(zeroshot), images, rows, candidate_labels=LABELS,
                          hypothesis_template="{} on a disk")
    with pytest.raises(OutputExistsError, match="--option"):  # other labels are another job
        run_batch(zeroshot, images, out, batch_size=4, shard_rows=5, progress=False,
                  options={"candidate_labels": ["show"]})


def test_cli_takes_the_labels_as_an_option(zeroshot, images, tmp_path, capsys):
    out = tmp_path / "cli.parquet"
    assert run_cli("batch", zeroshot, images, "-o", out, "--option", "candidate_labels=show, directory",
                   "--no-progress") == 0
    assert "wrote 13 rows (2 errors)" in capsys.readouterr().out
    _assert_equal_predict(Bundle.load(zeroshot), images, _rows(out), candidate_labels=["show", "directory"])
    out = tmp_path / "json.parquet"
    assert run_cli("batch", zeroshot, images, "-o", out, "--option", 'candidate_labels=["disk usage", "list"]',
                   "--no-progress") == 0
    _assert_equal_predict(Bundle.load(zeroshot), images, _rows(out), candidate_labels=["disk usage", "list"])


@pytest.mark.parametrize("options, needle", [
    ([], "needs candidate labels"),
    (["--option", "hypothesis_template=a {}"], "needs candidate labels"),
    (["--option", "candidate_labels=[]"], "candidate_labels"),
    (["--option", "candidate_labels=[1, 2]"], "not of type 'string'"),
    (["--option", "candidate_labels=NaN"], "candidate_labels"),
    (["--option", "candidate_labels=-Infinity"], "candidate_labels"),
    (["--option", "candidate_labels=1e999"], "candidate_labels"),
    (["--option", "candidate_labels=0"], "candidate_labels"),
    (["--option", "candidate_labels=,,"], "holds no label"),
    (["--option", "candidate_labels=" + ",".join(["x"] * 1025)], "at most 1024"),
    (["--option", "candidate_labels=" + "x" * 1001], "at most 1000"),
    (["--option", "candidate_labels=list", "--option", "hypothesis_template=no slot"], "one {}"),
    (["--option", "candidate_labels=list", "--option", "threshold=0.5"], "takes no option 'threshold'"),
    (["--option", "candidate_labels"], "expected NAME=VALUE"),
], ids=lambda v: str(v)[:40] if isinstance(v, str) else None)
def test_a_job_without_good_labels_is_refused_in_one_line(zeroshot, images, tmp_path, capsys, options, needle):
    out = tmp_path / "bad.parquet"
    assert run_cli("batch", zeroshot, images, "-o", out, *options, "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err, err
    assert not out.exists()  # refused before any shard


def test_the_library_refuses_the_same_way(zeroshot, images, tmp_path):
    with pytest.raises(UsageError, match="needs candidate labels"):
        run_batch(zeroshot, images, tmp_path / "x.parquet", progress=False)
    with pytest.raises(UsageError, match="options must be a dict"):
        run_batch(zeroshot, images, tmp_path / "x.parquet", progress=False, options=["list"])
