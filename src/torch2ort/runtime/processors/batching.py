"""Several raw inputs in one call: per-item results padded to a common shape and stacked on a batch axis.

Used by ``run_preprocess`` when a list of files reaches a pipeline that starts with ``load_audio``
or ``load_signal``. Arrays are zero-padded at the end of every axis to the largest item; a boolean
array (a segment mask) pads with False, so padded segments are masked out. Items that are dicts
(segments + mask) are stacked key by key. ``split_by_tokens`` goes the other way: it cuts a
tokenised batch of texts into smaller model calls (``Bundle.predict``).
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


def split_by_tokens(feed: dict[str, np.ndarray], max_tokens: int | None,
                    mask: str = "attention_mask") -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """A tokenised batch, rows sorted longest first, as sub-batches of at most ``max_tokens`` padded tokens.

    Each sub-batch is (row indices, feed) with its ``[batch, seq]`` arrays cut to its own longest row,
    so short rows stop paying for long ones' padding. With ``max_tokens=None``, or a feed without a
    2-D ``mask``, the feed comes back whole.
    """
    m = feed.get(mask)
    if max_tokens is None or m is None or m.ndim != 2 or not len(m):
        return [(np.arange(len(next(iter(feed.values())))), feed)]
    rows, seq = m.shape
    lengths = np.maximum(m.astype(bool).sum(axis=1), 1)
    parts, start = [], 0
    while start < rows:
        longest, stop = int(lengths[start]), start + 1
        while stop < rows and (stop + 1 - start) * max(longest, int(lengths[stop])) <= max_tokens:
            longest, stop = max(longest, int(lengths[stop])), stop + 1
        sub = {k: (v[start:stop, :longest] if v.ndim == 2 and v.shape == (rows, seq) else v[start:stop])
               for k, v in feed.items()}
        parts.append((np.arange(start, stop), sub))
        start = stop
    return parts
