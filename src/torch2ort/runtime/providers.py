"""Execution-provider selection with loud CUDA/TensorRT -> CPU fallback, and thread defaults."""

from __future__ import annotations

import logging
import os

from torch2ort.errors import BundleError, unknown_name

log = logging.getLogger("torch2ort.runtime")

ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
ENV = "TORCH2ORT_PROVIDERS"


def requested_providers(providers: list[str] | str | None) -> list[str]:
    """Full provider names from the argument, else $TORCH2ORT_PROVIDERS, else CPU; CPU always last."""
    if providers is None:
        providers = os.environ.get(ENV) or "cpu"
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    names = []
    for p in providers:
        full = ALIASES.get(p.lower(), p)
        if not full.endswith("ExecutionProvider"):
            raise BundleError(unknown_name("execution provider", p, list(ALIASES)))
        names.append(full)
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


def usable_providers(requested: list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """(providers to try, fallback notes) for what this onnxruntime build offers."""
    notes = [f"{p} is not available in this onnxruntime build (available: {', '.join(available)}); "
             "falling back" for p in requested if p not in available]
    return [p for p in requested if p in available], notes
