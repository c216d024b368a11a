"""optimize(): every variant re-verified, failing ones refused, the fastest passing one written."""

from __future__ import annotations

import json

import onnx
import pytest

from fixtures import faults
from fixtures.families import FAMILIES, load_family, run_cli
from torch2ort.benchmark.run import BenchOptions
from torch2ort.errors import OutputExistsError
from torch2ort.optimization.planner import BASELINE, optimize, plan_auto
from torch2ort.sources import ModelRequest


def _labels(chains):
    return ["+".join(p.label for p in c) for c in chains]


def test_auto_plans_by_graph_kind(exported):
    cnn, cnn_fallback = plan_auto(exported("mobilenet"), ["CPUExecutionProvider"])
    assert "int8-static" in _labels(cnn) and "graph" in _labels(cnn)
    # only when no all-int8 variant passes: first and last in float, then the k noisiest layers (1, 2, 4…)
    assert _labels(cnn_fallback)[0] == "int8-static[exclude=first+last]"
    ladder = _labels(cnn_fallback)[1:]
    assert ladder[:2] == ["int8-static[float-layers=1]", "int8-static[float-layers=2]"]
    assert all(x.startswith("int8-static[float-layers=") for x in ladder)
    # ... on each calibration method; optimize climbs the one whose whole-model variant came closer
    assert "int8-static[float-layers=1,method=percentile]" in ladder
    enc, fallback = plan_auto(exported("encoder"), ["CPUExecutionProvider"])
    assert {"transformer", "transformer[skip-norm=unfused]+int8-dynamic[per-channel]"} <= set(_labels(enc))
    # fused only to MultiHeadAttention: the Q/K/V projections in int8 too, with and without SmoothQuant;
    # on CPU the residual add and LayerNormalization stay apart
    assert {"transformer[attention=mha,skip-norm=unfused]+int8-dynamic[per-channel]",
            "transformer[attention=mha,skip-norm=unfused]+int8-dynamic[per-channel,smooth=0.7]"} <= set(_labels(enc))
    assert not any("exclude" in x for x in _labels(enc))  # keeping layers in float is only a fallback
    assert any("exclude-last" in x for x in _labels(fallback))
    assert any("exclude-outliers" in x for x in _labels(fallback))
    assert _labels(fallback)[-1].startswith("int8-static")
    gpu, _ = plan_auto(exported("encoder"), ["CUDAExecutionProvider"])
    assert "transformer+fp16" in _labels(gpu)
    assert not any("skip-norm" in x for x in _labels(gpu))


def test_auto_returns_a_passing_variant_and_writes_it(exported, tmp_path):
    fam = FAMILIES["ecg_resnet1d"]
    out = tmp_path / "opt.onnx"
    result = optimize(load_family("ecg_resnet1d"), ModelRequest(fam.model), exported("ecg_resnet1d"), fam.spec,
                      out=out, bench_opts=BenchOptions(batches=[2], seconds=0.2, repeats=1, warmup=1))
    chosen = result.variant(result.chosen)
    assert chosen.passed and result.output == str(out)
    assert result.gates["output_0"].text().startswith("output_0:decision>=")
    benched = [v for v in result.variants if v.latency]
    assert {v.name for v in benched} == {v.name for v in result.variants if v.passed}
    assert chosen.latency["p50"] == min(v.latency["p50"] for v in benched)
    assert any(v.pareto for v in benched) and chosen.vs_torch["median"] > 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["torch2ort.optimize.variant"] == result.chosen
    assert props["torch2ort.source"]  # the export's provenance survives the passes


def test_unattainable_gate_is_refused_and_nothing_is_written(exported, tmp_path):
    fam = FAMILIES["mobilenet"]
    out = tmp_path / "opt.onnx"
    # bit-exact outputs: not even the fp32 export meets it (ORT's convolutions round differently)
    result = optimize(load_family("mobilenet"), None, exported("mobilenet"), fam.spec, accept=["maxabs<=0"],
                      out=out)
    assert result.chosen is None and result.output is None and not out.exists()
    assert not any(v.passed for v in result.variants)
    assert "fp32 export itself fails" in result.message
    assert all(v.gate["checks"][0]["value"] is not None for v in result.variants if not v.error)


def test_explicit_chain_that_fails_its_gate_is_listed_not_written(exported, tmp_path):
    fam = FAMILIES["ecg_resnet1d"]
    out = tmp_path / "opt.onnx"
    # A gate the fp32 export meets (it is exact to ~1e-7) but int8 cannot.
    result = optimize(load_family("ecg_resnet1d"), None, exported("ecg_resnet1d"), fam.spec,
                      passes=["int8-static"], accept=["maxabs<=1e-6"], out=out)
    assert result.variant(BASELINE).passed
    failed = result.variant("int8-static")
    assert not failed.passed and failed.gate["checks"][0]["value"] > 1e-6
    assert result.chosen is None and not out.exists()
    assert "nothing written" in result.message


def test_planted_fault_fails_every_variant(exported, tmp_path):
    bad = tmp_path / "bad.onnx"
    faults.perturb_weight(exported("mobilenet"), bad)
    fam = FAMILIES["mobilenet"]
    result = optimize(load_family("mobilenet"), None, bad, fam.spec, passes=["graph"], accept=["maxabs<=1e-3"])
    assert not result.variant(BASELINE).passed and not result.variant("graph").passed


