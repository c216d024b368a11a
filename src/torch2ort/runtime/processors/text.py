"""Text steps: tokenize with the bundle's tokenizer.json; mean pooling and L2 normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, one_line
from torch2ort.runtime.typecheck import Name, Positive, Range, Size

TokenizerOutput = Literal["input_ids", "attention_mask", "token_type_ids"]


def _tokenizer(ctx, file: str, max_length: int, pad_id: int | None, stride: int = 0):
    key = f"tokenizer:{file}:{max_length}:{stride}"
    if key not in ctx.cache:
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - depends on the install
            raise PredictInputError("text preprocessing needs the tokenizers package: pip install tokenizers") from None
        from torch2ort.runtime.manifest import inside

        path = inside(ctx.bundle_dir, file)
        if not path.is_file():
            raise BundleError(f"the bundle's tokenizer file {file!r} is missing")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception for bad files
            raise BundleError(f"the tokenizer file {file!r} does not load: {one_line(str(exc), 200)}"
                              ) from None
        try:
            tok.enable_truncation(max_length=max_length, stride=stride)
        except Exception as exc:  # a stride the window cannot hold
            raise BundleError(f"the tokenizer cannot take stride {stride} with max_length {max_length}: "
                              f"{one_line(str(exc), 200)}") from None
        pad = tok.padding or {}
        tok.enable_padding(pad_id=pad_id if pad_id is not None else pad.get("pad_id", 0),
                           pad_token=pad.get("pad_token", "[PAD]"))
        ctx.cache[key] = tok
    return ctx.cache[key]


def tokenize(value, ctx, file: Name = "tokenizer.json", max_length: Annotated[int, Range(1, 1 << 20)] = 256,
             pad_id: Annotated[int, Range(0)] | None = None,
             outputs: Annotated[tuple[TokenizerOutput, ...], Size(1, unique=True)] = ("input_ids", "attention_mask"),
             stride: Annotated[int, Range(0, 1 << 20)] = 0):
    """A string or list of strings -> {input_ids, attention_mask[, token_type_ids]} int64, padded.

    ``stride`` > 0: a text longer than ``max_length`` becomes several rows, windows that overlap by
    ``stride`` tokens (the tokenizer's overflowing encodings, as transformers' pipelines take them with
    ``stride=``), in text order; otherwise each text is one row, truncated."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise PredictInputError("a text input must be a string or a non-empty list of strings")
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    unknown = [o for o in outputs if o not in fields]
    if unknown:
        raise BundleError(f"tokenize outputs {unknown}; valid: {', '.join(fields)}")
    try:
        tok = _tokenizer(ctx, file, max_length, pad_id, stride)
        rows: dict[str, list] = {o: [] for o in outputs}
        for start in range(0, len(value), CHUNK_ROWS):  # a chunk's encodings at a time, not every row's
            chunk = value[start:start + CHUNK_ROWS]
            texts = list(chunk) if stride else [_prefix(ctx, file, tok, t, max_length) for t in chunk]
            for e in windows(tok.encode_batch(texts), stride):
                for o in outputs:
                    rows[o].append(getattr(e, fields[o]))
    except (BundleError, PredictInputError):
        raise
    except Exception as exc:  # e.g. "WordPiece error: Missing [UNK] token from the vocabulary"
        raise BundleError(f"the tokenizer {file!r} cannot encode the text: {one_line(str(exc), 200)}"
                          ) from None
    width = max(len(r) for r in rows[outputs[0]]) if outputs else 0  # chunks padded apart: pad them alike
    pad = tok.padding or {}
    fill = {"input_ids": pad.get("pad_id", 0), "attention_mask": 0, "token_type_ids": pad.get("pad_type_id", 0)}
    left = pad.get("direction") == "left"
    return {o: np.array([([fill[o]] * (width - len(r)) + r) if left else (r + [fill[o]] * (width - len(r)))
                         for r in rows[o]], dtype=np.int64) for o in outputs}


def windows(encodings, stride: int) -> list:
    """Each encoding, followed by its overflowing windows when a stride is set."""
    return [w for e in encodings for w in ([e, *e.overflowing] if stride else [e])]


def windows_per_text(encodings, stride: int) -> list[int]:
    return [1 + (len(e.overflowing) if stride else 0) for e in encodings]


CHUNK_ROWS = 64     # texts encoded at once
CHARS_PER_TOKEN = 8  # the first guess at how much of a long text can matter: max_length × this, doubled as needed


def _prefix(ctx, file: str, tok, text: str, max_length: int) -> str:
    """The shortest prefix of ``text`` (from max_length × CHARS_PER_TOKEN characters, doubling) whose
    truncated encoding is provably that of the whole text, so a 100,000-character string costs what
    its first few thousand do (issue 27, item 3: 200 such strings took a server from 0.2 to 5.2 GB,
    because the tokenizer encodes the whole string before truncating).

    The proof: tokens of every pre-token (word) but the prefix's last one cannot change when text is
    added after the cut (normalizers and pre-tokenizers act locally), so when those tokens alone fill
    what truncation keeps, the kept tokens are the same. A tokenizer without word boundaries (a
    single pre-token) never satisfies this, and gets the whole text, as before.
    """
    cut = max_length * CHARS_PER_TOKEN
    if len(text) <= cut:
        return text
    raw = _untruncated(ctx, file, tok)
    keep = max_length - tok.num_special_tokens_to_add(False)
    while cut < len(text):
        words = raw.encode(text[:cut], add_special_tokens=False).word_ids
        last = next((w for w in reversed(words) if w is not None), None)
        if last is not None and sum(1 for w in words if w is not None and w < last) >= keep:
            return text[:cut]
        cut *= 2
    return text


def _untruncated(ctx, file: str, tok):
    key = f"tokenizer-untruncated:{file}"
    if key not in ctx.cache:
        from tokenizers import Tokenizer

        raw = Tokenizer.from_str(tok.to_str())
        raw.no_truncation()
        raw.no_padding()
        ctx.cache[key] = raw
    return ctx.cache[key]


def mean_pool(ctx, output: Name = "last_hidden_state", mask: Name = "attention_mask", name: Name = "embeddings"
              ) -> None:
    """Mean of token vectors over the attention mask (sentence-transformers' pooling)."""
    h = ctx.tensor(output).astype(np.float32)
    m = ctx.tensor(mask).astype(np.float32)[..., None]
    ctx.results[name] = (h * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)


def l2_normalize(ctx, output: Name = "embeddings", name: Name | None = None, eps: Positive = 1e-12) -> None:
    x = ctx.tensor(output).astype(np.float32)
    ctx.results[name or output] = x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), eps, None)


PRE = {"tokenize": tokenize}
POST = {"mean_pool": mean_pool, "l2_normalize": l2_normalize}


def tokenize_texts(tokenizer: str | Path, texts: list[str], names: list[str], max_length: int) -> dict[str, np.ndarray]:
    """The bundle's own tokenisation (runtime.processors.text), so verification sees what predict will."""
    from torch2ort.runtime.processors import Context

    tokenizer = Path(tokenizer)
    ctx = Context(tokenizer.parent)
    return tokenize(list(texts), ctx, file=tokenizer.name, max_length=max_length, outputs=names)
