"""Pin what ``import torch2ort`` exports, and that importing it does not import torch."""

from __future__ import annotations

import subprocess
import sys

import torch2ort


def test_public_names():
    assert torch2ort.__all__ == sorted([
        "BundleError", "Dim", "ExportError", "InputSpec", "ModelRequest", "ParityError", "ParityReport",
        "RunResults", "TensorSpec", "Torch2OrtError", "UsageError", "__version__", "compare", "export_onnx",
        "load_model", "optimize", "run", "verify_onnx"])
    for name in torch2ort.__all__:
        assert getattr(torch2ort, name) is not None


def test_import_does_not_pull_torch():
    code = "import sys, torch2ort, torch2ort.spec, torch2ort.parity.compare; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
