"""What `torch2ort batch` reads, and the layouts it refuses: no silent wrong rows (issue 27)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from batch.conftest import TEXTS
from fixtures.families import run_cli
from torch2ort.batch import run_batch
from torch2ort.batch.inputs import Inputs, split_lines
from torch2ort.errors import PredictInputError, UsageError
from torch2ort.runtime import Bundle


def _rows(out) -> list[dict]:
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: r["row"])


def test_a_folder_of_text_files_embeds_their_contents_not_their_names(bundles, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    chosen = TEXTS[1], TEXTS[5], TEXTS[7]
    for i, text in enumerate(chosen):
        (docs / f"doc{i}.txt").write_text(text)
    (docs / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    out = tmp_path / "emb.parquet"
    result = run_batch(bundles["encoder"], docs, out, progress=False)
    rows = _rows(out)
    assert [r["source"] for r in rows] == ["doc0.txt", "doc1.txt", "doc2.txt", "latin1.txt"]
    assert result.errors == 1 and "not UTF-8" in rows[3]["error"]
    bundle = Bundle.load(bundles["encoder"])
    expected = bundle.predict(list(chosen))["embeddings"]
    names = bundle.predict(["doc0.txt", "doc1.txt", "doc2.txt"])["embeddings"]
    got = np.array([r["embeddings"] for r in rows[:3]], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, names, atol=1e-3)  # before: the file names were embedded


def test_lines_break_on_newlines_only_so_rows_are_line_numbers(bundles, tmp_path):
    lines = ["page one\fstill line one", "a\u2028b", "nel\x85vt\x0b", "crlf", "", "last"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(("\n".join(lines[:3]) + "\n" + lines[3] + "\r\n" + "\n" + lines[5] + "\n").encode())
    out = tmp_path / "emb.parquet"
    run_batch(bundles["encoder"], corpus, out, progress=False)
    assert [r["source"] for r in _rows(out)] == lines
    assert split_lines("a\nb") == split_lines("a\nb\n") == ["a", "b"] and split_lines("") == []


def test_output_inside_the_input_folder_is_refused_up_front(bundles, images):
    with pytest.raises(UsageError, match="inside the input folder"):
        run_batch(bundles["mobilenet"], images, images / "out.parquet", progress=False)
    assert not (images / "out.parquet").exists()


@pytest.mark.parametrize("where", ["file", "proc"])
def test_output_that_cannot_be_a_folder_is_one_line(bundles, texts, tmp_path, capsys, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    out = blocker / "emb.parquet" if where == "file" else "/proc/torch2ort-batch.parquet"
    assert run_cli("batch", bundles["encoder"], texts, "-o", out, "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert "cannot write the batch output" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "mine"


def test_a_fifo_named_npy_is_an_error_row_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.npy")
    np.save(tmp_path / "ok.npy", np.zeros(3, np.float32))
    inputs = Inputs("files", str(tmp_path), ["pipe.npy", "ok.npy"])
    with pytest.raises(PredictInputError, match="no such regular file"):
        inputs.load("pipe.npy")
    assert inputs.load("ok.npy").shape == (3,)


def test_a_file_name_that_is_not_utf8_is_kept_as_escapes(bundles, images, tmp_path):
    import shutil

    folder = tmp_path / "faces"
    shutil.copytree(images, folder)
    odd = os.fsdecode(b"face-\xff.png")
    shutil.copy(folder / "a" / "face01.png", folder / odd)
    out = tmp_path / "faces.parquet"
    run_batch(bundles["mobilenet"], folder, out, progress=False)
    sources = [r["source"] for r in _rows(out)]
    assert "face-\\xff.png" in sources and len(sources) == 14
