"""The text side of ``hf:DIR``: the tokenizer's inputs, their spec, the longest sequence, real sample texts.

The position table bounds ``max_length``; RoBERTa-family models start positions at
``pad_token_id + 1`` (``create_position_ids_from_input_ids``), so theirs holds that many fewer.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch2ort.errors import SourceError

INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
# Real sentences for verification when the user gives none: short and long, ASCII and not.
SAMPLE_TEXTS = [
    "List all files in the current directory, including hidden ones.",
    "Show the disk usage of each folder, sorted by size.",
    "Find every Python file modified in the last day.",
    "Kill the process listening on port 8080.",
    "Compress the logs folder into a tar.gz archive.",
    "ONNX Runtime executes the exported graph without the PyTorch stack; the migration is only done when the "
    "outputs have been compared on real inputs, across the dynamic sizes that production will send, and the "
    "speed-up has been measured rather than assumed.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "ok",
]


def read_json(path: Path, what: str, kind: type = dict):
    """A JSON file of the folder, which must hold a ``kind`` (an object unless told): anything else, a file
    nested past the parser's depth included, is a one-line SourceError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        text = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise SourceError(f"{what} {path} is unreadable: {text}") from None
    if not isinstance(data, kind):
        raise SourceError(f"{what} {path} must hold a JSON {'object' if kind is dict else 'list'}, "
                          f"not {type(data).__name__}")
    return data


# Position ids start at pad_token_id + 1 in these (create_position_ids_from_input_ids).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text",
                    "roberta-prelayernorm", "longformer", "mpnet", "ibert", "luke")


def position_cap(config: dict) -> int:
    """The longest sequence the position table holds (at most 512)."""
    positions = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in OFFSET_POSITIONS:
        positions -= int(config.get("pad_token_id") or 0) + 1
    return max(1, min(positions, 512))


def max_length(path: Path, opts: dict) -> int:
    """--kwargs max_length, else sentence-transformers' max_seq_length, capped by the position table."""
    cap = position_cap(read_json(path / "config.json", "config"))
    if opts.get("max_length"):
        if int(opts["max_length"]) > cap:
            raise SourceError(f"--kwargs max_length {opts['max_length']} is longer than {path}'s position table "
                              f"holds ({cap} tokens)")
        return int(opts["max_length"])
    st = path / "sentence_bert_config.json"
    if st.is_file():
        return min(int(read_json(st, "sentence-transformers config").get("max_seq_length", cap)), cap)
    return cap


def tokenizer_info(path: Path) -> tuple[Path, list[str]]:
    """The fast tokenizer's file and the model inputs it produces, in the wrapper's argument order."""
    tok = path / "tokenizer.json"
    if not tok.is_file():
        raise SourceError(f"{path}: tokenizer.json is missing (a fast tokenizer is needed, for the bundle too)")
    cfg = {}
    if (path / "tokenizer_config.json").is_file():
        cfg = read_json(path / "tokenizer_config.json", "tokenizer config")
    names = cfg.get("model_input_names") or ["input_ids", "token_type_ids", "attention_mask"]
    config = read_json(path / "config.json", "config")
    if config.get("type_vocab_size", 2) < 1 or config.get("model_type") in ("distilbert", "roberta", "xlm-roberta"):
        names = [n for n in names if n != "token_type_ids"]
    return tok, [n for n in INPUT_ORDER if n in names]


def check_tokenizer(tok: Path, names: list[str], length: int) -> None:
    """tokenizer.json must load and encode the sample texts (the bundle will run the same file)."""
    from torch2ort.errors import BundleError
    from torch2ort.runtime.processors.text import tokenize_texts

    try:
        tokenize_texts(tok, SAMPLE_TEXTS[:2], names, length)
    except BundleError as exc:
        raise SourceError(f"{tok.parent}: {exc}") from None


def input_spec(path: Path, names: list[str], output: str):
    from torch2ort.spec import InputSpec

    cfg = read_json(path / "config.json", "config")
    vocab = int(cfg.get("vocab_size", 30522))
    types = int(cfg.get("type_vocab_size", 1) or 1)
    ranges = {"input_ids": f"0..{vocab - 1}", "attention_mask": "1..1", "token_type_ids": f"0..{types - 1}"}
    return InputSpec.from_cli([f"{n}:batch=2,sequence=16:int64:{ranges[n]}" for n in names], [output])
