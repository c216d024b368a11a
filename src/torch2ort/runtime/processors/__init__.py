"""Pre/post-processing steps declared in the manifest, each a small function found by name.

A preprocess step is ``fn(value, ctx, **params) -> value``; the last value is the model feed (a
dict of arrays, or one array for a single-input model). A postprocess step is
``fn(ctx, **params) -> None`` and writes into ``ctx.results``. Adding a step is one function in
one of the files below plus one line in its table. The function's signature is the step's schema:
the manifest's parameters are bound to it and checked against its type hints (bounds as
``Annotated[int, Range(1, 16)]``, see runtime/typecheck.py), at pack, at load and before each run.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, unknown_name
from torch2ort.runtime.typecheck import Mismatch, check


@dataclass
class Context:
    """What steps may read: the bundle folder, labels, the feed, raw outputs and results so far."""

    bundle_dir: Path
    labels: list[str] | None = None
    feed: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # per call: what one step tells a later one (sample rate)
    texts: list[str] | None = None  # the raw texts of this call, for postprocess steps that need them (entities)

    def tensor(self, name: str) -> np.ndarray:
        """An output (post-processed so far, else raw) or a feed tensor, by name."""
        for source in (self.results, self.raw, self.feed):
            if name in source:
                return np.asarray(source[name])
        valid = sorted({*self.results, *self.raw, *self.feed})
        raise BundleError(f"postprocess refers to {name!r}; available: {', '.join(valid)}")


def _tables() -> tuple[dict[str, Callable], dict[str, Callable]]:
    from torch2ort.runtime.processors import (
        audio,
        audio_features,
        detection,
        entities,
        image,
        postprocess,
        segmentation,
        signal,
        text,
        zero_shot,
    )

    pre = {**image.PRE, **text.PRE, **audio.PRE, **audio_features.PRE, **signal.PRE, **zero_shot.PRE}
    post = {**postprocess.POST, **text.POST, **entities.POST, **segmentation.POST, **detection.POST,
            **zero_shot.POST}
    return pre, post


@cache
def step_signature(fn: Callable) -> tuple[inspect.Signature, dict[str, Any]]:
    """A step's signature and its parameters' type hints (``Annotated`` bounds kept)."""
    return inspect.signature(fn), typing.get_type_hints(fn, include_extras=True)


def _step(table: dict[str, Callable], kind: str, spec: Any, index: int | None = None) -> tuple[Callable, dict]:
    """The step's function and parameters, once ``spec`` binds to its signature and fits its type hints."""
    at = f" ({kind}[{index}])" if index is not None else ""
    if not isinstance(spec, dict):
        raise BundleError(f"{kind} step{at} has bad parameters: {spec!r:.80} is not of type 'object' "
                          '(a step is {"op": NAME, PARAMETER: VALUE, ...})')
    name = spec.get("op")
    if not isinstance(name, str):
        what = "missing required key 'op'" if "op" not in spec else f"op: {name!r:.80} is not of type 'string'"
        raise BundleError(f"{kind} step{at} has bad parameters: {what}")
    if name not in table:
        raise BundleError(unknown_name(f"{kind} step", name, list(table)) + (f"{at}" if at else ""))
    params = {k: v for k, v in spec.items() if k != "op"}
    fn = table[name]
    signature, hints = step_signature(fn)
    try:
        signature.bind(*([None] * (2 if kind == "preprocess" else 1)), **params)
    except TypeError as exc:
        raise BundleError(f"{kind} step {name!r}{at} has bad parameters: {exc}") from None
    for key, value in params.items():
        try:
            check(value, hints.get(key, Any))
        except Mismatch as exc:
            raise BundleError(f"{kind} step {name!r}{at} has bad parameters: {exc.under(key).describe()}") from None
    return fn, params


def check_steps(pre: list, post: list) -> None:
    """Each step known, its parameters bound to its signature and of the types it declares."""
    pre_table, post_table = _tables()
    for i, spec in enumerate(pre):
        _step(pre_table, "preprocess", spec, i)
    for i, spec in enumerate(post):
        _step(post_table, "postprocess", spec, i)


