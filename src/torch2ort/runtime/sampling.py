"""Next-token choice in numpy, processor for processor as transformers' ``generate`` does it.

The order is transformers': repetition penalty, min-new-tokens (EOS held back), then, when sampling,
temperature, top-k and top-p. Each function takes the scores of one step, ``(batch, vocab)`` float32,
and returns new ones; tests hold each against the transformers class of the same name on the same
logits (tests/runtime/test_sampling.py).

Example::

    options = SamplingOptions(do_sample=True, temperature=0.7, top_p=0.9, seed=0)
    chooser = TokenChooser(options, eos=[2])
    next_ids = chooser(scores, history, new_tokens=3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from torch2ort.errors import PredictInputError


@dataclass(frozen=True)
class SamplingOptions:
    """``generate``'s choice options, each checked when made (a NaN temperature is refused, not run)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    min_new_tokens: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        def number(name: str, value, low: float, high: float, low_open: bool = False) -> None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value > high or value < low or (low_open and value == low):
                side = "(" if low_open else "["
                raise PredictInputError(f"{name} must be a number in {side}{low}, {high}], got {value!r}")

        number("temperature", self.temperature, 0.0, 100.0, low_open=True)
        number("top_p", self.top_p, 0.0, 1.0, low_open=True)
        number("repetition_penalty", self.repetition_penalty, 0.0, 100.0, low_open=True)
        for name, value, high in (("top_k", self.top_k, 1 << 31), ("min_new_tokens", self.min_new_tokens, 1 << 16),
                                  ("seed", self.seed, (1 << 63) - 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high):
                raise PredictInputError(f"{name} must be a whole number from 0 to {high}, got {value!r:.40}")


def repetition_penalty(scores: np.ndarray, history: list[list[int]], penalty: float) -> np.ndarray:
    """Every token already in a row (prompt without padding, and new tokens): divided by ``penalty`` when
    positive, multiplied when negative (``RepetitionPenaltyLogitsProcessor``)."""
    if penalty == 1.0:
        return scores
    out = scores.copy()
    for row, ids in enumerate(history):
        seen = np.unique(np.asarray(ids, dtype=np.int64))
        seen = seen[(seen >= 0) & (seen < scores.shape[1])]
        values = out[row, seen]
        out[row, seen] = np.where(values < 0, values * np.float32(penalty), values / np.float32(penalty))
    return out


def hold_back_eos(scores: np.ndarray, eos: list[int], new_tokens: int, min_new_tokens: int) -> np.ndarray:
    """EOS at -inf until ``min_new_tokens`` new tokens exist (``MinNewTokensLengthLogitsProcessor``)."""
    if new_tokens >= min_new_tokens or not eos:
        return scores
    out = scores.copy()
    out[:, [e for e in eos if 0 <= e < scores.shape[1]]] = -np.inf
    return out


def temperature(scores: np.ndarray, value: float) -> np.ndarray:
    """``TemperatureLogitsWarper``."""
    return scores if value == 1.0 else scores / np.float32(value)


def top_k(scores: np.ndarray, k: int | None, min_keep: int = 1) -> np.ndarray:
    """Everything below the k-th largest score at -inf (``TopKLogitsWarper``: ties with the k-th stay)."""
    if not k:
        return scores
    k = min(max(k, min_keep), scores.shape[-1])
    kth = np.partition(scores, -k, axis=-1)[:, -k][:, None]
    return np.where(scores < kth, np.float32(-np.inf), scores)


def top_p(scores: np.ndarray, p: float, min_keep: int = 1) -> np.ndarray:
    """The smallest set of top tokens whose probability reaches ``p`` (``TopPLogitsWarper``)."""
    if p >= 1.0:
        return scores
    order = np.argsort(scores, axis=-1, kind="stable")  # ascending, as transformers sorts
    ranked = np.take_along_axis(scores, order, axis=-1)
    cumulative = np.cumsum(softmax(ranked), axis=-1)
    remove = cumulative <= (1 - p)
    remove[:, -min_keep:] = False
    out = scores.copy()
    np.put_along_axis(out, order, np.where(remove, np.float32(-np.inf), ranked), axis=-1)
    return out


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - np.max(scores, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class TokenChooser:
    """The processors of one ``generate`` call, then argmax or a seeded draw per row."""

    def __init__(self, options: SamplingOptions, eos: list[int]) -> None:
        self.options, self.eos = options, list(eos)
        self.rng = np.random.default_rng(options.seed)

    def process(self, scores: np.ndarray, history: list[list[int]], new_tokens: int) -> np.ndarray:
        o = self.options
        scores = np.asarray(scores, dtype=np.float32)
        scores = repetition_penalty(scores, history, o.repetition_penalty)
        scores = hold_back_eos(scores, self.eos, new_tokens, o.min_new_tokens)
        if o.do_sample:
            scores = top_p(top_k(temperature(scores, o.temperature), o.top_k), o.top_p)
        return scores

    def __call__(self, scores: np.ndarray, history: list[list[int]], new_tokens: int) -> np.ndarray:
        scores = self.process(scores, history, new_tokens)
        if not self.options.do_sample:
            return np.argmax(scores, axis=-1)
        probs = softmax(scores.astype(np.float64))
        draws = self.rng.random(len(probs))[:, None]
        picked = (np.cumsum(probs, axis=-1) < draws).sum(axis=-1)
        return np.minimum(picked, probs.shape[-1] - 1)
