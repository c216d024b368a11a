"""torch2ort migrate: the whole chain on small fixtures, partial reports, and --force."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fixtures.families import FAMILIES, MODELS, run_cli


def _evidence(out):
    return json.loads((out / "evidence.json").read_text())


def test_end_to_end_writes_bundle_reports_and_evidence(migrated):
    ev = _evidence(migrated)
    assert ev["outcome"] == {"passed": True, "stopped_at": None, "reason": None, "exit_code": 0}
    status = {s["name"]: s["status"] for s in ev["stages"]}
    assert status == {"load": "ok", "export": "ok", "verify": "ok", "optimize": "skipped",
                      "verify-optimized": "skipped", "bench": "ok", "pack": "ok", "check": "ok", "report": "ok"}
    for rel in ("bundle/torch2ort.json", "bundle/model.onnx", "report.md", "report.html", "plots/latency.svg"):
        assert (migrated / rel).is_file(), rel
    # the sweep over the dynamic batch dim was verified, per case
    assert {c["kind"] for c in ev["verify"]["cases"]} >= {"synthetic", "sweep"}
    assert ev["check"]["torch_imported"] is False and ev["check"]["outputs"]["logits"]["passed"]
    assert set(ev["bench"]["ratios"]["onnxruntime"]) == {"1", "4"}


def test_report_numbers_come_from_the_evidence(migrated):
    ev = _evidence(migrated)
    md = (migrated / "report.md").read_text()
    row = next(r for r in ev["bench"]["rows"] if r["backend"] == "onnxruntime" and r["batch"] == 4)
    assert f"| onnxruntime | 4 | {row['p50']:.3g} |" in md
    ratio = ev["bench"]["ratios"]["onnxruntime"]["4"]
    if ratio["stable"]:
        assert f"{ratio['median']:.2f}× at batch 4" in md
    else:  # a noisy machine: the figure is not quoted as a result
        assert "batch 4: unstable (" in md and ratio["why"] in md
    assert "## Cold start" in md and "## Footprint" in md and "## Deploy it" in md
    assert "torch2ort predict bundle --input image=@photo.jpg" in md
    cmd = ev["command"]
    assert cmd.startswith("torch2ort migrate ") and "--preprocess image" in cmd and f"```bash\n{cmd}\n```" in md
    assert "Preprocessing, in the torch-free runtime: `load_image`" in md


def test_html_is_self_contained(migrated):
    html = (migrated / "report.html").read_text()
    assert html.count("<svg") >= 2
    assert not re.search(r"<script|<link|src=\"http|@import|url\(", html)
    assert "class_" in (migrated / "bundle" / "torch2ort.json").read_text()


def test_bundle_predicts_like_the_model(migrated):
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(migrated / "bundle")
    out = bundle.predict({"image": np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)})
    assert out["probabilities"].shape == (2, 7)
    assert out["topk"][0][0]["label"].startswith("class_")


def test_with_optimisation_ships_the_gated_variant(tmp_path):
    """A named chain is never beaten by fp32 (only ``auto`` may keep it), so verify-optimized always runs here;
    ORT's own graph optimisation holds the default gate on this model."""
    fam = FAMILIES["ecg_resnet1d"]
    out = tmp_path / "out"
    code = run_cli("migrate", fam.model, *fam.cli_inputs(), "--output-names", "logits", "--optimize", "graph",
                   "--no-bench", "-o", out)
    assert code == 0
    ev = _evidence(out)
    opt = ev["optimize"]
    assert opt["chosen"] == "graph" and [r["variant"] for r in opt["table"]] == ["fp32", "graph"]
    assert opt["gates"]["logits"]["metric"] == "decision"
    assert next(s for s in ev["stages"] if s["name"] == "verify-optimized")["status"] == "ok"
    vo = ev["verify_optimized"]  # the written file was verified again and is what the bundle holds
    assert vo["variant"] == "graph" and vo["gate"]["passed"] and vo["gate"]["checks"][0]["gate"].startswith("logits:")
    assert (out / "onnx" / "optimized.onnx").read_bytes() == (out / "bundle" / "model.onnx").read_bytes()
    assert ev["bundle"]["files"] and "## Optimisation variants" in (out / "report.md").read_text()