def check_pipeline(pre: list[dict], post: list[dict], inputs: list[dict] | None = None,
                   outputs: list[dict] | None = None) -> None:
    """Fail early (at pack and at load) on unknown steps, bad parameters, and, given the model's
    ``inputs``/``outputs``, on postprocess steps that name a tensor that will not exist or an axis
    outside its rank (what the parameters alone cannot tell)."""
    check_steps(pre, post)
    if outputs is not None:
        _check_post_tensors(post, inputs or [], outputs)


# postprocess op -> (rank of what it writes given its input's rank, or None for a list of rows; names it writes)
_WRITES: dict[str, tuple[Callable[[int], int] | None, Callable[[dict], list[str]]]] = {
    "softmax": (lambda r: r, lambda p: [p.get("name") or p["output"]]),
    "sigmoid": (lambda r: r, lambda p: [p.get("name") or p["output"]]),
    "l2_normalize": (lambda r: r, lambda p: [p.get("name") or p.get("output", "embeddings")]),
    "mean_pool": (lambda r: r - 1, lambda p: [p.get("name", "embeddings")]),
    "topk": (None, lambda p: [p.get("name", "topk")]),
    "threshold": (None, lambda p: [p.get("name", "labels")]),
    "argmax": (None, lambda p: [p.get("name", "label"), f"{p.get('name', 'label')}_index"]),
    "entities": (None, lambda p: [p.get("name", "entities")]),
    "segment": (lambda r: r - 1, lambda p: [p.get("name", "segmentation")]),
    "detections": (None, lambda p: [p.get("name", "detections")]),
    "zero_shot": (None, lambda p: [p.get("name", "zero_shot")]),
}
_DEFAULT_OUTPUT = {"mean_pool": "last_hidden_state", "l2_normalize": "embeddings", "entities": "logits",
                   "segment": "logits", "detections": "logits", "zero_shot": "logits_per_image"}


def _check_post_tensors(post: list[dict], inputs: list[dict], outputs: list[dict]) -> None:
    ranks: dict[str, int | None] = {t["name"]: len(t["shape"]) for t in [*inputs, *outputs]}
    for i, spec in enumerate(post):
        op = spec["op"]
        where = f"postprocess step {op!r} (postprocess[{i}])"
        src = spec.get("output", _DEFAULT_OUTPUT.get(op))
        if src not in ranks:
            raise BundleError(f"{where} reads {src!r}, which is not a model output, input or earlier result; "
                              f"available: {', '.join(sorted(ranks))}")
        rank = ranks[src]
        if rank is None:
            raise BundleError(f"{where} reads {src!r}, which an earlier step made a list of per-row results, "
                              "not a tensor")
        if op == "softmax" and rank is not None:
            axis = spec.get("axis", -1)
            if not -max(rank, 1) <= axis < max(rank, 1):
                raise BundleError(f"{where}: axis {axis} is outside {src!r}, which has rank {rank} "
                                  f"(valid: {-max(rank, 1)} to {max(rank, 1) - 1})")
        if op == "mean_pool":
            mask = spec.get("mask", "attention_mask")
            if mask not in ranks:
                raise BundleError(f"{where} reads the mask {mask!r}, which is not a model input or output; "
                                  f"available: {', '.join(sorted(ranks))}")
            if rank is not None and rank < 2:
                raise BundleError(f"{where}: {src!r} has rank {rank}; mean pooling needs [batch, tokens, ...]")
        to_rank, names = _WRITES[op]
        for name in names(spec):
            ranks[name] = to_rank(rank) if to_rank else None


# steps that read one file each: a list of inputs runs them per item, and the items are padded and stacked
FILE_LOADERS = ("load_audio", "load_signal")
# what a pipeline's first step reads from a file, by step: the server's file input is named after it
FILE_KINDS = {"load_image": "image", "load_audio": "audio", "load_signal": "signal"}


