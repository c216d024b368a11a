"""Semantic segmentation: per-pixel labels at the original image's size, as transformers'
``post_process_semantic_segmentation`` gives them.

The class scores are resized as ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` resizes them (half-pixel centres, edges clamped), then the best class is taken
per pixel. The resize is separable and runs a band of output rows at a time, so a large photograph
never holds every class at full size at once. Without the image's size (a feed given as arrays) the
map stays at the model's output size, as the processor's is without ``target_sizes``.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from torch2ort.errors import BundleError
from torch2ort.runtime.typecheck import Name, Range

BAND_VALUES = 1 << 24  # class scores per band of output rows (64 MiB of float32)


def _weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, upper weight) per output position, as torch's bilinear (align_corners=False)."""
    scale = np.float32(n_in / n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (src - low).astype(np.float32)


def resize_scores(scores: np.ndarray, size: tuple[int, int], rows: slice | None = None) -> np.ndarray:
    """``scores`` [C, h, w] bilinearly resized to ``size`` (H, W); only output ``rows`` when given."""
    c, h, w = scores.shape
    (hl, hh, hw), (wl, wh, ww) = _weights(h, size[0]), _weights(w, size[1])
    if rows is not None:
        hl, hh, hw = hl[rows], hh[rows], hw[rows]
    tall = scores[:, hl, :] * (1 - hw)[None, :, None] + scores[:, hh, :] * hw[None, :, None]
    return tall[:, :, wl] * (1 - ww) + tall[:, :, wh] * ww


def segment(ctx, output: Name = "logits", name: Name = "segmentation",
            max_side: Annotated[int, Range(1, 1 << 16)] = 16384) -> None:
    """[batch, classes, h, w] scores -> [batch, H, W] int64 class ids at the image's (H, W); a batch of
    images of different sizes gets a list of [H, W] maps, one per image."""
    scores = ctx.tensor(output)
    if scores.ndim != 4:
        raise BundleError(f"segment reads {output!r} as [batch, classes, height, width]; "
                          f"got shape {list(scores.shape)}")
    from torch2ort.runtime.processors import image_sizes

    sizes = image_sizes(ctx, scores.shape[0])
    if sizes is None:
        ctx.results[name] = scores.argmax(axis=1).astype(np.int64)
        return
    maps = []
    for b, (height, width) in enumerate((int(h), int(w)) for h, w in sizes):
        if max(height, width) > max_side:
            raise BundleError(f"segment: the image is {width}x{height}, over max_side {max_side}")
        out = np.empty((height, width), dtype=np.int64)
        band = max(1, BAND_VALUES // max(1, scores.shape[1] * width))
        x = scores[b].astype(np.float32)
        for top in range(0, height, band):
            rows = slice(top, min(height, top + band))
            out[rows] = resize_scores(x, (height, width), rows).argmax(axis=0)
        maps.append(out)
    same = len({m.shape for m in maps}) == 1
    ctx.results[name] = np.stack(maps) if same else maps  # images of different sizes: one map each


POST = {"segment": segment}
