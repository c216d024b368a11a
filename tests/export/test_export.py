from __future__ import annotations

import onnx
import pytest

from fixtures.families import FAMILIES, MODELS, Family, load_family, run_cli
from torch2ort.errors import ExportError, OutputExistsError
from torch2ort.export import export_onnx, read_metadata
from torch2ort.sources import ModelRequest, load_model
from torch2ort.spec import InputSpec


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_exports_with_dynamo_and_real_dynamic_dims(name, exported):
    path = exported(name)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    spec = FAMILIES[name].spec
    inputs = {i.name: _dims(i) for i in model.graph.input}
    for t in spec.inputs:
        assert inputs[t.name] == t.symbolic_shape()
    labels = set(spec.dynamic_labels())
    # every output carries the batch dim symbolically (it follows the input)
    for out in model.graph.output:
        assert _dims(out)[0] in labels, (out.name, _dims(out))
    meta = read_metadata(path)
    assert meta["torch2ort.exporter"] == "dynamo"
    assert meta["torch2ort.input_spec_sha256"] == spec.sha256()
    assert meta["torch.version"].startswith("2.13.0")
    assert {"onnx.version", "onnx.opset", "torch2ort.source"} <= set(meta)


def test_output_names_come_from_namedtuple_and_dict(exported):
    assert [o.name for o in onnx.load(str(exported("attn_mil"))).graph.output] == \
        ["bag_prob", "bag_logit", "seg_probs", "attn_weights"]
    assert [o.name for o in onnx.load(str(exported("encoder"))).graph.output] == ["last_hidden_state", "pooled"]
    assert [o.name for o in onnx.load(str(exported("mobilenet"))).graph.output] == ["output_0"]


def test_dynamo_failure_falls_back_to_torchscript(tmp_path):
    loaded = load_model(ModelRequest(f"{MODELS}:DataDependentBranch"))
    result = export_onnx(loaded, InputSpec.from_cli(["x:batch=2,4:float32"]), tmp_path / "m.onnx")
    assert result.exporter == "torchscript"
    assert "dynamo failed" in result.why and "data-dependent" in result.why
    out = onnx.load(str(tmp_path / "m.onnx")).graph.output[0]
    assert _dims(out)[0] == "batch"  # output axes are dynamic for the TorchScript exporter too


def test_dynamo_is_tried_first(tmp_path):
    """rfft has no TorchScript symbolic: auto succeeds only because dynamo goes first."""
    loaded = load_model(ModelRequest(f"{MODELS}:SpectralNorm"))
    spec = InputSpec.from_cli(["signal:batch=2,32:float32"])
    with pytest.raises(ExportError, match="fft_rfft"):
        export_onnx(loaded, spec, tmp_path / "ts.onnx", exporter="torchscript")
    result = export_onnx(loaded, spec, tmp_path / "auto.onnx")
    assert result.exporter == "dynamo" and result.attempts == {}


def test_both_fail_names_op_and_module(tmp_path, capsys):
    rc = run_cli("export", f"{MODELS}:Unexportable", "--input", "x:batch=2,4,4:float32", "-o", tmp_path / "u.onnx")
    assert rc == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one paragraph, not a graph dump
    assert "aten::" in err and "eigh" in err
    assert "module 'solver' (_Eig)" in err and "models.py" in err


def test_refuses_to_overwrite(tmp_path, exported):
    path = tmp_path / "m.onnx"
    path.write_text("mine")
    fam = FAMILIES["mobilenet"]
    with pytest.raises(OutputExistsError):
        from torch2ort.outdir import check_writable

        check_writable(path, force=False)
    assert run_cli("export", fam.model, *fam.cli_inputs(), "-o", path) == 2
    assert path.read_text() == "mine"
    assert run_cli("export", fam.model, *fam.cli_inputs(), "-o", path, "--force") == 0


def test_large_models_go_to_external_data(tmp_path, monkeypatch):
    import torch2ort.export.exporters as export_mod

    monkeypatch.setattr(export_mod, "EXTERNAL_DATA_BYTES", 1000)  # pretend 1 kB is "over 2 GB"
    result = export_onnx(load_family("mobilenet"), FAMILIES["mobilenet"].spec, tmp_path / "big.onnx")
    assert result.external_data
    data_files = [p for p in tmp_path.iterdir() if p.name != "big.onnx"]
    assert data_files, "expected an external data file next to the model"
    onnx.checker.check_model(str(tmp_path / "big.onnx"))
    fam = FAMILIES["mobilenet"]
    assert run_cli("verify", fam.model, tmp_path / "big.onnx", *fam.cli_inputs(), "--n", "1") == 0


def test_output_name_count_must_match(tmp_path):
    fam = Family("x", "AttnMil", FAMILIES["attn_mil"].inputs)
    assert run_cli("export", fam.model, *fam.cli_inputs(), "--output-names", "a,b", "-o", tmp_path / "m.onnx") == 2


def test_output_name_that_matches_an_internal_value(tmp_path):
    # The dynamo exporter names the nn.Embedding result "embedding"; asking for an output of that
    # name used to give two definitions of one name (an invalid graph).
    spec = InputSpec.from_cli(["input_ids:batch=2,seq=16:int64:0..99", "attention_mask:batch=2,seq=16:int64:1..1"],
                              ["embedding", "pooled"])
    loaded = load_model(ModelRequest(FAMILIES["encoder"].model))
    out = tmp_path / "e.onnx"
    export_onnx(loaded, spec, out, exporter="dynamo")
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["embedding", "pooled"]
    produced = [o for n in model.graph.node for o in n.output]
    assert produced.count("embedding") == 1


@pytest.mark.parametrize("opset, fragment", [(0, "--opset 0"), (-5, "--opset -5"), (999, "--opset 999")])
def test_opset_outside_what_the_exporters_write_is_refused(tmp_path, capsys, opset, fragment):
    fam = FAMILIES["mobilenet"]
    assert run_cli("export", fam.model, *fam.cli_inputs(), "-o", tmp_path / "m.onnx", "--opset", opset) == 2
    assert fragment in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_opset_is_honoured_or_the_export_fails(tmp_path):
    import onnx

    fam = FAMILIES["mobilenet"]
    # dynamo writes opset 18 when asked for 13; auto then falls back to the TorchScript exporter
    assert run_cli("export", fam.model, *fam.cli_inputs(), "-o", tmp_path / "a.onnx", "--opset", 13) == 0
    model = onnx.load(str(tmp_path / "a.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert {p.key: p.value for p in model.metadata_props}["torch2ort.exporter"] == "torchscript"
    assert run_cli("export", fam.model, *fam.cli_inputs(), "-o", tmp_path / "d.onnx", "--opset", 13,
                   "--exporter", "dynamo") == 3