def file_kind(steps: list[dict]) -> str | None:
    """``image``, ``audio`` or ``signal`` when the pipeline starts from a file, else None.

    >>> file_kind([{"op": "load_audio"}, {"op": "segments", "seconds": 1}])
    'audio'
    """
    return FILE_KINDS.get(steps[0].get("op")) if steps else None


def from_memory(value: Any) -> Any:
    """A binary file object (``BinaryIO``: an open file, ``sys.stdin.buffer``, ``io.BytesIO``) or a
    memoryview as bytes, which every loader decodes from memory; anything else as it is."""
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    read = getattr(value, "read", None)
    if callable(read) and not isinstance(value, (str, Path, np.ndarray)):
        data = read()
        if not isinstance(data, bytes):
            raise PredictInputError(f"a file object given to predict must be opened in binary mode ('rb'), "
                                    f"it gave {type(data).__name__}")
        return data
    return value


def image_sizes(ctx: Context, rows: int) -> list[tuple[int, int]] | None:
    """Each row's original (height, width), as the preprocess recorded it, or None (a feed was given)."""
    if ctx.meta.get("image_sizes") and len(ctx.meta["image_sizes"]) == rows:
        return list(ctx.meta["image_sizes"])
    size = ctx.meta.get("image_size")
    return [size] * rows if size is not None else None


def run_preprocess(steps: list[dict], value: Any, ctx: Context, options: dict[str, Any] | None = None) -> Any:
    """Run the steps on ``value``; a list of files for a pipeline that starts with a file loader
    (images too) is a batch. File objects and memoryviews are read into bytes first. ``options``
    (``CALL_OPTIONS``) override that parameter in every step that takes it, as in ``run_postprocess``.

    In a batch, each file runs the steps up to the batch axis; steps of the whole batch (the candidate
    labels of a zero-shot bundle) run once, on the stacked files."""
    from torch2ort.runtime.processors.zero_shot import BATCH_STEPS

    options = check_options(steps, options, "preprocess")
    if isinstance(value, (list, tuple)) and steps and file_kind(steps):
        from torch2ort.runtime.processors.batching import stack_items

        if not value:
            raise PredictInputError("an empty list of inputs: give at least one file")
        split = len(steps)
        while split and steps[split - 1]["op"] in BATCH_STEPS:
            split -= 1
        per_item, whole = _without_batch_axis(steps[:split]), steps[split:]
        items, sizes = [], []
        for i, item in enumerate(value):
            ctx.meta = {}
            try:
                items.append(_run(per_item, from_memory(item), ctx, options))
            except PredictInputError as exc:
                raise PredictInputError(f"input {i}: {exc}") from None
            sizes.append(ctx.meta.get("image_size"))
        ctx.meta = {"image_sizes": sizes} if any(sizes) else {}  # per item, for boxes and maps in its pixels
        return _run(whole, stack_items(items), ctx, options, offset=split)
    return _run(steps, from_memory(value), ctx, options)


def _without_batch_axis(steps: list[dict]) -> list[dict]:
    """The steps for one item of a list: without the final ``add_batch`` (stacking adds the batch axis),
    also when only ``to_input`` follows it (transformers image folders end ``add_batch, to_input``)."""
    ops = [s["op"] for s in steps]
    if "add_batch" in ops:
        at = len(ops) - 1 - ops[::-1].index("add_batch")
        if all(op == "to_input" for op in ops[at + 1:]):
            return steps[:at] + steps[at + 1:]
    return steps


def _run(steps: list[dict], value: Any, ctx: Context, options: dict[str, Any] | None = None,
         offset: int = 0) -> Any:
    table, _ = _tables()
    for i, spec in enumerate(steps, offset):
        if options:
            names = step_signature(table.get(spec.get("op"), _none))[0].parameters
            spec = spec | {k: v for k, v in options.items() if k in names}
        fn, params = _step(table, "preprocess", spec, i)
        try:
            value = fn(value, ctx, **params)
        except (BundleError, PredictInputError):
            raise
        except (ValueError, TypeError, OSError) as exc:
            raise PredictInputError(f"preprocess step {spec['op']!r} failed: {exc}") from None
    return value


