"""Runners execute the same feeds on each backend; looked up by name in RUNNERS."""

from __future__ import annotations

from torch2ort.errors import RunnerError
from torch2ort.runners.base import Runner

# name -> "module:Class", imported on use so the ORT runner never pulls in torch.
RUNNERS = {
    "torch": "torch2ort.runners.torch_eager:TorchRunner",
    "onnxruntime": "torch2ort.runners.ort:OrtRunner",
    "web": "torch2ort.runners.web:WebRunner",
}


def runner_class(name: str) -> type[Runner]:
    import importlib

    from torch2ort.errors import UsageError, unknown_name

    if name not in RUNNERS:
        raise UsageError(unknown_name("runner", name, list(RUNNERS)))
    module, _, cls = RUNNERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["RUNNERS", "Runner", "RunnerError", "runner_class"]
