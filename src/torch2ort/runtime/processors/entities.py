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

from torch2ort.errors import BundleError
from torch2ort.runtime.processors.text import _prefix, _tokenizer
from torch2ort.runtime.typecheck import Name, Range

Strategy = Literal["none", "simple", "first", "average", "max"]


def entities(ctx, output: Name = "logits", aggregation_strategy: Strategy = "simple",
             ignore_labels: tuple[str, ...] = ("O",), file: Name = "tokenizer.json",
             max_length: Annotated[int, Range(1, 1 << 20)] = 512, mask: Name = "attention_mask",
             name: Name = "entities") -> None:
    """Per text, the entities the pipeline would return. Without raw texts (a feed was given), nothing."""
    if ctx.texts is None:
        return
    logits = ctx.tensor(output).astype(np.float32)
    if logits.ndim != 3 or logits.shape[0] != len(ctx.texts):
        raise BundleError(f"entities reads {output!r} as [texts, tokens, labels]; got shape {list(logits.shape)} "
                          f"for {len(ctx.texts)} texts")
    feed_mask = ctx.feed.get(mask)
    keep = (np.asarray(feed_mask).astype(bool) if feed_mask is not None
            else np.ones(logits.shape[:2], dtype=bool))
    tok = _tokenizer(ctx, file, max_length, None)
    texts = [_prefix(ctx, file, tok, t, max_length) for t in ctx.texts]
    vocab = _Vocab(tok)
    labels = ctx.labels or []
    if len(labels) != logits.shape[-1]:
        raise BundleError(f"entities needs one label per class: {len(labels)} labels for {logits.shape[-1]} classes")
    ignore = set(ignore_labels)
    rows = []
    for text, enc, row, row_keep in zip(texts, tok.encode_batch(texts), logits, keep):
        positions = np.flatnonzero(row_keep)
        tokens = [k for k, m in enumerate(enc.attention_mask) if m]
        if len(tokens) != len(positions):
            raise BundleError(f"entities: the tokenizer gives {len(tokens)} tokens where the feed has "
                              f"{len(positions)}; the feed was not made by this bundle's tokenizer")
        scores = _softmax(row[positions])
        pre = [_pre_entity(vocab, text, enc, k, i, scores[i])
               for i, k in enumerate(tokens) if not enc.special_tokens_mask[k]]
        found = _aggregate(pre, aggregation_strategy, labels, vocab)
        rows.append([e for e in found if e.get("entity", e.get("entity_group")) not in ignore])
    ctx.results[name] = rows


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
        return self.tok.decoder.decode(tokens) if self.tok.decoder is not None else " ".join(tokens)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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


POST = {"entities": entities}
