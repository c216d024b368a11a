"""Output postprocessing in numpy: softmax, sigmoid, top-k with labels, multi-label threshold, argmax."""

from __future__ import annotations

import numpy as np


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = x.astype(np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _label(ctx, index: int):
    labels = ctx.labels
    return labels[index] if labels and 0 <= index < len(labels) else str(index)


def softmax(ctx, output: str, axis: int = -1, name: str | None = None) -> None:
    ctx.results[name or output] = _softmax(ctx.tensor(output), axis)


def sigmoid(ctx, output: str, name: str | None = None) -> None:
    x = ctx.tensor(output).astype(np.float32)
    ctx.results[name or output] = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def topk(ctx, output: str, k: int = 5, name: str = "topk") -> None:
    """Per row: the k best [{label, index, score}], highest first (ties: lower index first)."""
    x = np.atleast_2d(ctx.tensor(output))
    k = min(k, x.shape[-1])
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    ctx.results[name] = [[{"label": _label(ctx, int(i)), "index": int(i), "score": float(row[i])}
                          for i in idx] for row, idx in zip(x.reshape(-1, x.shape[-1]), order.reshape(-1, k))]


def argmax(ctx, output: str, name: str = "label") -> None:
    x = np.atleast_2d(ctx.tensor(output))
    idx = x.reshape(-1, x.shape[-1]).argmax(-1)
    ctx.results[name] = [_label(ctx, int(i)) for i in idx]
    ctx.results[f"{name}_index"] = idx.astype(np.int64)


def threshold(ctx, output: str, threshold: float = 0.5, name: str = "labels") -> None:
    """Multi-label: per row, every label whose probability is >= threshold."""
    x = np.atleast_2d(ctx.tensor(output))
    rows = x.reshape(-1, x.shape[-1])
    ctx.results[name] = [[_label(ctx, int(i)) for i in np.flatnonzero(row >= threshold)] for row in rows]


POST = {
    "softmax": softmax,
    "sigmoid": sigmoid,
    "topk": topk,
    "argmax": argmax,
    "threshold": threshold,
}
