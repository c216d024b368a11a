"""Migrations judged through their evidence.json: the working directory, a crash while rendering, bundle names."""

from __future__ import annotations

import os

from fixtures.families import FAMILIES
from torch2ort import evidence as E


def test_migrate_leaves_the_working_directory_alone(tmp_path, monkeypatch):
    """ORT's quantisation and shape inference like to write temp files into the cwd (issue 14)."""
    from torch2ort.pipeline.migrate import MigrateOptions, migrate
    from torch2ort.sources import ModelRequest

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    fam = FAMILIES["mobilenet"]
    result = migrate(ModelRequest(fam.model), fam.spec, tmp_path / "out", MigrateOptions(optimize="auto", bench=False))
    assert result.passed, result.evidence.outcome
    assert any(r.variant.startswith("int8") for r in result.evidence.optimize.table)  # the int8 passes ran
    assert os.listdir(cwd) == []
    assert E.Evidence.from_json((tmp_path / "out" / "evidence.json").read_text()) == result.evidence


def test_a_crash_while_rendering_is_recorded_and_the_evidence_kept(tmp_path, monkeypatch):
    import torch2ort.report
    from torch2ort.pipeline.migrate import MigrateOptions, migrate
    from torch2ort.sources import ModelRequest

    def broken(evidence, out):
        raise KeyError("oops")

    monkeypatch.setattr(torch2ort.report, "write_reports", broken)
    fam = FAMILIES["mobilenet"]
    result = migrate(ModelRequest(fam.model), fam.spec, tmp_path / "out", MigrateOptions(bench=False))
    assert result.exit_code == 4
    ev = E.Evidence.from_json((tmp_path / "out" / "evidence.json").read_text())
    assert ev.outcome.stopped_at == "report" and ev.stage("report").error == "internal error: KeyError: 'oops'"
    assert ev.stage("check").status == "ok"


def test_default_bundle_names_follow_the_model_name_rule():
    from torch2ort.pipeline.stages import default_name
    from torch2ort.runtime.manifest import check_model_name

    for model in ("hf:/models/my model..v2/", "hf:/x/.hidden", "path/to/net.py:Net", "weird name.pt", "hf:/"):
        assert check_model_name(default_name(model)) == default_name(model)
    assert default_name("hf:/m/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
