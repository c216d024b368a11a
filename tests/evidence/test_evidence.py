"""The evidence schema: typed sections, a JSON round trip, the format check, and a report from typed fields."""

from __future__ import annotations

import json
import os

import pytest

from fixtures.families import FAMILIES
from torch2ort import evidence as E
from torch2ort.errors import UsageError
from torch2ort.evidence import BenchInfo, VerifyInfo
from torch2ort.report.document import build, summary_lines
from torch2ort.report.render import to_markdown

VERIFY = {"passed": True, "seconds": 0.5, "runtimes": {},
          "cases": [{"name": "synthetic-0", "kind": "synthetic", "shapes": {"x": [2, 4]}}],
          "parity": {"passed": True, "reference": "torch", "atol": 1e-4, "rtol": 1e-3, "metric": "allclose",
                     "errors": [], "graph_issues": [],
                     "per_output": [{"runner": "onnxruntime", "output": "y", "cases": 1, "failed": 0,
                                     "max_abs": 2.5e-7, "max_rel": 1e-6, "mean_abs": 1e-7, "min_cosine": 1.0,
                                     "top1": None, "decision": None, "nonfinite": 0, "shape": [2, 3],
                                     "dtype": "float32"}],
                     "comparisons": [{"case": "synthetic-0", "kind": "synthetic", "output": "y",
                                      "runner": "onnxruntime", "max_abs": 2.5e-7, "cosine": 1.0, "passed": True,
                                      "n_bad": 0}]}}
BENCH = {"model": "m.py:Net", "onnx": "out/onnx/model.onnx", "spec": {}, "batch_label": "batch",
         "options": {"batches": [1], "threads": 2, "seconds": 0.1, "warmup": 3, "repeats": 1, "iters": None},
         "machine": {"cpu": "Test CPU", "physical_cores": 2, "logical_cores": 4, "system": "Linux"},
         "versions": {"torch": "2.13.0", "onnxruntime": "1.23"},
         "runs": [{"label": "torch", "batches": {"1": {"samples_ms": [2.0, 2.2], "stats": {}}}},
                  {"label": "onnxruntime", "batches": {"1": {"samples_ms": [1.0, 1.1], "stats": {}}}}],
         "rows": [{"backend": "onnxruntime", "batch": 1, "p50": 1.05, "p90": 1.1, "p99": 1.1, "mean": 1.05,
                   "throughput": 952.0, "peak_rss_mb": 90.0, "repeats": 1, "size_mb": 0.1}],
         "ratios": {"onnxruntime": {"1": {"median": 2.0, "min": 1.9, "max": 2.1, "values": [2.0]}}},
         "cold": {}, "cold_runs": [], "overhead": None, "compile_s": None, "web": None}


def typed_evidence() -> E.Evidence:
    """A finished run's evidence, built from typed sections as the stages build it."""
    return E.Evidence(
        torch2ort="0.1.0", command="torch2ort migrate m.py:Net -o out", started="2026-11-21T00:00:00+00:00",
        finished="2026-11-21T00:00:09+00:00", versions={"torch": "2.13.0", "onnx": None},
        stages=[E.StageRecord(name="load", status="ok", seconds=0.2, summary="factory model"),
                E.StageRecord(name="optimize", status="skipped", summary="not asked for (--optimize none)")],
        outcome=E.Outcome(passed=True, exit_code=0),
        model=E.ModelInfo(source="m.py:Net", kind="factory", parameters=1_500_000, parameter_mb=5.7, notes=["built"]),
        export=E.ExportInfo.from_dict({"exporter": "dynamo", "why": "first choice", "opset": 18, "path": "m.onnx",
                                     "graph": {"nodes": 3, "ops": {"Gemm": 2, "Relu": 1}, "initializers": 4,
                                               "mb": 0.01, "opset": 18, "functions": 0,
                                               "inputs": [{"name": "x", "dtype": "float", "shape": ["batch", 4]}],
                                               "outputs": [{"name": "y", "dtype": "float", "shape": ["batch", 3]}]}}),
        verify=VerifyInfo.from_dict(VERIFY), bench=BenchInfo.from_dict(BENCH),
        pooling=E.PoolingInfo(chosen="graph", reference="encode", texts=8, rule="lower max abs",
                              candidates={"graph": E.Agreement(max_abs=3e-7, min_cosine=1.0)}),
        footprint=E.FootprintInfo(bundle_bytes=3 * 2**20, torch_roots=["torch"], method="summed RECORD sizes",
                                  runtime=E.Closure(bytes=40 * 2**20, packages={"onnxruntime": 1}),
                                  torch=E.Closure(bytes=800 * 2**20, packages={"torch": 1})),
        check=E.CheckInfo(input="a synthetic input", torch_imported=False, results=["y"],
                          outputs={"y": E.OutputCheck(max_abs=1e-7, min_cosine=1.0, metric="maxabs", value=1e-7,
                                                      passed=True, reference="the PyTorch model",
                                                      gate="maxabs<=0.001")}))


