from __future__ import annotations

import pytest
import torch

from fixtures.families import run_cli
from fixtures.models import MobileNetTiny
from torch2ort.errors import SourceError
from torch2ort.sources import ModelRequest, load_model


def test_torchscript_archive_exports_and_verifies(tmp_path):
    torch.manual_seed(0)
    scripted = torch.jit.script(MobileNetTiny().eval())
    archive = tmp_path / "net.pt"
    torch.jit.save(scripted, str(archive))
    loaded = load_model(ModelRequest(str(archive)))
    assert loaded.kind == "torchscript" and not loaded.module.training
    out = tmp_path / "net.onnx"
    spec = ["--input", "image:batch=1,3,32,32:float32"]
    assert run_cli("export", archive, *spec, "-o", out) == 0
    assert run_cli("verify", archive, out, *spec, "--n", "2") == 0


def test_not_an_archive(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, path)  # a zip, but a state_dict, not TorchScript
    with pytest.raises(SourceError, match="--checkpoint"):
        load_model(ModelRequest(str(path)))
