from __future__ import annotations

import pytest

from fixtures.families import MODELS, run_cli
from torch2ort.config import config_inputs, load_config
from torch2ort.errors import SpecError
from torch2ort.spec import InputSpec


def test_string_and_table_inputs_mean_the_same(tmp_path):
    a = tmp_path / "a.toml"
    a.write_text('inputs = ["x:batch=1,3,8,8:float32:0..1"]\n')
    b = tmp_path / "b.toml"
    b.write_text('[[input]]\nname = "x"\ndims = ["batch=1", 3, 8, 8]\ndtype = "float32"\nlow = 0\nhigh = 1\n')
    assert InputSpec.from_cli(config_inputs(load_config(a))) == InputSpec.from_cli(config_inputs(load_config(b)))


@pytest.mark.parametrize("text, fragment", [
    ("modle = 'x'", "unknown key"),
    ("[verify]\nnn = 3", "unknown key"),
    ("inputs = [", "not valid TOML"),
    ("inputs = [1]", "list of NAME:DIMS:DTYPE"),
])
def test_bad_config(tmp_path, text, fragment):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(SpecError, match=fragment):
        config_inputs(load_config(p))


def test_config_drives_export_and_verify(tmp_path, capsys):
    cfg = tmp_path / "torch2ort.toml"
    cfg.write_text(f'model = "{MODELS}:MobileNetTiny"\nkwargs = {{ classes = 3 }}\n'
                   'inputs = ["image:batch=1,3,32,32:float32:0..1"]\noutput_names = ["logits"]\n'
                   '[export]\nexporter = "dynamo"\n[verify]\nn = 2\nsweep = { batch = [2] }\n')
    onnx_path = tmp_path / "m.onnx"
    assert run_cli("export", "--config", cfg, "-o", onnx_path) == 0
    assert run_cli("verify", onnx_path, "--config", cfg) == 0
    out = capsys.readouterr().out
    assert "logits" in out and "2 synthetic, 1 sweep" in out


def test_preprocess_module_resolves_against_the_config_folder(tmp_path):
    from torch2ort.config import load_config

    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "sub" / "t.toml"
    cfg.write_text('model = "m.py:Net"\npreprocess_module = "pre.py:MelFrontEnd"\n')
    assert load_config(str(cfg))["preprocess_module"] == f"{tmp_path / 'sub' / 'pre.py'}:MelFrontEnd"
    cfg.write_text('model = "m.py:Net"\npreprocess_module = "pkg.front:MelFrontEnd"\n')
    assert load_config(str(cfg))["preprocess_module"] == "pkg.front:MelFrontEnd"
