"""torch2ort: migrate PyTorch models to ONNX Runtime, and prove every claim.

Importing the package never imports torch; the torch-facing pieces load on first use.
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
    "ModelRequest": "torch2ort.sources",
    "load_model": "torch2ort.sources",
    "export_onnx": "torch2ort.export.exporters",
    "verify_onnx": "torch2ort.parity.verify",
    "optimize": "torch2ort.optimization.planner",
    "ParityReport": "torch2ort.parity.compare",
    "RunResults": "torch2ort.parity.compare",
    "compare": "torch2ort.parity.compare",
    "run": "torch2ort.parity.compare",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torch2ort' has no attribute {name!r}")


__all__ = [
    "BundleError", "Dim", "ExportError", "InputSpec", "ModelRequest", "ParityError", "ParityReport",
    "RunResults", "TensorSpec", "Torch2OrtError", "UsageError", "__version__", "compare", "export_onnx",
    "load_model", "optimize", "run", "verify_onnx",
]