# postprocess parameters a caller may set per call (``Bundle.predict(text, aggregation_strategy="first")``),
# named as transformers' pipelines name them
CALL_OPTIONS = ("aggregation_strategy", "ignore_labels", "threshold", "candidate_labels", "hypothesis_template")


def run_postprocess(steps: list[dict], ctx: Context, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the steps; ``options`` (``CALL_OPTIONS`` only) override that parameter in every step that takes it."""
    _, table = _tables()
    options = check_options(steps, options)
    ctx.results = dict(ctx.raw)
    for i, spec in enumerate(steps):
        names = step_signature(table.get(spec.get("op"), _none))[0].parameters
        fn, params = _step(table, "postprocess", spec | {k: v for k, v in options.items() if k in names}, i)
        fn(ctx, **params)
    return ctx.results


def check_options(steps: list[dict], options: dict[str, Any] | None, kind: str = "postprocess") -> dict[str, Any]:
    """``options`` if a step takes each one and its value fits the step's type hints, else PredictInputError.
    ``kind``: whether ``steps`` are a ``preprocess`` or a ``postprocess`` pipeline."""
    pre, post = _tables()
    table = pre if kind == "preprocess" else post
    hints: dict[str, Any] = {}
    for spec in steps:
        signature, types = step_signature(table.get(spec.get("op"), _none))
        hints |= {k: types.get(k, Any) for k in CALL_OPTIONS if k in signature.parameters}
    for key, value in (options or {}).items():
        if key not in hints:
            raise PredictInputError(f"this bundle takes no option {key!r}; it takes: {', '.join(hints) or 'none'}")
        try:
            check(list(value) if isinstance(value, tuple) else value, hints[key])
        except Mismatch as exc:
            raise PredictInputError(f"option {exc.under(key).describe()}") from None
    return dict(options or {})


def step_options(steps: list[dict], kind: str = "postprocess") -> list[str]:
    """The call options (``CALL_OPTIONS``) some step of ``steps`` takes, in that order."""
    pre, post = _tables()
    table = pre if kind == "preprocess" else post
    taken = {k for spec in steps for k in CALL_OPTIONS
             if k in step_signature(table.get(spec.get("op"), _none))[0].parameters}
    return [k for k in CALL_OPTIONS if k in taken]


def split_options(pre: list[dict], post: list[dict], options: dict[str, Any]) -> tuple[dict, dict]:
    """(the options the ``pre`` steps take, the ones the ``post`` steps take), each checked as
    ``check_options`` checks it; an option no step takes is refused by name (PredictInputError)."""
    takes_pre, takes_post = step_options(pre, "preprocess"), step_options(post, "postprocess")
    unknown = [k for k in options if k not in takes_pre and k not in takes_post]
    if unknown:
        raise PredictInputError(f"this bundle takes no option {unknown[0]!r}; it takes: "
                                f"{', '.join([*takes_pre, *takes_post]) or 'none'}")
    return (check_options(pre, {k: v for k, v in options.items() if k in takes_pre}, "preprocess"),
            check_options(post, {k: v for k, v in options.items() if k in takes_post}))


def _none(ctx) -> None:  # the signature of an unknown step (``_step`` names it)
    return None


def structured_results(post: list[dict]) -> dict[str, dict]:
    """{result name: the keys and types of each item} for postprocess steps whose result is, per row, a
    list of records (entities, detections): what a reader needs before it has seen one."""
    from torch2ort.runtime.processors import detection, entities, zero_shot

    declared = {**entities.ROW_FIELDS, **detection.ROW_FIELDS, **zero_shot.ROW_FIELDS}
    return {spec.get("name", spec["op"]): declared[spec["op"]](spec) for spec in post if spec.get("op") in declared}


def step_names() -> tuple[list[str], list[str]]:
    pre, post = _tables()
    return sorted(pre), sorted(post)
