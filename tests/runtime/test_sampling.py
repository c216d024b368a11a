"""The runtime's numpy logits processors against transformers' own classes, on the same logits."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import PredictInputError
from torch2ort.runtime import sampling as S

torch = pytest.importorskip("torch")
lp = pytest.importorskip("transformers.generation.logits_process")

VOCAB = 50


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    s = (rng.standard_normal((3, VOCAB)) * 3).astype(np.float32)
    s[1, :5] = s[1, 5]  # ties at the cut
    return s


@pytest.fixture(scope="module")
def history():
    return [[1, 2, 2, 7], [3, 4], [0, 49, 10, 11, 12]]


def _theirs(processor, scores, ids=None):
    ids = torch.zeros((scores.shape[0], 1), dtype=torch.long) if ids is None else ids
    return processor(ids, torch.from_numpy(scores.copy())).numpy()


def _same(a, b):
    np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b))
    finite = ~np.isneginf(a)
    np.testing.assert_allclose(a[finite], b[finite], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [0.3, 1.0, 1.7])
def test_temperature(scores, t):
    _same(S.temperature(scores, t), _theirs(lp.TemperatureLogitsWarper(t), scores))


@pytest.mark.parametrize("k", [1, 5, 6, 40])
def test_top_k(scores, k):
    _same(S.top_k(scores, k), _theirs(lp.TopKLogitsWarper(k), scores))


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p(scores, p):
    _same(S.top_p(scores, p), _theirs(lp.TopPLogitsWarper(p), scores))


@pytest.mark.parametrize("penalty", [0.7, 1.3])
def test_repetition_penalty(scores, history, penalty):
    width = max(map(len, history))
    ids = torch.tensor([[0] * (width - len(h)) + h for h in history])
    pads = torch.tensor([width - len(h) for h in history])  # transformers ignores the left padding
    theirs = _theirs(lp.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=pads), scores, ids)
    _same(S.repetition_penalty(scores, history, penalty), theirs)


def test_min_new_tokens_holds_eos_back(scores):
    theirs = lp.MinNewTokensLengthLogitsProcessor(prompt_length_to_skip=4, min_new_tokens=3, eos_token_id=[7, 9])
    ids = torch.zeros((3, 5), dtype=torch.long)  # one new token so far
    _same(S.hold_back_eos(scores, [7, 9], 1, 3), _theirs(theirs, scores, ids))
    _same(S.hold_back_eos(scores, [7, 9], 3, 3), scores)


def test_the_processed_distribution_matches_transformers_chain(scores, history):
    """temperature -> top-k -> top-p in transformers' order: the same probabilities come out."""
    opts = S.SamplingOptions(do_sample=True, temperature=0.8, top_k=10, top_p=0.8, repetition_penalty=1.2)
    ours = S.TokenChooser(opts, eos=[]).process(scores, history, new_tokens=0)
    width = max(map(len, history))
    ids = torch.tensor([[0] * (width - len(h)) + h for h in history])
    chain = lp.LogitsProcessorList([
        lp.RepetitionPenaltyLogitsProcessor(1.2, prompt_ignore_length=torch.tensor([width - len(h) for h in history])),
        lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(10), lp.TopPLogitsWarper(0.8)])
    theirs = chain(ids, torch.from_numpy(scores.copy())).softmax(-1).numpy()
    np.testing.assert_allclose(S.softmax(ours), theirs, atol=1e-6)


def test_sampling_is_deterministic_for_a_seed_and_follows_the_distribution(scores):
    def draws(seed):
        chooser = S.TokenChooser(S.SamplingOptions(do_sample=True, top_k=3, seed=seed), eos=[])
        return np.stack([chooser(scores, [[]] * 3, i) for i in range(400)])

    a, b, c = draws(1), draws(1), draws(2)
    assert (a == b).all() and not (a == c).all()
    top3 = np.argsort(scores, axis=-1)[:, -3:]
    assert all(set(a[:, r]) <= set(top3[r]) for r in range(3))
    probs = S.softmax(S.top_k(scores, 3))[0]
    seen = np.bincount(a[:, 0], minlength=VOCAB) / len(a)
    assert np.abs(seen - probs).max() < 0.1  # 400 draws: a few standard errors


def test_greedy_is_argmax(scores):
    chosen = S.TokenChooser(S.SamplingOptions(), eos=[])(scores, [[]] * 3, 0)
    assert (chosen == scores.argmax(-1)).all()


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"temperature": float("nan")}, {"top_p": 1.5},
                                 {"top_k": -1}, {"repetition_penalty": float("inf")}, {"seed": 1.5},
                                 {"min_new_tokens": True}])
def test_bad_options_are_one_line_errors(bad):
    with pytest.raises(PredictInputError):
        S.SamplingOptions(**bad)
