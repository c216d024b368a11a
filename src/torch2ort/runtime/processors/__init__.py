"""Pre/post-processing steps declared in the manifest, each a small function found by name.

A preprocess step is ``fn(value, ctx, **params) -> value``; the last value is the model feed (a
dict of arrays, or one array for a single-input model). A postprocess step is
``fn(ctx, **params) -> None`` and writes into ``ctx.results``. Adding a step is one function in
one of the files below plus one line in its table.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, unknown_name


@dataclass
class Context:
    """What steps may read: the bundle folder, labels, the feed, raw outputs and results so far."""

    bundle_dir: Path
    labels: list[str] | None = None
    feed: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def tensor(self, name: str) -> np.ndarray:
        """An output (post-processed so far, else raw) or a feed tensor, by name."""
        for source in (self.results, self.raw, self.feed):
            if name in source:
                return np.asarray(source[name])
        valid = sorted({*self.results, *self.raw, *self.feed})
        raise BundleError(f"postprocess refers to {name!r}; available: {', '.join(valid)}")


def _tables() -> tuple[dict[str, Callable], dict[str, Callable]]:
    from torch2ort.runtime.processors import audio, image, postprocess, text

    pre = {**image.PRE, **text.PRE, **audio.PRE}
    post = {**postprocess.POST, **text.POST}
    return pre, post


def _step(table: dict[str, Callable], kind: str, spec: dict) -> tuple[Callable, dict]:
    name = spec["op"]
    if name not in table:
        raise BundleError(unknown_name(f"{kind} step", name, list(table)))
    params = {k: v for k, v in spec.items() if k != "op"}
    fn = table[name]
    try:
        inspect.signature(fn).bind(*([None] * (2 if kind == "preprocess" else 1)), **params)
    except TypeError as exc:
        raise BundleError(f"{kind} step {name!r} has bad parameters {params}: {exc}") from None
    return fn, params


def check_pipeline(pre: list[dict], post: list[dict]) -> None:
    """Fail early (at pack and at load) on unknown steps or bad parameters."""
    pre_table, post_table = _tables()
    for spec in pre:
        _step(pre_table, "preprocess", spec)
    for spec in post:
        _step(post_table, "postprocess", spec)


def run_preprocess(steps: list[dict], value: Any, ctx: Context) -> Any:
    table, _ = _tables()
    for spec in steps:
        fn, params = _step(table, "preprocess", spec)
        try:
            value = fn(value, ctx, **params)
        except (BundleError, PredictInputError):
            raise
        except (ValueError, TypeError, OSError) as exc:
            raise PredictInputError(f"preprocess step {spec['op']!r} failed: {exc}") from None
    return value


def run_postprocess(steps: list[dict], ctx: Context) -> dict[str, Any]:
    _, table = _tables()
    ctx.results = dict(ctx.raw)
    for spec in steps:
        fn, params = _step(table, "postprocess", spec)
        fn(ctx, **params)
    return ctx.results


def step_names() -> tuple[list[str], list[str]]:
    pre, post = _tables()
    return sorted(pre), sorted(post)
