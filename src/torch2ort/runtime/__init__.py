"""The torch-free runtime: load a bundle, pre/post-process, predict (numpy + onnxruntime only)."""

from __future__ import annotations

from torch2ort.runtime.bundle import Bundle, Prediction
from torch2ort.runtime.manifest import FORMAT_VERSION, MANIFEST

__all__ = ["FORMAT_VERSION", "MANIFEST", "Bundle", "Prediction"]
