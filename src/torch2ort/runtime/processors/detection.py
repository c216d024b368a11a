"""Object detection: set predictions to boxes in the original image's pixels, as transformers'
``pipeline("object-detection")`` returns them (``post_process_object_detection``, then integer boxes).

Per query: softmax over the classes, the last class ("no object") dropped, the best of the rest and
its score; kept when the score is above ``threshold``. With ``activation="sigmoid"`` (Conditional
DETR's rule): a sigmoid per class, no no-object class, and the ``top_k`` best (query, class) pairs of
the image, best first, each kept when above ``threshold`` (a query may appear under two classes).
Boxes come as (centre x, centre y, width, height) relative to the image and leave as corners scaled
by the original width and height, then truncated to whole pixels as the pipeline's ``box.int()`` does.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from torch2ort.errors import BundleError
from torch2ort.runtime.processors.postprocess import _softmax
from torch2ort.runtime.typecheck import Name, Range


def detections(ctx, output: Name = "logits", boxes: Name = "pred_boxes",
               threshold: Annotated[float, Range(0.0, 1.0)] = 0.5, name: Name = "detections",
               activation: Literal["softmax", "sigmoid"] = "softmax",
               top_k: Annotated[int, Range(1, 1 << 20)] = 100) -> None:
    """Per image, ``[{score, label, box: {xmin, ymin, xmax, ymax}}]``. Without the image's size (a feed
    given as arrays), nothing: boxes need it."""
    from torch2ort.runtime.processors import image_sizes

    logits, rel = ctx.tensor(output).astype(np.float32), ctx.tensor(boxes).astype(np.float32)
    sizes = image_sizes(ctx, logits.shape[0])
    if sizes is None:
        return
    if logits.ndim != 3 or rel.shape != (*logits.shape[:2], 4):
        raise BundleError(f"detections reads {output!r} [batch, queries, classes + 1] and {boxes!r} "
                          f"[batch, queries, 4]; got {list(logits.shape)} and {list(rel.shape)}")
    labels = ctx.labels or []
    sigmoid = activation == "sigmoid"
    if len(labels) != logits.shape[-1] - (0 if sigmoid else 1):
        raise BundleError(f"detections needs one label per class{'' if sigmoid else ' (the last logit is no object)'}"
                          f": {len(labels)} labels for {logits.shape[-1] - (0 if sigmoid else 1)} classes")
    if sigmoid:
        with np.errstate(over="ignore"):  # exp(-x) of a very negative logit is inf: its sigmoid is 0
            prob = (1.0 / (1.0 + np.exp(-logits))).reshape(logits.shape[0], -1)
        k = min(top_k, prob.shape[1])
        order = np.argsort(-prob, axis=1, kind="stable")[:, :k]  # torch.topk: the k best, best first
        scores = np.take_along_axis(prob, order, 1)
        queries, best = order // logits.shape[-1], order % logits.shape[-1]
        rel = np.take_along_axis(rel, queries[..., None], 1)
    else:
        prob = _softmax(logits, -1)[..., :-1]
        scores, best = prob.max(axis=-1), prob.argmax(axis=-1)
    cx, cy, w, h = np.moveaxis(rel, -1, 0)
    height, width = (np.array([float(v[i]) for v in sizes], dtype=np.float32)[:, None] for i in (0, 1))
    corners = np.stack([(cx - 0.5 * w) * width, (cy - 0.5 * h) * height,
                        (cx + 0.5 * w) * width, (cy + 0.5 * h) * height], axis=-1).astype(np.float32)
    found = []
    for row_scores, row_best, row_boxes in zip(scores, best, corners):
        keep = np.flatnonzero(row_scores > threshold)
        found.append([{"score": float(row_scores[q]), "label": labels[int(row_best[q])],
                       "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), (int(v) for v in row_boxes[q])))}
                      for q in keep])
    ctx.results[name] = found


POST = {"detections": detections}
ROW_FIELDS = {"detections": lambda params: {"score": "float", "label": "str",
                                            "box": {"xmin": "int", "ymin": "int", "xmax": "int", "ymax": "int"}}}
