"""Peer runtimes in ``bench``: OpenVINO and torch.compile, each in its own processes. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from statistics import median

import pytest

from fixtures.families import FAMILIES, run_cli
from torch2ort.benchmark import BenchOptions, BenchReport, bench
from torch2ort.benchmark.run import peer_names, peer_status
from torch2ort.errors import UsageError
from torch2ort.sources import ModelRequest

FAM = FAMILIES["mobilenet"]
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")


@pytest.fixture(scope="module")
def ov_report(exported):
    return bench(ModelRequest(FAM.model), FAM.spec, exported("mobilenet"),
                 BenchOptions(batches=[1, 2], iters=3, warmup=1, repeats=2, threads=1, peers="openvino",
                              profile=False))


@needs_openvino
def test_openvino_runs_the_same_onnx_in_its_own_processes(ov_report):
    ov = [r for r in ov_report.runs if r["label"] == "openvino"]
    assert len(ov) == 2 and not any(r["torch_imported"] for r in ov)
    pids = [r["pid"] for r in ov_report.runs + ov_report.cold_runs]
    assert len(set(pids)) == len(pids)
    # the same thread count as the other sides, fp32 kept, one stream under the latency hint
    assert ov[0]["config"] == {"INFERENCE_NUM_THREADS": "1", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                               "INFERENCE_PRECISION_HINT": "f32"}
    assert {(r["backend"], r["batch"]) for r in ov_report.rows()} >= {("openvino", 1), ("openvino", 2)}
    status = ov_report.peers["openvino"]
    assert status["measured"] and status["compile_s"] == pytest.approx(median(r["cold"]["load_s"] for r in ov))
    assert "openvino" in ov_report.cold and list(ov_report.peers) == ["openvino"]


@needs_openvino
def test_ort_against_openvino_is_the_per_repeat_ratio(ov_report):
    by = {lab: [r["batches"]["2"]["stats"]["p50"] for r in sorted(ov_report.runs, key=lambda r: r["repeat"])
                if r["label"] == lab] for lab in ("openvino", "onnxruntime", "torch")}
    vs = ov_report.ratios["onnxruntime vs openvino"]["2"]["values"]
    assert vs == pytest.approx([o / r for o, r in zip(by["openvino"], by["onnxruntime"])])
    assert ov_report.ratios["openvino"]["2"]["values"] == pytest.approx(
        [t / o for t, o in zip(by["torch"], by["openvino"])])
    again = BenchReport.from_dict(json.loads(ov_report.to_json()))
    assert again.peers == ov_report.peers and again.ratios == ov_report.ratios


def test_missing_openvino_is_a_note_not_a_failure(monkeypatch):
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == "openvino":
                raise ModuleNotFoundError("blocked")
            return None

    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Blocker(), *sys.meta_path])
    status = peer_status()
    assert not status["openvino"]["measured"] and "pip install 'torch2ort[peers]'" in status["openvino"]["note"]
    assert status["torch-compile"]["measured"]


def test_peer_names():
    assert peer_names(True) == peer_names("all") == ["torch-compile", "openvino"]
    assert peer_names(False) == peer_names(None) == []
    assert peer_names("openvino, openvino") == ["openvino"]
    with pytest.raises(UsageError, match="takes all or some of torch-compile, openvino; got tvm"):
        BenchOptions(peers="tvm")


def test_cli_bad_peer_exits_2(exported, capsys):
    assert run_cli("bench", FAM.model, *FAM.cli_inputs(), "--onnx", exported("mobilenet"), "--peers", "tvm") == 2
    assert "--peers takes all or some of" in capsys.readouterr().err


@needs_openvino
def test_cli_prints_the_peer_line(exported, capsys):
    rc = run_cli("bench", FAM.model, *FAM.cli_inputs(), "--onnx", exported("mobilenet"), "--iters", "2",
                 "--warmup", "0", "--repeats", "1", "--no-profile", "--threads", "1", "--peers", "openvino")
    assert rc == 0
    out = capsys.readouterr().out
    assert "openvino (OpenVINO" in out and "ONNX Runtime speed-up over it" in out


@needs_openvino
def test_variants_take_worker_jobs_openvino_and_ort_session_options(exported):
    from torch2ort.benchmark.run import bench_variants

    path = str(exported("mobilenet"))
    out = bench_variants(ModelRequest(FAM.model), FAM.spec, {
        "ort basic, no spinning, no arena": {"onnx": path, "graph_level": "basic", "arena": False,
                                             "session_config": {"session.intra_op.allow_spinning": 0}},
        "openvino": {"backend": "openvino", "onnx": path}},
        BenchOptions(batches=[1], iters=2, warmup=0, repeats=1, threads=1), reference="openvino")
    assert set(out["rows"]) == {"torch", "ort basic, no spinning, no arena", "openvino"}
    assert out["rows"]["openvino"]["load_s"] > 0 and set(out["vs_reference"]) == set(out["rows"]) - {"torch"}