def test_round_trip_keeps_every_key_typed_or_not():
    ev = typed_evidence()
    text = ev.to_json()
    back = E.Evidence.from_json(text)
    assert back == ev and back.to_json() == text
    assert json.loads(text)["format"] == E.FORMAT == 2
    # keys the report does not read survive in extra, and come back in the same place
    assert back.bench.extra["batch_label"] == "batch" and back.bench.rows[0].extra["size_mb"] == 0.1
    assert json.loads(text)["verify"]["parity"]["comparisons"][0]["n_bad"] == 0
    assert isinstance(back.check.outputs["y"], E.OutputCheck) and back.verify.cases[0].shapes == {"x": [2, 4]}
    assert "bundle" not in json.loads(text)  # a stage that did not run leaves no section


@pytest.mark.parametrize("text, message", [
    (json.dumps({"format": 1, "stages": []}), "evidence format 1; this torch2ort reads format 2"),
    ("{not json", "is not JSON"),
    ("[1, 2]", "should hold a JSON object"),
    (json.dumps({"format": 2, "model": {"source": "m.py:Net"}}), "ModelInfo lacks kind, parameters, parameter_mb"),
    (json.dumps({"format": 2, "check": []}), "CheckInfo should be a JSON object"),
])
def test_other_formats_and_broken_files_are_one_line_errors(text, message):
    with pytest.raises(UsageError, match=message) as err:
        E.Evidence.from_json(text)
    assert "\n" not in err.value.one_line()


def test_report_reads_typed_fields():
    ev = typed_evidence()
    parity, speed, footprint = summary_lines(ev)
    assert parity == ("parity: PASS, ONNX fp32 vs PyTorch on 1 cases (max abs 2.50e-07); bundle from a synthetic "
                      "input: y maxabs 1.00e-07 vs the PyTorch model")
    assert speed == ("speed-up: ONNX Runtime vs PyTorch, p50 latency, 2.00× at batch 1 [1.90–2.10] "
                     "(1 A/B pairs of fresh processes, 2 threads each)")
    assert footprint.startswith("footprint: bundle 3.0 MB; its runtime installs 40.0 MB (onnxruntime, …) vs 800.0 MB")
    md = to_markdown(build(ev), {"latency": "plots/latency.svg", "speedup": "plots/speedup.svg"})
    assert "PASSED: every stage ran" in md and "| optimize | skipped | 0.0 s | not asked for (--optimize none) |" in md
    assert "Optimisation not asked for (--optimize none)." in md
    assert "| y | the PyTorch model | 1.00e-07 | 1.0000000 | maxabs 1.00e-07 | maxabs<=0.001 | pass |" in md
    assert "| onnxruntime | 1 | 1.05 | 1.1 | 1.1 | 1.05 | 952.0 | 90 |" in md
    assert "| graph | 3.00e-07 | 1.0000000 | **chosen** |" in md
    assert "**dynamo** exporter (first choice) at opset 18: 3 nodes" in md
    assert "| input | x | float | ['batch', 4] |" in md
    assert "Measured on Test CPU (2 physical / 4 logical cores, Linux)" in md
    assert "torch2ort 0.1.0, torch 2.13.0; Python " in md  # versions that are None are left out


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
