"""The measurement plumbing on a tiny model: isolation, JSON schema, ratios. No timing is asserted."""

from __future__ import annotations

import json
import os

import pytest

from fixtures.families import FAMILIES, MODELS, run_cli
from torch2ort.benchmark import BenchOptions, BenchReport, LatencyStats, Ratio, bench
from torch2ort.errors import UsageError
from torch2ort.sources import ModelRequest

FAM = FAMILIES["mobilenet"]


@pytest.fixture(scope="module")
def bench_report(exported):
    return bench(ModelRequest(FAM.model), FAM.spec, exported("mobilenet"),
                 BenchOptions(batches=[1, 3], iters=5, warmup=1, repeats=2))


def test_every_backend_ran_in_its_own_process(bench_report):
    pids = [r["pid"] for r in bench_report.runs + bench_report.cold_runs]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids
    for r in bench_report.runs + bench_report.cold_runs:
        # The ORT side never even imports torch, so torch's thread pool cannot disturb it.
        assert r["torch_imported"] == (r["label"] == "torch")
    assert sorted(r["label"] for r in bench_report.runs) == ["onnxruntime", "onnxruntime", "torch", "torch"]


def test_report_schema_and_json_round_trip(bench_report):
    data = json.loads(bench_report.to_json())
    assert {"machine", "versions", "options", "runs", "cold_runs", "ratios", "cold", "overhead", "rows"} <= set(data)
    assert data["options"]["threads"] >= 1 and data["batch_label"] == "batch"
    rows = data["rows"]
    assert {(r["backend"], r["batch"]) for r in rows} == {(b, n) for b in ("torch", "onnxruntime") for n in (1, 3)}
    for r in rows:
        assert {"mean", "p50", "p90", "p99", "min", "max", "throughput", "peak_rss_mb", "size_mb"} <= set(r)
        assert r["min"] <= r["p50"] <= r["p99"] <= r["max"] and r["repeats"] == 2
    for label in ("torch", "onnxruntime"):
        c = data["cold"][label]
        assert c["total_s"] == pytest.approx(c["import_s"] + c["load_s"] + c["first_inference_s"], rel=0.5)
    assert set(data["ratios"]["onnxruntime"]) == {"1", "3"}
    assert data["overhead"]["calls"] == 5 and "overhead_pct" in data["overhead"]
    again = BenchReport.from_dict(data)
    assert again.rows() == bench_report.rows() and again.ratios == bench_report.ratios


def test_ratios_follow_the_per_repeat_p50s(bench_report):
    for b in ("1", "3"):
        torch_p50 = [r["batches"][b]["stats"]["p50"] for r in sorted(bench_report.runs, key=lambda r: r["repeat"])
                     if r["label"] == "torch"]
        ort_p50 = [r["batches"][b]["stats"]["p50"] for r in sorted(bench_report.runs, key=lambda r: r["repeat"])
                   if r["label"] == "onnxruntime"]
        expected = [t / o for t, o in zip(torch_p50, ort_p50)]
        assert bench_report.ratios["onnxruntime"][b]["values"] == pytest.approx(expected)


