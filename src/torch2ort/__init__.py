"""torch2ort: migrate PyTorch models to ONNX Runtime, and prove every claim.

Importing the package never imports torch; the torch-facing pieces load on first use. Each name
below is one object whichever submodule was imported first: the functions live in
``torch2ort.api`` (the CLI's commands, same options), and no subpackage shares their names.

Example::

    import torch2ort
    result = torch2ort.migrate("hf:./all-MiniLM-L6-v2", "out", optimize="auto")
    bundle = torch2ort.Bundle.load("out/bundle")
"""

from __future__ import annotations

__version__ = "0.1.0"

from torch2ort.errors import (  # noqa: E402  (version first: submodules read it)
    BundleError,
    ExportError,
    ParityError,
    Torch2OrtError,
    UsageError,
)
from torch2ort.spec import Dim, InputSpec, TensorSpec  # noqa: E402

_LAZY = {
    "migrate": "torch2ort.api",
    "export_onnx": "torch2ort.api",
    "verify_onnx": "torch2ort.api",
    "optimize": "torch2ort.api",
    "bench": "torch2ort.api",
    "pack": "torch2ort.api",
    "load": "torch2ort.api",
    "ModelRequest": "torch2ort.sources",
    "load_model": "torch2ort.sources",
    "ParityReport": "torch2ort.parity.compare",
    "RunResults": "torch2ort.parity.compare",
    "compare": "torch2ort.parity.compare",
    "run": "torch2ort.parity.compare",
    "Bundle": "torch2ort.runtime",
    "serve": "torch2ort.serve",   # the server package (torch-free); its entry point is torch2ort.serve.serve
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
        globals()[name] = value  # later lookups skip __getattr__; the object is the same either way
        return value
    raise AttributeError(f"module 'torch2ort' has no attribute {name!r}")


__all__ = [
    "Bundle", "BundleError", "Dim", "ExportError", "InputSpec", "ModelRequest", "ParityError", "ParityReport",
    "RunResults", "TensorSpec", "Torch2OrtError", "UsageError", "__version__", "bench", "compare", "export_onnx",
    "load", "load_model", "migrate", "optimize", "pack", "run", "serve", "verify_onnx",
]
