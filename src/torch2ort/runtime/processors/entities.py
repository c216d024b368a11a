"""Named entities from token-classification logits, as transformers' ``pipeline("token-classification")``.

The step re-encodes the request's texts with the bundle's own tokenizer (the same file and
``max_length`` as the ``tokenize`` step) for what the model feed does not carry: character offsets,
the special-tokens mask and the token strings. Tokens are matched to the logits through the feed's
attention mask, so left or right padding and sub-batches cut to their own length all line up.

The aggregation follows the pipeline's rules, strategy for strategy (``none``, ``simple``, ``first``,
``average``, ``max``): sub-words are told apart by the tokenizer's ``continuing_subword_prefix``
(WordPiece's ``##``) or, for tokenizers without one (byte-level BPE), by the pipeline's own fallback
(no space before the token); adjacent tokens of one tag merge unless the next one is a ``B-``.
Entities come back per text, with the pipeline's keys (``entity_group`` or ``entity``, ``score``,
``word``, ``start``, ``end``, and ``index`` for ``none``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np

from torch2ort.errors import BundleError, PredictInputError
from torch2ort.runtime.processors.postprocess import _softmax
from torch2ort.runtime.processors.text import _prefix, _tokenizer, windows, windows_per_text
from torch2ort.runtime.typecheck import Name, Range

Strategy = Literal["none", "simple", "first", "average", "max"]


def entities(ctx, output: Name = "logits", aggregation_strategy: Strategy = "simple",
             ignore_labels: tuple[str, ...] = ("O",), file: Name = "tokenizer.json",
             max_length: Annotated[int, Range(1, 1 << 20)] = 512, stride: Annotated[int, Range(0, 1 << 20)] = 0,
             mask: Name = "attention_mask", name: Name = "entities") -> None:
    """Per text, the entities the pipeline would return. Without raw texts (a feed was given), nothing.

    With the tokenize step's ``stride``, a text's rows are its overlapping windows: each window's
    entities are found alone, then overlaps are resolved as the pipeline does (the longer entity wins,
    then the higher score)."""
    if ctx.texts is None:
        return
    if stride and aggregation_strategy == "none":
        raise PredictInputError("aggregation_strategy 'none' cannot merge the overlapping windows of a stride; "
                                "pick simple, first, average or max")
    tok = _tokenizer(ctx, file, max_length, None, stride)
    texts = list(ctx.texts) if stride else [_prefix(ctx, file, tok, t, max_length) for t in ctx.texts]
    encodings = tok.encode_batch(texts)
    rows_of = windows_per_text(encodings, stride)
    logits = ctx.tensor(output).astype(np.float32)
    if logits.ndim != 3 or logits.shape[0] != sum(rows_of):
        raise BundleError(f"entities reads {output!r} as [rows, tokens, labels]; got shape {list(logits.shape)} "
                          f"for {len(texts)} texts in {sum(rows_of)} rows")
    feed_mask = ctx.feed.get(mask)
    keep = (np.asarray(feed_mask).astype(bool) if feed_mask is not None
            else np.ones(logits.shape[:2], dtype=bool))
    vocab = _Vocab(tok)
    labels = ctx.labels or []
    if len(labels) != logits.shape[-1]:
        raise BundleError(f"entities needs one label per class: {len(labels)} labels for {logits.shape[-1]} classes")
    ignore = set(ignore_labels)
    found = [[] for _ in texts]
    owners = [i for i, n in enumerate(rows_of) for _ in range(n)]
    for owner, enc, row, row_keep in zip(owners, windows(encodings, stride), logits, keep):
        positions = np.flatnonzero(row_keep)
        tokens = [k for k, m in enumerate(enc.attention_mask) if m]
        if len(tokens) != len(positions):
            raise BundleError(f"entities: the tokenizer gives {len(tokens)} tokens where the feed has "
                              f"{len(positions)}; the feed was not made by this bundle's tokenizer")
        scores = _softmax(row[positions], -1)
        pre = [_pre_entity(vocab, texts[owner], enc, k, i, scores[i])
               for i, k in enumerate(tokens) if not enc.special_tokens_mask[k]]
        found[owner] += [e for e in _aggregate(pre, aggregation_strategy, labels, vocab)
                         if e.get("entity", e.get("entity_group")) not in ignore]
    ctx.results[name] = [_overlapping(f) if n > 1 else f for f, n in zip(found, rows_of)]


def _overlapping(found: list[dict]) -> list[dict]:
    """Entities from overlapping windows, sorted by start; of two that overlap, the longer one is kept
    (at equal length, the higher score): the pipeline's ``aggregate_overlapping_entities``."""
    if not found:
        return found
    ordered = sorted(found, key=lambda e: e["start"])
    kept, previous = [], ordered[0]
    for e in ordered:  # the first against itself too, as the pipeline does (a zero-length one is kept twice)
        if previous["start"] <= e["start"] < previous["end"]:
            length, previous_length = e["end"] - e["start"], previous["end"] - previous["start"]
            if length > previous_length or length == previous_length and e["score"] > previous["score"]:
                previous = e
        else:
            kept.append(previous)
            previous = e
    kept.append(previous)
    return kept


