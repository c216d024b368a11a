"""numpy arrays <-> JSON-safe dicts, so results computed elsewhere can be compared here. Torch-free."""

from __future__ import annotations

import base64

import numpy as np


def array_to_json(arr: np.ndarray) -> dict:
    arr = np.ascontiguousarray(arr)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode()}


def array_from_json(data: dict) -> np.ndarray:
    raw = base64.b64decode(data["data"])
    return np.frombuffer(raw, dtype=np.dtype(data["dtype"])).reshape(data["shape"]).copy()
