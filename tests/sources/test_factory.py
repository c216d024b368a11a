from __future__ import annotations

import pytest

from fixtures.families import MODELS
from torch2ort.errors import SourceError
from torch2ort.sources import ModelRequest, load_model


def test_class_kwargs_and_eval_mode():
    loaded = load_model(ModelRequest(f"{MODELS}:MobileNetTiny", {"classes": 3}))
    assert not loaded.module.training
    assert loaded.module.classifier[1].out_features == 3
    assert any("eval mode" in n for n in loaded.notes)


def test_module_path_instance_and_factory(tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(
        "import torch\nINSTANCE = torch.nn.Linear(2, 2)\n"
        "def make(width=3):\n    return torch.nn.Linear(2, width)\nNOT_A_MODEL = 5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model(ModelRequest("mypkg.nets:INSTANCE")).module.out_features == 2
    assert load_model(ModelRequest("mypkg.nets:make", {"width": 4})).module.out_features == 4
    with pytest.raises(SourceError, match="not an nn.Module"):
        load_model(ModelRequest("mypkg.nets:NOT_A_MODEL"))
    with pytest.raises(SourceError, match="cannot be called with --kwargs"):
        load_model(ModelRequest("mypkg.nets:make", {"depth": 1}))
    with pytest.raises(SourceError, match="no attribute 'missing'"):
        load_model(ModelRequest("mypkg.nets:missing"))
    with pytest.raises(SourceError, match="cannot import module"):
        load_model(ModelRequest("nopkg.nets:make"))


def test_same_weights_across_builds():
    a = load_model(ModelRequest(f"{MODELS}:EcgResNet1d")).module
    b = load_model(ModelRequest(f"{MODELS}:EcgResNet1d")).module
    assert all((x == y).all() for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_missing_file_and_bad_model_string(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        load_model(ModelRequest(f"{tmp_path}/nope.py:Net"))
    with pytest.raises(SourceError, match="not recognised"):
        load_model(ModelRequest("just_a_name"))
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('boom')\n")
    with pytest.raises(SourceError, match="importing .* failed: ValueError: boom"):
        load_model(ModelRequest(f"{broken}:Net"))