class _Vocab:
    """What the pipeline asks of its fast tokenizer, read from the tokenizers object itself."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.subword_prefix = getattr(tok.model, "continuing_subword_prefix", None)
        unk = getattr(tok.model, "unk_token", None)
        self.unk_id = tok.token_to_id(unk) if unk else None

    def token(self, token_id: int) -> str:
        return self.tok.id_to_token(token_id)

    def join(self, tokens: list[str]) -> str:
        if self.tok.decoder is not None:
            return self.tok.decoder.decode(tokens)
        if self.subword_prefix:  # a tokenizer.json without a decoder: transformers' WordPiece classes add this one
            from tokenizers import decoders

            return decoders.WordPiece(prefix=self.subword_prefix).decode(tokens)
        return " ".join(tokens)


def _pre_entity(vocab: _Vocab, text: str, enc, k: int, index: int, scores: np.ndarray) -> dict:
    """Token ``k`` of ``enc``; ``index`` counts the row's tokens (specials too, padding not), as the pipeline's."""
    token_id = enc.ids[k]
    word = vocab.token(token_id)
    start, end = enc.offsets[k]
    word_ref = text[start:end]
    if vocab.subword_prefix:
        is_subword = len(word) != len(word_ref)
    else:  # the pipeline's fallback for tokenizers without word-aware sub-words
        is_subword = start > 0 and " " not in text[start - 1:start + 1]
    if token_id == vocab.unk_id:
        word, is_subword = word_ref, False
    return {"word": word, "scores": scores, "start": start, "end": end, "index": index, "is_subword": is_subword}


def _aggregate(pre: list[dict], strategy: str, labels: list[str], vocab: _Vocab) -> list[dict]:
    if strategy in ("none", "simple"):
        found = []
        for p in pre:
            best = int(p["scores"].argmax())
            found.append({"entity": labels[best], "score": float(p["scores"][best]), "index": p["index"],
                          "word": p["word"], "start": p["start"], "end": p["end"]})
        if strategy == "none":
            return found
    else:
        found = _words(pre, strategy, labels, vocab)
    return _groups(found, vocab)


def _words(pre: list[dict], strategy: str, labels: list[str], vocab: _Vocab) -> list[dict]:
    """Sub-word tokens folded into their word, which takes one label (first, max or average)."""
    words, group = [], []
    for p in pre:
        if group and not p["is_subword"]:
            words.append(_word(group, strategy, labels, vocab))
            group = []
        group.append(p)
    if group:
        words.append(_word(group, strategy, labels, vocab))
    return words


def _word(group: list[dict], strategy: str, labels: list[str], vocab: _Vocab) -> dict:
    if strategy == "first":
        scores = group[0]["scores"]
    elif strategy == "max":
        scores = max(group, key=lambda p: p["scores"].max())["scores"]
    else:
        scores = np.nanmean(np.stack([p["scores"] for p in group]), axis=0)
    best = int(scores.argmax())
    return {"entity": labels[best], "score": float(scores[best]), "word": vocab.join([p["word"] for p in group]),
            "start": group[0]["start"], "end": group[-1]["end"]}


def _tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _groups(found: list[dict], vocab: _Vocab) -> list[dict]:
    """Adjacent entities of one tag become one group; a ``B-`` starts a new one."""
    groups, run = [], []
    for e in found:
        bi, tag = _tag(e["entity"])
        if run and (tag != _tag(run[-1]["entity"])[1] or bi == "B"):
            groups.append(_group(run, vocab))
            run = []
        run.append(e)
    if run:
        groups.append(_group(run, vocab))
    return groups


def _group(run: list[dict], vocab: _Vocab) -> dict[str, Any]:
    return {"entity_group": run[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([e["score"] for e in run])),
            "word": vocab.join([e["word"] for e in run]), "start": run[0]["start"], "end": run[-1]["end"]}


def _fields(params: dict) -> dict:
    """Each entity's keys and their types, for readers that need them before the first entity (batch)."""
    if params.get("aggregation_strategy", "simple") == "none":
        return {"entity": "str", "score": "float", "index": "int", "word": "str", "start": "int", "end": "int"}
    return {"entity_group": "str", "score": "float", "word": "str", "start": "int", "end": "int"}


POST = {"entities": entities}
ROW_FIELDS = {"entities": _fields}
