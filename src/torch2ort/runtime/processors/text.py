"""Text steps: tokenize with the bundle's tokenizer.json; mean pooling and L2 normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, one_line
from torch2ort.runtime.typecheck import Name, Positive, Range, Size

TokenizerOutput = Literal["input_ids", "attention_mask", "token_type_ids"]


def _tokenizer(ctx, file: str, max_length: int, pad_id: int | None):
    key = f"tokenizer:{file}:{max_length}"
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
        tok.enable_truncation(max_length=max_length)
        pad = tok.padding or {}
        tok.enable_padding(pad_id=pad_id if pad_id is not None else pad.get("pad_id", 0),
                           pad_token=pad.get("pad_token", "[PAD]"))
        ctx.cache[key] = tok
    return ctx.cache[key]


def tokenize(value, ctx, file: Name = "tokenizer.json", max_length: Annotated[int, Range(1, 1 << 20)] = 256,
             pad_id: Annotated[int, Range(0)] | None = None,
             outputs: Annotated[tuple[TokenizerOutput, ...], Size(1, unique=True)] = ("input_ids", "attention_mask")):
    """A string or list of strings -> {input_ids, attention_mask[, token_type_ids]} int64, padded."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise PredictInputError("a text input must be a string or a non-empty list of strings")
    try:
        enc = _tokenizer(ctx, file, max_length, pad_id).encode_batch(list(value))
    except (BundleError, PredictInputError):
        raise
    except Exception as exc:  # e.g. "WordPiece error: Missing [UNK] token from the vocabulary"
        raise BundleError(f"the tokenizer {file!r} cannot encode the text: {one_line(str(exc), 200)}"
                          ) from None
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    unknown = [o for o in outputs if o not in fields]
    if unknown:
        raise BundleError(f"tokenize outputs {unknown}; valid: {', '.join(fields)}")
    return {o: np.array([getattr(e, fields[o]) for e in enc], dtype=np.int64) for o in outputs}


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