def test_failing_gate_stops_at_optimize_with_a_partial_report(tmp_path, capsys):
    fam = FAMILIES["ecg_resnet1d"]
    out = tmp_path / "out"
    code = run_cli("migrate", fam.model, *fam.cli_inputs(), "--optimize", "int8-dynamic", "--accept", "maxabs<=1e-9",
                   "--no-bench", "-o", out)
    assert code == 1
    ev = _evidence(out)
    assert ev["outcome"]["stopped_at"] == "optimize"
    assert not (out / "bundle").exists()
    assert "stopped at optimize" in capsys.readouterr().err


def test_parity_failure_stops_with_exit_1_and_a_partial_report(tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli("migrate", f"{MODELS}:DataDependentBranch", "--input", "x:batch=2,4:float32", "--n", "8",
                   "--no-bench", "-o", out)
    assert code == 1
    ev = _evidence(out)
    assert ev["outcome"]["stopped_at"] == "verify" and ev["outcome"]["exit_code"] == 1
    status = {s["name"]: s["status"] for s in ev["stages"]}
    assert status["verify"] == "failed" and status["pack"] == "not run" and status["report"] == "ok"
    md = (out / "report.md").read_text()
    assert "STOPPED at stage **verify** (exit 1)" in md and "| verify | failed |" in md
    assert "**FAIL**" in md  # the failing cases are in the per-case table
    assert not (out / "bundle").exists()
    assert "torch2ort migrate: error: stopped at verify" in capsys.readouterr().err


def test_export_failure_stops_with_exit_3(tmp_path):
    out = tmp_path / "out"
    assert run_cli("migrate", f"{MODELS}:Unexportable", "--input", "x:2,4:float32", "-o", out) == 3
    ev = _evidence(out)
    assert ev["outcome"]["stopped_at"] == "export"
    assert "linalg" in ev["outcome"]["reason"].lower() or "eigh" in ev["outcome"]["reason"].lower()
    assert (out / "report.html").is_file()


def test_missing_inputs_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("migrate", f"{MODELS}:MobileNetTiny", "--no-bench", "-o", out) == 2
    assert "--input is required" in capsys.readouterr().err


@pytest.mark.parametrize("force", [False, True])
def test_never_deletes_a_folder_it_did_not_write(tmp_path, capsys, force):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["migrate", f"{MODELS}:MobileNetTiny", *FAMILIES["mobilenet"].cli_inputs(), "--no-bench", "-o", out]
    assert run_cli(*argv, *(["--force"] if force else [])) == 2
    assert (out / "notes.txt").read_text() == "mine"
    err = capsys.readouterr().err
    assert ("not a torch2ort migrate output" if force else "pass --force") in err


def test_force_replaces_an_earlier_migrate_output(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["migrate", f"{MODELS}:DataDependentBranch", "--input", "x:batch=2,4:float32", "--no-bench", "-o", out]
    run_cli(*argv)  # a partial output is still a migrate output
    (out / "stale.txt").write_text("old run")
    assert run_cli(*argv) == 2 and (out / "stale.txt").is_file()
    assert "pass --force" in capsys.readouterr().err
    run_cli(*argv, "--force")
    assert not (out / "stale.txt").exists() and (out / "evidence.json").is_file()


@pytest.mark.slow
def test_peers_reach_the_report_s_what_else_line(tmp_path, capsys):
    pytest.importorskip("openvino")
    fam = FAMILIES["mobilenet"]
    out = tmp_path / "out"
    code = run_cli("migrate", fam.model, *fam.cli_inputs(), "--batch", "1", "--seconds", "0.05", "--repeats", "1",
                   "--threads", "1", "--peers", "openvino", "-o", out)
    assert code == 0
    ev = _evidence(out)
    assert ev["bench"]["peers"]["openvino"]["measured"] and "onnxruntime vs openvino" in ev["bench"]["ratios"]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("what else you could use"))
    assert "OpenVINO " in line and line in (out / "report.md").read_text()