def test_existing_output_needs_force(exported, tmp_path):
    out = tmp_path / "opt.onnx"
    out.write_text("mine")
    fam = FAMILIES["mobilenet"]
    with pytest.raises(OutputExistsError):
        optimize(load_family("mobilenet"), None, exported("mobilenet"), fam.spec, passes=["graph"], out=out)
    assert out.read_text() == "mine"


def test_cli_optimize_json_and_exit_codes(exported, tmp_path, capsys):
    fam = FAMILIES["encoder"]
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    rc = run_cli("optimize", fam.model, exported("encoder"), *fam.cli_inputs(), "-o", out, "--passes",
                 "transformer,int8-dynamic", "--per-channel", "--no-bench", "--json", report)
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file(), text
    data = json.loads(report.read_text())
    names = [v["name"] for v in data["variants"]]
    assert names == ["fp32", "transformer+int8-dynamic[per-channel]"]
    assert data["chosen"] == "transformer+int8-dynamic[per-channel]"
    assert "transformer+int8-dynamic[per-channel]" in text  # rich markup must not eat the brackets
    rc = run_cli("optimize", fam.model, exported("encoder"), *fam.cli_inputs(), "-o", tmp_path / "x.onnx",
                 "--passes", "graph", "--no-bench", "--accept", "maxabs<=0")
    assert rc == 1 and not (tmp_path / "x.onnx").exists()
    rc = run_cli("optimize", fam.model, exported("encoder"), *fam.cli_inputs(), "-o", tmp_path / "x.onnx",
                 "--passes", "graph", "--no-bench", "--accept", "cosine>=2")  # no value can meet it: a usage error
    assert rc == 2 and not (tmp_path / "x.onnx").exists()
    rc = run_cli("optimize", fam.model, exported("encoder"), *fam.cli_inputs(), "-o", tmp_path / "y.onnx",
                 "--passes", "int4")
    assert rc == 2 and "unknown pass 'int4'" in capsys.readouterr().err


def test_optimize_leaves_the_working_directory_clean(tmp_path, monkeypatch):
    """A tiny BERT defeats ORT's symbolic shape inference, which then drops temp files into the cwd."""
    pytest.importorskip("transformers")
    from fixtures.hf import bert_dir
    from torch2ort.export import export_onnx
    from torch2ort.sources import load_model

    request = ModelRequest(f"hf:{bert_dir(tmp_path / 'bert', num_labels=2)}")
    loaded = load_model(request)
    onnx_path = export_onnx(loaded, loaded.hints.spec, tmp_path / "bert.onnx").path
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = optimize(loaded, request, onnx_path, loaded.hints.spec, passes="int8-static",
                      out=tmp_path / "opt.onnx", bench_opts=None)
    assert any(v.name.startswith("int8-static") and v.error is None for v in result.variants)
    assert sorted(p.name for p in cwd.iterdir()) == []


def test_text_models_are_gated_on_real_text(tmp_path):
    """With real samples, a text model's gate reads them only; synthetic ids are still verified for parity."""
    from torch2ort.inputs import InputCase
    from torch2ort.optimization.planner import _gate_cases
    from torch2ort.spec import InputSpec

    spec = InputSpec.from_cli(["input_ids:batch=2,seq=8:int64:0..99"])
    cases = [InputCase("synthetic-0", {}, kind="synthetic"), InputCase("real-text", {}, kind="sample")]
    assert _gate_cases(spec, cases)[0]["cases"] == ["real-text"]
    assert _gate_cases(spec, cases[:1])[0]["cases"] == ["synthetic-0"]
    image = InputSpec.from_cli(["x:batch=1,3,8,8:float32"])
    assert _gate_cases(image, cases)[0]["cases"] == ["synthetic-0", "real-text"]
    # with four or more texts, every other one is kept back to confirm the choice (issue 24)
    texts = [InputCase(f"text-{i}", {}, kind="sample") for i in range(5)]
    chosen, kept = _gate_cases(spec, texts)
    assert chosen["cases"] == ["text-0", "text-2", "text-4"] and [c.name for c in kept] == ["text-1", "text-3"]


def test_the_float_layers_ladder_climbs_from_the_closer_calibration():
    """The trained ECG of issue 24: percentile calibration came within a hair of its gate, minmax far from it,
    so the float-layers ladder builds on percentile."""
    from torch2ort.optimization.planner import Variant, _closest_method
    from torch2ort.parity.gates import Gate

    gates = {"y": Gate("decision", 0.99, "y")}

    def variant(name: str, value: float, bound: float) -> Variant:
        v = Variant(name, [name])
        v.gate = {"checks": [{"output": "y", "value": value, "bound": bound}]}
        return v

    far, near = variant("int8-static", 0.944, 0.93), variant("int8-static[method=percentile]", 0.995, 0.987)
    assert _closest_method([variant(BASELINE, 1.0, 0.996), far, near], gates) == "percentile"
    near.error = "failed to build"
    assert _closest_method([far, near], gates) == "minmax"
    assert _closest_method([], gates) == "minmax"
