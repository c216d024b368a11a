"""The web runner: onnxruntime-web (WASM) in headless Chromium, against PyTorch, with clear failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures import faults
from fixtures.families import FAMILIES, MODELS, run_cli

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_verify_runtime_web_passes_on_every_family(exported, tmp_path, name):
    fam = FAMILIES[name]
    report = tmp_path / "verify.json"
    assert run_cli("verify", fam.model, exported(name), *fam.cli_inputs(), "--runtime", "cpu,web",
                   "--n", "2", "--json", report) == 0
    data = json.loads(report.read_text())
    runners = {r["runner"] for r in data["parity"]["per_output"]}
    assert runners == {"onnxruntime", "web"}  # every row says which runtime it came from
    web = data["runtimes"]["web"]
    assert web["version"] == web["package_version"] and web["threadsActive"] and web["crossOriginIsolated"]


def test_planted_weight_fails_verify_on_the_web(exported, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    faults.perturb_weight(exported("mobilenet"), bad)
    fam = FAMILIES["mobilenet"]
    assert run_cli("verify", fam.model, bad, *fam.cli_inputs(), "--runtime", "web", "--n", "2") == 1
    assert "(web) failed" in capsys.readouterr().out


def test_int64_and_bool_outputs_come_back_typed(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from torch2ort.runners.ort import OrtRunner
    from torch2ort.runners.web import WebRunner

    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [helper.make_node("ArgMax", ["x"], ["idx"], axis=1, keepdims=0),
             helper.make_node("Greater", ["x", "zero"], ["positive"]),
             helper.make_node("Not", ["mask"], ["flipped"])]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5]),
                                                helper.make_tensor_value_info("mask", TensorProto.BOOL, [3])],
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, [3]),
                               helper.make_tensor_value_info("positive", TensorProto.BOOL, [3, 5]),
                               helper.make_tensor_value_info("flipped", TensorProto.BOOL, [3])], [zero])
    path = tmp_path / "heads.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    feed = {"x": np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32),
            "mask": np.array([True, False, True])}
    with WebRunner(path, threads=1) as web, OrtRunner(path) as cpu:
        got, ref = web.infer(feed), cpu.infer(feed)
    assert got["idx"].dtype == np.int64 and got["positive"].dtype == np.bool_ and got["flipped"].dtype == np.bool_
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def test_an_op_the_wasm_build_cannot_run_fails_verification_by_name(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("output_0", TensorProto.FLOAT, [2, 4])
    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["output_0"], domain="ai.example")], "g",
                              [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.example", 1)],
                              ir_version=10)
    onnx.save(model, tmp_path / "frob.onnx")
    code = run_cli("verify", f"{MODELS}:DataDependentBranch", tmp_path / "frob.onnx", "--input", "x:2,4:float32",
                   "--runtime", "web", "--n", "1")
    assert code == 1
    assert "cannot run op Frobnicate" in capsys.readouterr().out


def test_missing_chromium_exits_2_naming_the_package(exported, monkeypatch, capsys):
    monkeypatch.setenv("TORCH2ORT_CHROMIUM", "/nonexistent/chromium")
    fam = FAMILIES["mobilenet"]
    assert run_cli("verify", fam.model, exported("mobilenet"), *fam.cli_inputs(), "--runtime", "web") == 2
    assert "apt-get install -y chromium" in capsys.readouterr().err


def test_page_timeout_is_a_clear_error(exported):
    from torch2ort.errors import RunnerError
    from torch2ort.runners.web import WebRunner

    with pytest.raises(RunnerError, match="timed out after"):
        WebRunner(exported("mobilenet"), timeout_s=0.001).activate()


def test_unknown_runtime_lists_the_valid_ones(exported, capsys):
    fam = FAMILIES["mobilenet"]
    assert run_cli("verify", fam.model, exported("mobilenet"), *fam.cli_inputs(), "--runtime", "gpu") == 2
    assert "cpu, web" in capsys.readouterr().err


def test_bench_reports_browser_latency_next_to_python_ort(exported, tmp_path, capsys):
    fam = FAMILIES["mobilenet"]
    out = tmp_path / "bench.json"
    assert run_cli("bench", fam.model, *fam.cli_inputs(), "--onnx", exported("mobilenet"), "--batch", "1,4",
                   "--seconds", "0.2", "--repeats", "1", "--no-profile", "--runtime", "cpu,web", "--json", out) == 0
    web = json.loads(out.read_text())["web"]
    assert set(web["batches"]) == {"1", "4"} and web["info"]["threadsActive"]
    for b in ("1", "4"):
        stats = web["batches"][b]["stats"]
        assert 0 < stats["p50"] <= stats["p99"] and len(web["batches"][b]["samples_ms"]) >= 5
    assert "timed in the page" in capsys.readouterr().out
