"""Task gates on the answer, not the raw tensors: entity groups (NER), boxes (detection), pixels (segmentation).

An optimised variant of a NER, detection or segmentation model is held to what its bundle answers,
post-processed from the raw outputs of each verification case the way the runtime's steps do it,
against the same post-processing of PyTorch's outputs on the same case:

    entities  entity groups as the pipeline's ``simple`` strategy forms them from the tags (argmax per
              token; a ``B-`` starts a group, ``I-`` of the same type continues it), as (type, first
              token, last token) over the tokens the attention mask keeps. Agreement: groups found
              by both / groups found by either (a missed group and an extra one both count against).
    boxes     detections as the ``detections`` step keeps them (softmax, the no-object class dropped,
              score above the step's ``threshold``). A reference detection is matched by a variant's
              detection with the same label and box IoU >= 0.9 (boxes relative to the image: IoU does
              not change when the axes are scaled to pixels). Agreement: matched / (reference + variant
              detections - matched).
    pixels    the class of every pixel (argmax over the class axis of ``[batch, classes, h, w]``), the
              map the processor gives without a target size. Agreement: equal pixels / pixels.

Each is a proportion of agreeing units, so a gate on it (``boxes>=0.99``) holds its one-sided 95%
Wilson lower bound, as ``top1`` and ``decision`` do (``parity.judge``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torch2ort.parity.compare import OutputComparison, RunResults

IOU = 0.9  # the bar for a box to count as the same detection
METRIC_OF_STEP = {"entities": "entities", "detections": "boxes", "segment": "pixels"}
DEFAULT_NAME = {"entities": "entities", "detections": "detections", "segment": "segmentation"}
# The default limits: a few dozen texts hold a few dozen entity groups, and images a few dozen boxes, so
# 0.99 (whose 95% bound needs 268 agreeing units without a miss) could not be told from their samples;
# 0.95 needs 52. Pixels come by the thousand.
DEFAULT_LIMIT = {"entities": 0.95, "boxes": 0.95, "pixels": 0.99}


@dataclass(frozen=True)
class Answer:
    """One post-processed answer a gate can judge: its name, metric, and the raw tensors it reads."""

    name: str
    metric: str
    output: str
    boxes: str | None = None      # detections: the box output
    mask: str | None = None       # entities: the attention mask input
    threshold: float = 0.5        # detections: the step's score threshold
    sigmoid: bool = False         # detections: a sigmoid per class and the top k pairs (Conditional DETR)
    top_k: int = 100


def answers_of(postprocess: list[dict] | None) -> dict[str, Answer]:
    """The answers a bundle's postprocess pipeline makes that a task gate can judge, by name."""
    out = {}
    for step in postprocess or []:
        op = step.get("op")
        if op not in METRIC_OF_STEP:
            continue
        name = step.get("name", DEFAULT_NAME[op])
        out[name] = Answer(name, METRIC_OF_STEP[op], step.get("output", "logits"),
                           boxes=step.get("boxes", "pred_boxes") if op == "detections" else None,
                           mask=step.get("mask", "attention_mask") if op == "entities" else None,
                           threshold=float(step.get("threshold", 0.5)),
                           sigmoid=step.get("activation") == "sigmoid", top_k=int(step.get("top_k", 100)))
    return out


