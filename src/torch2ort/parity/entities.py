"""Entity lists (token classification) against transformers' pipeline: the same groups, spans and words.

Per text, the bundle's entities agree when each has the pipeline's label (``entity_group`` or
``entity``), ``start``, ``end`` and ``word``, in the same order, and every score is within
``score_tol``. The result says how many texts agree, the largest score difference, and the first
difference in words a person can read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

KEYS = ("entity_group", "entity", "start", "end", "word", "index")


@dataclass
class EntityAgreement:
    texts: int
    agree: int
    max_score_diff: float
    first_difference: str = ""

    @property
    def share(self) -> float:
        return self.agree / self.texts if self.texts else math.nan


def compare_entities(got: list[list[dict[str, Any]]], ref: list[list[dict[str, Any]]], texts: list[str],
                     score_tol: float) -> EntityAgreement:
    """How many texts' entity lists agree (labels, spans, words; scores within ``score_tol``)."""
    if len(got) != len(ref):
        return EntityAgreement(len(ref), 0, math.inf, f"{len(got)} answers for {len(ref)} texts")
    agree, worst, first = 0, 0.0, ""
    for i, (mine, theirs) in enumerate(zip(got, ref)):
        problem = ""
        if len(mine) != len(theirs):
            problem = f"{len(mine)} entities where the pipeline finds {len(theirs)}"
        for a, b in zip(mine, theirs):
            diff = abs(float(a.get("score", math.nan)) - float(b["score"]))
            worst = max(worst, diff) if not math.isnan(diff) else math.inf
            keys = [k for k in KEYS if (k in a or k in b) and a.get(k) != _plain(b.get(k))]
            if keys and not problem:
                problem = (f"{_show(a)} where the pipeline has {_show(b)}")
            elif not diff <= score_tol and not problem:
                problem = f"score {a.get('score')} where the pipeline has {float(b['score']):.6g} ({_show(b)})"
        if problem:
            first = first or f"text {i} ({texts[i][:40]!r}): {problem}"
        else:
            agree += 1
    return EntityAgreement(len(ref), agree, worst, first)


def _plain(value: Any) -> Any:
    """numpy integers (the pipeline's start/end can be) as Python ints."""
    return int(value) if hasattr(value, "item") and not isinstance(value, float) else value


def _show(e: dict[str, Any]) -> str:
    label = e.get("entity_group", e.get("entity"))
    return f"{label} {e.get('word')!r} [{e.get('start')}:{e.get('end')}]"
