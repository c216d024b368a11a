from __future__ import annotations

import collections

import pytest
import torch

from fixtures.families import MODELS
from torch2ort.errors import CheckpointError
from torch2ort.sources import ModelRequest, load_model

TARGET = f"{MODELS}:EcgResNet1d"


def _trained_state():
    torch.manual_seed(123)
    from fixtures.models import EcgResNet1d

    return EcgResNet1d().state_dict()


def _load(path, **kw):
    return load_model(ModelRequest(TARGET, checkpoint=str(path), **kw)).module


def _same(module, state):
    return all(torch.equal(module.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("wrap", ["bare", "model_state_dict", "state_dict", "model", "dataparallel"])
def test_state_dict_layouts(tmp_path, wrap):
    state = _trained_state()
    if wrap == "bare":
        obj = state
    elif wrap == "dataparallel":
        obj = {"state_dict": collections.OrderedDict((f"module.{k}", v) for k, v in state.items())}
    else:
        obj = {wrap: state, "epoch": 7, "optimizer": {"lr": 0.1}}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    assert _same(_load(path), state)


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = _trained_state()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert _same(_load(path), state)


class Custom:  # a pickled object that needs code execution to come back
    def __init__(self, state):
        self.state = state


def test_pickle_needs_trust(tmp_path):
    state = _trained_state()
    path = tmp_path / "unsafe.pt"
    torch.save({"model": state, "extra": Custom(1)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        _load(path)
    assert _same(_load(path, trust_checkpoint=True), state)


def test_key_mismatches_are_listed(tmp_path):
    state = _trained_state()
    state["head.extra"] = torch.zeros(1)
    del state["stem.1.running_mean"]
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        _load(path)
    msg = str(err.value)
    assert "1 missing: stem.1.running_mean" in msg and "1 unexpected: head.extra" in msg
    module = load_model(ModelRequest(TARGET, checkpoint=str(path), strict=False))
    assert any("key mismatch" in n for n in module.notes)


def test_shape_mismatch_is_never_loaded(tmp_path):
    state = _trained_state()
    state["head.weight"] = torch.zeros(9, 16)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"wrong shape: head.weight \(checkpoint \(9, 16\)"):
        load_model(ModelRequest(TARGET, checkpoint=str(path), strict=False))


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        _load(path)
    with pytest.raises(CheckpointError, match="not found"):
        _load(tmp_path / "missing.pt")
