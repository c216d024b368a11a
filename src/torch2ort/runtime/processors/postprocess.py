"""Output postprocessing in numpy: softmax, sigmoid, top-k with labels, multi-label threshold, argmax."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from torch2ort.errors import BundleError
from torch2ort.runtime.typecheck import Name, Range


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = x.astype(np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _label(ctx, index: int):
    labels = ctx.labels
    return labels[index] if labels and 0 <= index < len(labels) else str(index)


def softmax(ctx, output: Name, axis: int = -1, name: Name | None = None) -> None:
    ctx.results[name or output] = _softmax(ctx.tensor(output), axis)


def sigmoid(ctx, output: Name, name: Name | None = None) -> None:
    x = ctx.tensor(output).astype(np.float32)
    ctx.results[name or output] = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def topk(ctx, output: Name, k: Annotated[int, Range(1, 1_000_000)] = 5, name: Name = "topk") -> None:
    """Per row: the k best [{label, index, score}], highest first (ties: lower index first)."""
    x = np.atleast_2d(ctx.tensor(output))
    k = min(k, x.shape[-1])
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    ctx.results[name] = [[{"label": _label(ctx, int(i)), "index": int(i), "score": float(row[i])}
                          for i in idx] for row, idx in zip(x.reshape(-1, x.shape[-1]), order.reshape(-1, k))]


def argmax(ctx, output: Name, name: Name = "label") -> None:
    x = np.atleast_2d(ctx.tensor(output))
    idx = x.reshape(-1, x.shape[-1]).argmax(-1)
    ctx.results[name] = [_label(ctx, int(i)) for i in idx]
    ctx.results[f"{name}_index"] = idx.astype(np.int64)


def threshold(ctx, output: Name, threshold: float = 0.5, name: Name = "labels",
              thresholds: dict[str, float] | None = None, labels: list[str] | None = None) -> None:
    """Multi-label: per row, every label whose probability is >= its threshold.

    ``thresholds`` maps a label name to its own threshold (the others use ``threshold``);
    ``labels`` names the columns here (default: the bundle's labels, else the column index).
    """
    x = np.atleast_2d(ctx.tensor(output))
    rows = x.reshape(-1, x.shape[-1])
    names = list(labels) if labels else [_label(ctx, i) for i in range(rows.shape[-1])]
    if len(names) != rows.shape[-1]:
        raise BundleError(f"threshold on {output!r}: {len(names)} label names for {rows.shape[-1]} columns")
    unknown = sorted(set(thresholds or {}) - set(names))
    if unknown:
        raise BundleError(f"threshold on {output!r}: thresholds name unknown labels {unknown}; labels: {names}")
    limits = np.array([(thresholds or {}).get(n, threshold) for n in names], dtype=np.float64)
    ctx.results[name] = [[names[i] for i in np.flatnonzero(row >= limits)] for row in rows]


POST = {
    "softmax": softmax,
    "sigmoid": sigmoid,
    "topk": topk,
    "argmax": argmax,
    "threshold": threshold,
}
