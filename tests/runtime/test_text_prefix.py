"""Tokenising long texts by a provably sufficient prefix (issue 27, item 3): the same ids, masks and
padding as encoding the whole text, for texts far past the prefix bound, at a fraction of the cost."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fixtures.tokenizer import tiny_tokenizer
from torch2ort.runtime.processors import Context
from torch2ort.runtime.processors.text import CHARS_PER_TOKEN, CHUNK_ROWS, tokenize

MAX_LENGTH = 16
BOUND = MAX_LENGTH * CHARS_PER_TOKEN


def whole(path, texts, max_length=MAX_LENGTH):
    """The old way: encode every text whole, then truncate and pad (the tokenizers library's own)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    return {"input_ids": np.array([e.ids for e in enc]), "attention_mask": np.array([e.attention_mask for e in enc]),
            "token_type_ids": np.array([e.type_ids for e in enc])}


LONG = {
    "words": "list files in a directory " * 400,
    "one word after a run of spaces": "show" + " " * (BOUND * 3) + "disk usage " * 50,
    "unknown words longer than the bound": ("x" * (BOUND * 2) + " ") * 20,
    "CJK": "文件列表" * 5000,
    "control characters before the words": "\x00" * (BOUND * 3) + "list files " * 30,
    "short": "show disk usage",
    "words then one huge unknown word": "list " * (MAX_LENGTH // 2) + "y" * 100_000,
    "accents": "lïst fîlés " * 400,
}


@pytest.mark.parametrize("name", list(LONG))
def test_same_encoding_as_the_whole_text(tmp_path, name):
    tiny_tokenizer(tmp_path / "tokenizer.json")
    texts = [LONG[name], "show disk usage", LONG[name][: BOUND + 1]]
    got = tokenize(texts, Context(tmp_path), max_length=MAX_LENGTH,
                   outputs=["input_ids", "attention_mask", "token_type_ids"])
    want = whole(tmp_path / "tokenizer.json", texts)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=f"{name}: {key}")


def test_rows_in_chunks_pad_to_the_longest_of_all(tmp_path):
    tiny_tokenizer(tmp_path / "tokenizer.json")
    texts = ["show"] * (CHUNK_ROWS + 3) + ["list files in a directory " * 10]  # the longest in a later chunk
    got = tokenize(texts, Context(tmp_path), max_length=MAX_LENGTH)
    want = whole(tmp_path / "tokenizer.json", texts)
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])


@pytest.mark.serial
def test_a_long_text_costs_what_its_prefix_does(tmp_path):
    """100 strings of 100,000 characters: the whole-text encoding takes seconds (and gigabytes in the
    server); the prefixes take a small fraction of that, with the same result."""
    tiny_tokenizer(tmp_path / "tokenizer.json")
    texts = ["list files in a directory " * 4000] * 100
    start = time.perf_counter()
    got = tokenize(texts, Context(tmp_path), max_length=MAX_LENGTH)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    want = whole(tmp_path / "tokenizer.json", texts)
    slow = time.perf_counter() - start
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    assert fast < slow / 5, (fast, slow)
