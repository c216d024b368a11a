"""parity.entities: entity lists agree only when labels, spans, words and scores do."""

from __future__ import annotations

import numpy as np

from torch2ort.parity.entities import compare_entities

REF = [[{"entity_group": "PER", "score": np.float32(0.9), "word": "Ada", "start": 0, "end": 3}], []]
TEXTS = ["Ada wrote", "nothing here"]


def _got(**change):
    return [[{"entity_group": "PER", "score": 0.9, "word": "Ada", "start": 0, "end": 3} | change], []]


def test_equal_lists_agree():
    a = compare_entities(_got(), REF, TEXTS, 1e-4)
    assert (a.agree, a.texts, a.share, a.first_difference) == (2, 2, 1.0, "")
    assert a.max_score_diff < 1e-6


def test_each_difference_is_named():
    for change, words in (({"entity_group": "LOC"}, "LOC 'Ada' [0:3] where the pipeline has PER"),
                          ({"end": 4}, "[0:4]"), ({"word": "Ad"}, "'Ad'"), ({"score": 0.8}, "score 0.8")):
        a = compare_entities(_got(**change), REF, TEXTS, 1e-4)
        assert a.agree == 1 and words in a.first_difference and a.first_difference.startswith("text 0 ('Ada wrote')")
    missing = compare_entities([[], []], REF, TEXTS, 1e-4)
    assert missing.agree == 1 and "0 entities where the pipeline finds 1" in missing.first_difference
    assert compare_entities([[]], REF, TEXTS, 1e-4).agree == 0
