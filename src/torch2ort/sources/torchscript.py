"""TorchScript source: an archive written by ``torch.jit.save``."""

from __future__ import annotations

import zipfile
from pathlib import Path

from torch2ort.errors import SourceError
from torch2ort.sources import LoadedModel, ModelRequest


def load(req: ModelRequest) -> LoadedModel:
    import torch

    path = Path(req.model)
    if not path.is_file():
        raise SourceError(f"model file not found: {req.model}")
    if req.checkpoint or req.kwargs:
        raise SourceError("--checkpoint and --kwargs do not apply to a TorchScript archive; "
                          "its weights and constructor arguments are already inside it")
    if not zipfile.is_zipfile(path):
        raise SourceError(f"{req.model} is not a TorchScript archive (torch.jit.save writes a zip). "
                          "For a state_dict, use MODEL=file.py:NAME --checkpoint " + req.model)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{req.model} is not a loadable TorchScript archive ({first}). For a "
                          f"state_dict, use MODEL=file.py:NAME --checkpoint {req.model}") from None
    return LoadedModel(module, req.model, "torchscript", [f"loaded TorchScript archive {req.model}"])