def test_ratio_and_stats_arithmetic():
    r = Ratio.of([2.0, 4.0, 6.0], [1.0, 2.0, 2.0])
    assert (r.median, r.min, r.max, r.values) == (2.0, 2.0, 3.0, [2.0, 2.0, 3.0])
    assert str(r) == "unstable (2.00× [2.00–3.00]: A/B repeats spread 50% of the median (limit 25%))"
    assert str(Ratio.of([2.0, 2.1], [1.0, 1.0])) == "2.05× [2.00–2.10]"
    with pytest.raises(ValueError):
        Ratio.of([1.0], [])
    s = LatencyStats.from_samples([1.0, 2.0, 3.0, 4.0], batch=8)
    assert (s.n, s.mean, s.p50, s.min, s.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert s.throughput == pytest.approx(8 * 1000 / 2.5)


def test_cli_writes_json_and_plot(exported, tmp_path, capsys):
    rc = run_cli("bench", FAM.model, *FAM.cli_inputs(), "--onnx", exported("mobilenet"), "--iters", "3",
                 "--repeats", "1", "--no-profile", "--json", tmp_path / "b.json", "--plot", tmp_path / "b.svg")
    assert rc == 0
    out = capsys.readouterr().out
    assert "speed-up vs torch" in out and "Cold start" in out
    assert json.loads((tmp_path / "b.json").read_text())["overhead"] is None
    assert "<svg" in (tmp_path / "b.svg").read_text()


@pytest.mark.parametrize("args, fragment", [
    (["--batch", "1,x"], "expected sizes like 1,8"),
    (["--providers", "cuda"], "not available in this onnxruntime build"),
    (["--providers", "gpu"], "takes cpu, cuda, tensorrt"),
])
def test_bad_invocations_exit_2(exported, capsys, args, fragment):
    onnx_path = exported("mobilenet")
    import onnxruntime as ort

    if "cuda" in args and "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    assert run_cli("bench", FAM.model, *FAM.cli_inputs(), "--onnx", onnx_path, "--iters", "2", *args) == 2
    assert fragment in capsys.readouterr().err


def test_static_batch_cannot_sweep(tmp_path):
    spec_args = ["--input", "x:2,4:float32"]
    path = tmp_path / "m.onnx"
    assert run_cli("export", f"{MODELS}:DataDependentBranch", *spec_args, "-o", path) == 0
    with pytest.raises(UsageError, match="dynamic batch dim"):
        from torch2ort.spec import InputSpec

        bench(ModelRequest(f"{MODELS}:DataDependentBranch"), InputSpec.from_cli(spec_args[1:]), path,
              BenchOptions(batches=[4], iters=2))


@pytest.mark.gpu
def test_cuda_iobinding_and_torch_cuda(exported):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA execution provider on this machine")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    rep = bench(ModelRequest(FAM.model), FAM.spec, exported("mobilenet"),
                BenchOptions(batches=[1], iters=5, repeats=1, providers=["cpu", "cuda"], profile=False))
    assert {"torch-cuda", "onnxruntime-cuda"} <= {r["label"] for r in rep.runs}
    assert "onnxruntime-cuda" in rep.ratios


@pytest.mark.slow
def test_torch_compile_row_reports_compile_time_apart(exported):
    rep = bench(ModelRequest(FAM.model), FAM.spec, exported("mobilenet"),
                BenchOptions(batches=[1], iters=5, warmup=1, repeats=1, compile=True, profile=False))
    compiled = [r for r in rep.runs if r["label"] == "torch.compile"]
    assert len(compiled) == 1 and "1" in compiled[0]["batches"]
    assert rep.compile_s is not None and rep.compile_s == compiled[0]["cold"]["first_inference_s"]
    assert "torch.compile" in {r["backend"] for r in rep.rows()}
    # --compile is the torch.compile peer: its compile time apart, no cold-only process, a ratio against ORT
    assert not [r for r in rep.cold_runs if r["label"] == "torch.compile"]
    assert rep.peers["torch-compile"]["compile_s"] == rep.compile_s
    assert set(rep.ratios) >= {"torch.compile", "onnxruntime vs torch.compile"}


def test_a_ratio_whose_repeats_disagree_is_unstable_not_a_result():
    from torch2ort.benchmark.stats import Ratio, ratio_text

    steady = Ratio.of([10.0, 10.2, 9.9], [5.0, 5.1, 5.0], jitter=1.1)
    assert steady.stable and str(steady).startswith("2.00×")
    wide = Ratio.of([10.0, 10.0], [45.0, 4.8])  # the seed's "1.15× at batch 8 [0.22–2.07]" kind of spread
    assert not wide.stable and "spread" in wide.why and str(wide).startswith("unstable")
    jittery = Ratio.of([10.0, 10.0], [5.0, 5.0], jitter=2.4)
    assert not jittery.stable and "p90/p50" in jittery.why
    assert ratio_text({"median": 1.15, "min": 0.22, "max": 2.07, "stable": False, "why": "x"}).startswith("unstable")


def test_noise_is_recorded_around_a_measurement():
    from torch2ort._env import noise_between, noise_snapshot

    before = noise_snapshot()
    sum(i * i for i in range(200_000))
    noise = noise_between(before, noise_snapshot())
    assert noise["loadavg_before"] is not None and noise["steal_pct"] is not None and 0 <= noise["steal_pct"] <= 100