def entity_groups(logits: np.ndarray, mask: np.ndarray | None, labels: list[str]) -> list[set[tuple]]:
    """Per row, the set of (type, first token, last token) groups the tags form (see the module docstring)."""
    tags = np.asarray(logits).argmax(-1)
    keep = np.ones(tags.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    rows = []
    for row, kept in zip(tags, keep):
        groups, current = set(), None  # current: [type, first, last]
        for t in np.flatnonzero(kept):
            name = labels[int(row[t])] if int(row[t]) < len(labels) else str(int(row[t]))
            prefix, _, kind = name.partition("-") if name[:2] in ("B-", "I-") else ("", "", name)
            if name == "O" or kind == "O":
                current = _close(groups, current)
                continue
            if prefix == "B" or current is None or current[0] != kind or current[2] != t - 1:
                _close(groups, current)
                current = [kind, int(t), int(t)]
            else:
                current[2] = int(t)
        _close(groups, current)
        rows.append(groups)
    return rows


def _close(groups: set, current: list | None) -> None:
    if current is not None:
        groups.add(tuple(current))


def detections(logits: np.ndarray, boxes: np.ndarray, threshold: float, sigmoid: bool = False,
               top_k: int = 100) -> list[list[tuple[int, np.ndarray]]]:
    """Per image, the kept (label index, corners relative to the image) as the ``detections`` step keeps them."""
    x = np.asarray(logits, np.float64)
    cx, cy, w, h = np.moveaxis(np.asarray(boxes, np.float64), -1, 0)
    corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    if sigmoid:  # the top k (query, class) pairs of each image
        with np.errstate(over="ignore"):
            prob = (1 / (1 + np.exp(-x))).reshape(x.shape[0], -1)
        order = np.argsort(-prob, axis=1, kind="stable")[:, :min(top_k, prob.shape[1])]
        return [[(int(i % x.shape[-1]), c[i // x.shape[-1]]) for i in o if p[i] > threshold]
                for p, o, c in zip(prob, order, corners)]
    e = np.exp(x - x.max(-1, keepdims=True))
    prob = (e / e.sum(-1, keepdims=True))[..., :-1]
    scores, best = prob.max(-1), prob.argmax(-1)
    return [[(int(b[q]), c[q]) for q in np.flatnonzero(s > threshold)] for s, b, c in zip(scores, best, corners)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else float(np.allclose(a, b))


def box_agreement(ref: list[tuple[int, np.ndarray]], got: list[tuple[int, np.ndarray]]) -> tuple[int, int]:
    """(matched, judged) for one image: each reference detection matched at most once, greedily by IoU."""
    free = list(range(len(got)))
    matched = 0
    for label, box in ref:
        scored = [(iou(box, got[j][1]), j) for j in free if got[j][0] == label]
        best = max(scored, default=(0.0, None))
        if best[1] is not None and best[0] >= IOU:
            free.remove(best[1])
            matched += 1
    return matched, len(ref) + len(got) - matched


def agreement(answer: Answer, ref: dict[str, np.ndarray], got: dict[str, np.ndarray], feed: dict[str, np.ndarray],
              labels: list[str] | None) -> tuple[int, int]:
    """(agreeing units, judged units) of one case's answer: the variant's outputs ``got`` against ``ref``."""
    if answer.metric == "pixels":
        a, b = np.asarray(ref[answer.output]).argmax(1), np.asarray(got[answer.output]).argmax(1)
        return int((a == b).sum()), int(a.size)
    if answer.metric == "boxes":
        pairs = zip(detections(ref[answer.output], ref[answer.boxes], answer.threshold, answer.sigmoid, answer.top_k),
                    detections(got[answer.output], got[answer.boxes], answer.threshold, answer.sigmoid, answer.top_k))
        counts = [box_agreement(r, g) for r, g in pairs]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)
    names = list(labels or [])
    mask = feed.get(answer.mask) if answer.mask else None
    mine = entity_groups(got[answer.output], mask, names)
    theirs = entity_groups(ref[answer.output], mask, names)
    return sum(len(a & b) for a, b in zip(theirs, mine)), sum(len(a | b) for a, b in zip(theirs, mine))


def answer_comparisons(results: RunResults, answers: dict[str, Answer], feeds: dict[str, dict[str, np.ndarray]],
                       labels: list[str] | None, runner: str, reference: str = "torch") -> list[OutputComparison]:
    """One comparison per answer and case: how the variant ``runner``'s answer agrees with ``reference``'s
    (``agree`` of ``judged`` units), for ``parity.judge`` to hold to the answer's gate."""
    out = []
    for ref in (r for r in results.records if r.runner == reference and not r.error):
        got = results.get(runner, ref.case)
        if got is None or got.error:
            continue  # compare() has recorded the failure already
        for name, answer in answers.items():
            needed = [n for n in (answer.output, answer.boxes) if n]
            if any(n not in ref.outputs or n not in got.outputs for n in needed):
                continue
            shapes = [list(np.shape(ref.outputs[n])) for n in needed]
            same = shapes == [list(np.shape(got.outputs[n])) for n in needed]
            agree, judged = (agreement(answer, ref.outputs, got.outputs, feeds.get(ref.case, {}), labels)
                             if same else (0, 0))
            out.append(OutputComparison(
                case=ref.case, kind=ref.kind, output=name, runner=runner, shape_ref=shapes[0],
                shape_got=shapes[0] if same else list(np.shape(got.outputs[answer.output])), dtype_ref="answer",
                dtype_got="answer", n_total=judged, agree=agree, passed=same,
                reason="" if same else f"{answer.output}: shape {shapes[0]} vs the variant's differs"))
    return out


__all__ = ["IOU", "Answer", "agreement", "answer_comparisons", "answers_of", "box_agreement", "detections",
           "entity_groups", "iou"]
