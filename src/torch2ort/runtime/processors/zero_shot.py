"""Zero-shot image classification: candidate labels in, the pipeline's ``[{"score", "label"}]`` out.

``candidate_labels`` (preprocess, after the image steps) formats every label with
``hypothesis_template`` and tokenises them as ``pipeline("zero-shot-image-classification")`` does:
one row per label, padded to the longest. It runs once per call, on the stacked batch of images,
and tells ``zero_shot`` the labels through ``ctx.meta``. ``zero_shot`` (postprocess) takes the
softmax of ``logits_per_image`` over the labels (the graph already scaled them by the model's
``exp(logit_scale)``) and sorts each image's labels by score, best first; ties keep the order the
labels were given in, as the pipeline's stable ``sorted`` does.

A string of labels is split at commas (``"cat, dog"``), as transformers' zero-shot text pipeline
reads one, so ``predict --option candidate_labels=cat,dog`` works from the command line.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from torch2ort.errors import BundleError, PredictInputError
from torch2ort.runtime.processors.postprocess import _softmax
from torch2ort.runtime.typecheck import Match, Name, Range, Size

MAX_LABELS = 1024        # one text-tower row each, in one batch
MAX_LABEL_CHARS = 1000   # the tokenizer truncates at the position table; this bounds the work before it
TEMPLATE = "This is a photo of {}."
Label = Annotated[str, Size(1, MAX_LABEL_CHARS)]
Labels = Annotated[list[Label], Size(1, MAX_LABELS)] | Annotated[str, Size(1, MAX_LABELS * MAX_LABEL_CHARS)]
Template = Annotated[str, Size(2, MAX_LABEL_CHARS),
                     Match(r"[^{}]*\{\}[^{}]*", "must hold one {} where the label goes, and no other braces")]


def label_list(candidate_labels: Any) -> list[str]:
    """The labels as a list; a string is split at commas (blank pieces dropped)."""
    if candidate_labels is None:
        raise PredictInputError("a zero-shot bundle needs candidate_labels, e.g. predict(image, "
                                "candidate_labels=[\"cat\", \"dog\"]) or --option candidate_labels=cat,dog")
    if isinstance(candidate_labels, str):
        labels = [x.strip() for x in candidate_labels.split(",") if x.strip()]
        if not labels:
            raise PredictInputError(f"candidate_labels {candidate_labels[:80]!r} holds no label")
        if len(labels) > MAX_LABELS or max(map(len, labels)) > MAX_LABEL_CHARS:
            raise PredictInputError(f"candidate_labels: at most {MAX_LABELS} labels of at most {MAX_LABEL_CHARS} "
                                    "characters each")
        return labels
    return list(candidate_labels)


def candidate_labels(value, ctx, candidate_labels: Labels | None = None, hypothesis_template: Template = TEMPLATE,
                     file: Name = "tokenizer.json", max_length: Annotated[int, Range(1, 1 << 20)] = 77,
                     pad_id: Annotated[int, Range(0)] | None = None) -> dict[str, np.ndarray]:
    """The image feed plus ``input_ids`` and ``attention_mask`` of one formatted text per label."""
    from torch2ort.runtime.processors.text import tokenize

    labels = label_list(candidate_labels)
    if not isinstance(value, dict):
        raise PredictInputError("candidate_labels follows the image steps, which must name their tensor (to_input)")
    texts = [hypothesis_template.replace("{}", label) for label in labels]  # = .format(label): no other braces
    ctx.meta["candidate_labels"] = labels
    return dict(value) | tokenize(texts, ctx, file=file, max_length=max_length, pad_id=pad_id,
                                  outputs=("input_ids", "attention_mask"))


def zero_shot(ctx, output: Name = "logits_per_image", name: Name = "zero_shot") -> None:
    """Per image, ``[{"score", "label"}]`` over every candidate label, best first. Without the labels (a
    feed given as arrays), nothing: the scores would have no names."""
    labels = ctx.meta.get("candidate_labels")
    if not labels:
        return
    logits = ctx.tensor(output).astype(np.float32)
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise BundleError(f"zero_shot reads {output!r} [images, labels]; got {list(logits.shape)} for "
                                f"{len(labels)} labels")
    probs = _softmax(logits, -1)
    ctx.results[name] = [[{"score": float(row[i]), "label": labels[i]} for i in np.argsort(-row, kind="stable")]
                         for row in probs]


PRE = {"candidate_labels": candidate_labels}
POST = {"zero_shot": zero_shot}
ROW_FIELDS = {"zero_shot": lambda params: {"score": "float", "label": "str"}}
BATCH_STEPS = ("candidate_labels",)  # run once on the stacked images, not per image


def embed_texts(texts: Any, step: dict, ctx) -> dict[str, np.ndarray]:
    """``input_ids`` and ``attention_mask`` of ``texts`` as given, with the candidate_labels step's tokenizer."""
    from torch2ort.runtime.processors.text import tokenize

    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not texts or len(texts) > MAX_LABELS:
        raise PredictInputError(f"embed_text takes a string or a list of 1 to {MAX_LABELS} strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not 0 < len(t) <= MAX_LABEL_CHARS:
            raise PredictInputError(f"embed_text: text {i} must be a string of 1 to {MAX_LABEL_CHARS} characters")
    return tokenize(list(texts), ctx, file=step.get("file", "tokenizer.json"), max_length=step.get("max_length", 77),
                    pad_id=step.get("pad_id"), outputs=("input_ids", "attention_mask"))


def tower_feed(bundle, feed: dict[str, np.ndarray], side: str) -> dict[str, np.ndarray]:
    """``feed`` for one tower plus an empty batch (0 rows) for every input of the other: ONNX Runtime
    wants every graph input, and a tower reads only its own."""
    if not isinstance(feed, dict):
        raise PredictInputError("the image steps must name their tensor (to_input)")
    out = dict(feed)
    for spec in bundle.inputs:
        if spec["name"] not in out:
            shape = [0] + [d if isinstance(d, int) else 1 for d in spec["shape"][1:]]
            out[spec["name"]] = np.zeros(shape, dtype=spec.get("dtype", "float32"))
    return out
