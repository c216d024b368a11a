"""torch2ort.api: the CLI's commands from Python, with the same checks whichever way a value arrives."""

from __future__ import annotations

import math

import pytest

import torch2ort
from fixtures.families import FAMILIES, MODELS, run_cli
from torch2ort import api
from torch2ort.errors import SpecError, UsageError

FAM = FAMILIES["mobilenet"]


@pytest.mark.parametrize("call, fragment", [
    (lambda o: torch2ort.verify_onnx(FAM.model, o, FAM.spec, atol=math.nan), "--atol nan"),
    (lambda o: torch2ort.verify_onnx(FAM.model, o, FAM.spec, rtol=math.inf), "--rtol inf"),
    (lambda o: torch2ort.verify_onnx(FAM.model, o, FAM.spec, n=100_000_000), "--n 100000000"),
    (lambda o: torch2ort.verify_onnx(FAM.model, o, FAM.spec, sweep=["batch=100000000"]), "--sweep batch"),
    (lambda o: torch2ort.verify_onnx(FAM.model, o, FAM.spec, sweep={"batch": [0]}), "--sweep batch"),
    (lambda o: torch2ort.bench(FAM.model, o, FAM.spec, seconds=math.nan), "--seconds nan"),
    (lambda o: torch2ort.bench(FAM.model, o, FAM.spec, repeats=0), "--repeats 0"),
    (lambda o: torch2ort.bench(FAM.model, o, FAM.spec, batch=[1, -3]), "--batch -3"),
    (lambda o: torch2ort.bench(FAM.model, o, FAM.spec, threads=True), "--threads True"),
    (lambda o: torch2ort.migrate(FAM.model, o.parent / "m", FAM.spec, n=math.nan), "--n nan"),
    (lambda o: torch2ort.migrate(FAM.model, o.parent / "m", FAM.spec, seconds=-1.0), "--seconds -1"),
    (lambda o: torch2ort.optimize(FAM.model, o, FAM.spec, output=o.parent / "x.onnx", smooth=math.nan),
     "--smooth nan"),
    (lambda o: torch2ort.pack(FAM.model, o.parent / "b", FAM.spec, n=0), "--n 0"),
    (lambda o: torch2ort.optimize(FAM.model, o, FAM.spec, output=o.parent / "x.onnx", accept=["maxabs<=1e999"]),
     "--accept maxabs<=inf"),
    (lambda o: torch2ort.migrate(FAM.model, o.parent / "m", FAM.spec, accept="cosine>=1.5"), "--accept cosine>=1.5"),
])
def test_bad_values_are_usage_errors_before_any_work(exported, call, fragment):
    with pytest.raises(UsageError, match=fragment.replace("[", r"\[")) as info:
        call(exported("mobilenet"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("argv, fragment", [
    (["verify", "--atol", "nan"], "--atol nan"),
    (["verify", "--rtol", "-1"], "--rtol -1"),
    (["verify", "--n", "100000000"], "--n 100000000"),
    (["verify", "--sweep", "batch=100000000"], "--sweep batch"),
    (["bench", "--seconds", "nan"], "--seconds nan"),  # looped forever before
])
def test_cli_refuses_the_same_values_in_one_line(exported, capsys, argv, fragment):
    command, *rest = argv
    where = ["--onnx", exported("mobilenet")] if command == "bench" else [exported("mobilenet")]
    assert run_cli(command, FAM.model, *where, *FAM.cli_inputs(), *rest) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err


def test_a_nan_tolerance_from_a_config_file_is_refused(exported, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'model = "{FAM.model}"\ninputs = ["{FAM.inputs[0]}"]\n[verify]\natol = nan\n')
    assert run_cli("verify", exported("mobilenet"), "--config", cfg) == 2
    assert "--atol nan" in capsys.readouterr().err


def test_command_line_inputs_replace_the_config_list(exported, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'model = "{FAM.model}"\ninputs = ["image:batch=1,3,5,5:float32", "extra:2:float32"]\n')
    # the config's two inputs do not fit the model; the command line's one does, and it wins whole
    assert run_cli("export", "--config", cfg, *FAM.cli_inputs(), "-o", tmp_path / "m.onnx") == 0
    assert run_cli("export", "--config", cfg, "-o", tmp_path / "n.onnx") != 0


def test_config_booleans_must_be_booleans(tmp_path):
    from torch2ort.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "m.py:Net"\ntrust_checkpoint = "false"\n')
    with pytest.raises(SpecError, match="trust_checkpoint must be true or false"):
        load_config(cfg)


def test_a_live_module_exports_and_verifies_but_cannot_be_benchmarked(tmp_path):
    from fixtures.models import MobileNetTiny

    net = MobileNetTiny().train()
    result = torch2ort.export_onnx(net, FAM.inputs, tmp_path / "m.onnx")
    assert not net.training and result.exporter == "dynamo"
    assert torch2ort.verify_onnx(net, result.path, FAM.inputs, n=1).report
    with pytest.raises(UsageError, match="needs a MODEL reference"):
        torch2ort.bench(net, result.path, FAM.inputs)
    with pytest.raises(UsageError, match="already exists"):
        torch2ort.export_onnx(net, FAM.inputs, tmp_path / "m.onnx")


def test_sweep_forms_agree():
    spec = FAM.spec
    assert api.sweep_sizes(["batch=2,4"], spec) == api.sweep_sizes({"batch": [4, 2]}, spec) == {"batch": [2, 4]}
    assert api.sweep_sizes(None, spec) == {"batch": [1, 3, 7]}
    assert api.sweep_sizes(["seq=8"], None) == {"seq": [8]}  # an hf: spec is known later
    with pytest.raises(SpecError, match="not a dynamic dim label; valid: batch"):
        api.sweep_sizes(["seq=8"], spec)


def test_model_options_reach_the_request():
    req = api.model_request(f"{MODELS}:MobileNetTiny", kwargs='{"classes": 3}', strict=False)
    assert req.kwargs == {"classes": 3} and req.strict is False
    with pytest.raises(SpecError, match="JSON object"):
        api.model_request("m.py:Net", kwargs="[1]")
