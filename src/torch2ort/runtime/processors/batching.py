"""Several raw inputs in one call: per-item results padded to a common shape and stacked on a batch axis.

Used by ``run_preprocess`` when a list of files reaches a pipeline that starts with ``load_audio``
or ``load_signal``. Arrays are zero-padded at the end of every axis to the largest item; a boolean
array (a segment mask) pads with False, so padded segments are masked out. Items that are dicts
(segments + mask) are stacked key by key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from torch2ort.errors import PredictInputError


def pad_stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Zero- (or False-) pad every array to the per-axis maximum and stack them: ``[batch, ...]``."""
    ranks = {a.ndim for a in arrays}
    if len(ranks) != 1:
        raise PredictInputError(f"the inputs give arrays of different ranks {sorted(ranks)}; they cannot be batched")
    shape = tuple(max(a.shape[i] for a in arrays) for i in range(arrays[0].ndim))
    out = np.zeros((len(arrays), *shape), dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[(i, *(slice(0, n) for n in a.shape))] = a
    return out


def stack_items(items: list[Any]) -> Any:
    """Per-item arrays, or dicts of arrays with the same keys, to one batch."""
    if all(isinstance(it, dict) for it in items):
        keys = list(items[0])
        if any(list(it) != keys for it in items):
            raise PredictInputError("the inputs gave different sets of tensors; they cannot be batched")
        return {k: pad_stack([np.asarray(it[k]) for it in items]) for k in keys}
    if any(isinstance(it, dict) for it in items):
        raise PredictInputError("the inputs gave a mix of arrays and named tensors; they cannot be batched")
    return pad_stack([np.asarray(it) for it in items])
