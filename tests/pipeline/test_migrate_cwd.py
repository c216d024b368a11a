"""migrate leaves the working directory as it found it, even when ORT's tools give up on a graph."""

from __future__ import annotations

import pytest

from fixtures.families import run_cli


def test_migrate_leaves_the_working_directory_clean(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from fixtures.hf import bert_dir

    model = bert_dir(tmp_path / "bert", num_labels=2)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code = run_cli("migrate", f"hf:{model}", "--optimize", "int8-static", "--no-bench", "-o", tmp_path / "out")
    assert code in (0, 1)  # a variant may fail its gate; the cwd must be clean either way
    assert (tmp_path / "out" / "evidence.json").is_file()
    assert sorted(p.name for p in cwd.iterdir()) == []
