from __future__ import annotations

import json

import pytest

from fixtures import faults
from fixtures.families import FAMILIES, MODELS, load_family, run_cli
from torch2ort.parity.verify import verify_onnx


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_passes(name, exported):
    result = verify_onnx(load_family(name), exported(name), FAMILIES[name].spec,
                         sweep={k: [1, 3] for k in FAMILIES[name].spec.dynamic_labels()})
    assert result.report, result.report.failures()
    assert result.report.max_abs() < 1e-4
    kinds = {c["kind"] for c in result.cases}
    assert kinds == {"synthetic", "sweep"}


def _verify(name, onnx_path, tmp_path, *extra):
    fam = FAMILIES[name]
    report = tmp_path / "r.json"
    rc = run_cli("verify", fam.model, onnx_path, *fam.cli_inputs(), "--json", report, *extra)
    return rc, json.loads(report.read_text())


def test_perturbed_weight_fails_with_output_and_amount(exported, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    faults.perturb_weight(exported("mobilenet"), bad)
    rc, report = _verify("mobilenet", bad, tmp_path)
    assert rc == 1 and report["passed"] is False
    out = capsys.readouterr().out
    assert "output 'output_0' (onnxruntime) failed" in out and "max abs err" in out
    row = report["parity"]["per_output"][0]
    assert row["output"] == "output_0" and row["max_abs"] > 1e-3 and row["failed"] > 0


def test_swapped_outputs_fail(exported, tmp_path, capsys):
    bad = tmp_path / "swapped.onnx"
    faults.swap_outputs(exported("attn_mil"), bad, "bag_prob", "bag_logit")
    rc, report = _verify("attn_mil", bad, tmp_path)
    assert rc == 1
    failed = {r["output"] for r in report["parity"]["per_output"] if r["failed"]}
    assert failed == {"bag_prob", "bag_logit"}


def test_baked_static_dim_fails(exported, tmp_path, capsys):
    bad = tmp_path / "static.onnx"
    faults.bake_static(exported("attn_mil"), bad, "batch", 1)
    rc, report = _verify("attn_mil", bad, tmp_path)
    assert rc == 1
    assert any("baked static" in g and "batch" in g for g in report["parity"]["graph_issues"])
    assert any("sweep-batch=3" in e for e in report["parity"]["errors"])


def test_torchscript_fallback_bakes_a_branch_and_verify_catches_it(tmp_path):
    """The tracer keeps one side of `if x.sum() > 0`; inputs that take the other side must fail."""
    path = tmp_path / "branch.onnx"
    spec = ["--input", "x:batch=2,4:float32"]
    assert run_cli("export", f"{MODELS}:DataDependentBranch", *spec, "-o", path) == 0
    assert run_cli("verify", f"{MODELS}:DataDependentBranch", path, *spec, "--n", "8") == 1


def test_real_samples_are_used(exported, tmp_path):
    import numpy as np

    np.savez(tmp_path / "a.npz", image=np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32))
    np.savez(tmp_path / "b.npz", image=np.random.default_rng(2).random((5, 3, 32, 32)))  # float64: cast
    rc, report = _verify("mobilenet", exported("mobilenet"), tmp_path, "--samples", tmp_path, "--n", "0")
    assert rc == 0
    assert [c["name"] for c in report["cases"] if c["kind"] == "sample"] == ["sample-a", "sample-b"]


def test_bad_samples_exit_2(exported, tmp_path, capsys):
    import numpy as np

    np.savez(tmp_path / "x.npz", wrong=np.zeros((1, 3, 32, 32), np.float32))
    fam = FAMILIES["mobilenet"]
    rc = run_cli("verify", fam.model, exported("mobilenet"), *fam.cli_inputs(), "--samples", tmp_path / "x.npz")
    assert rc == 2 and "missing ['image']" in capsys.readouterr().err


def test_tolerances_are_applied(exported, tmp_path):
    bad = tmp_path / "bad.onnx"
    faults.perturb_weight(exported("mobilenet"), bad, delta=1e-2)
    rc_tight, _ = _verify("mobilenet", bad, tmp_path, "--force")
    rc_loose, _ = _verify("mobilenet", bad, tmp_path, "--force", "--atol", "1", "--rtol", "0")
    assert (rc_tight, rc_loose) == (1, 0)
